"""How long a commit took, and how much of that its writer was blocked.

A slow commit is either slow storage (an fsync the disk holds back, a
database server's late answer) or a writer that was ready to run but had no
core. Wall-clock time cannot tell the two apart, and they call for different
fixes. The kernel's per-thread scheduler statistics can: they count the
time the thread ran and the time it waited in the run queue, so the rest of
the wall-clock is time it was blocked. On the benchmark machines slow rounds
of the embedded open loop had commits blocked for 60-150 ms on the disk
(``bench/analysis.md``); on slower ones the writer waited for a core.

Only Linux has ``/proc/thread-self/schedstat``; elsewhere ``blocked`` is None.
"""

from __future__ import annotations

import os
import time
from typing import Final

_SCHEDSTAT: Final = "/proc/thread-self/schedstat"


class CommitTimer:
    """Times commits on the thread that created it (one per writer thread)."""

    def __init__(self) -> None:
        try:
            self._fd: int | None = os.open(_SCHEDSTAT, os.O_RDONLY)
        except OSError:
            self._fd = None
        self._started = 0.0
        self._scheduled_at_start: int | None = None

    def start(self) -> None:
        self._started = time.perf_counter()
        self._scheduled_at_start = self._scheduled_ns()

    def stop(self) -> tuple[float, float | None]:
        """Seconds since ``start``, and how many of them the thread was blocked."""
        wall = time.perf_counter() - self._started
        before, after = self._scheduled_at_start, self._scheduled_ns()
        if before is None or after is None:
            return wall, None
        return wall, max(0.0, wall - (after - before) / 1e9)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def _scheduled_ns(self) -> int | None:
        """Nanoseconds this thread has run or waited to run, since it started."""
        if self._fd is None:
            return None
        try:
            ran, waited = os.pread(self._fd, 128, 0).split()[:2]
            return int(ran) + int(waited)
        except (OSError, ValueError):
            return None
