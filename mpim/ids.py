"""Time-ordered 63-bit message ids, unique across processes without a round trip.

Layout (snowflake): 41 bits of milliseconds since 2024-01-01 UTC, 10 bits of
worker id, 12 bits of per-millisecond sequence. Ids from one generator are
strictly increasing, even if the wall clock steps back.
"""

from __future__ import annotations

import time
from typing import Final

EPOCH_MS: Final = 1_704_067_200_000
WORKER_BITS: Final = 10
SEQUENCE_BITS: Final = 12
MAX_WORKER: Final = (1 << WORKER_BITS) - 1
_SEQUENCE_MASK: Final = (1 << SEQUENCE_BITS) - 1


class SnowflakeIds:
    """Generates ids for one worker; not thread-safe (one per event loop)."""

    def __init__(self, worker_id: int = 0) -> None:
        if not 0 <= worker_id <= MAX_WORKER:
            raise ValueError(f"worker_id must be 0..{MAX_WORKER}")
        self._worker = worker_id << SEQUENCE_BITS
        self._last_ms = 0
        self._sequence = 0

    def next_id(self) -> int:
        return self.next_id_at()[0]

    def next_id_at(self) -> tuple[int, int]:
        """An id and the unix time in ms it was made at: one clock read gives a
        message both its id and its timestamp."""
        wall_ms = int(time.time() * 1000)
        now = wall_ms - EPOCH_MS
        if now > self._last_ms:
            self._last_ms = now
            self._sequence = 0
        else:
            # Same millisecond, or the clock stepped back: keep counting on
            # the last millisecond so ids stay increasing.
            self._sequence = (self._sequence + 1) & _SEQUENCE_MASK
            if self._sequence == 0:
                self._last_ms += 1
        return (
            (self._last_ms << (WORKER_BITS + SEQUENCE_BITS)) | self._worker | self._sequence,
            wall_ms,
        )


def timestamp_ms(message_id: int) -> int:
    """The unix time in ms at which ``message_id`` was generated."""
    return (message_id >> (WORKER_BITS + SEQUENCE_BITS)) + EPOCH_MS
