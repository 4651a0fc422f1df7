"""Wall-clock milliseconds for the services. A message's timestamp is the
exception: it comes from the clock read that makes its id (``SnowflakeIds.next_id_at``)."""

from __future__ import annotations

import time


def now_ms() -> int:
    return int(time.time() * 1000)
