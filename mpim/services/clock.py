"""Wall-clock milliseconds, in one place so tests can see what services see."""

from __future__ import annotations

import time


def now_ms() -> int:
    return int(time.time() * 1000)
