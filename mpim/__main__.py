"""``python -m mpim`` is the ``mpim`` command."""

import sys

from mpim.cli import main

sys.exit(main())
