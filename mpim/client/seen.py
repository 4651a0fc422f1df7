"""Which inbox seqs the client has already shown, to never show a message twice.

A set, not a high-water mark: ``PULL`` may return an old undelivered message
(low seq) after newer ones were pushed live, and that one must still show.
Memory is bounded by ``capacity``; when it is exceeded the oldest half is
folded into ``floor`` and every seq at or below the floor counts as seen.
"""

from __future__ import annotations

import logging
from typing import Final

logger = logging.getLogger(__name__)

DEFAULT_CAPACITY: Final = 10_000


class SeenSeqs:
    __slots__ = ("_capacity", "_floor", "_last", "_seqs")

    def __init__(self, capacity: int = DEFAULT_CAPACITY) -> None:
        if capacity < 2:
            raise ValueError("capacity must be at least 2")
        self._capacity = capacity
        self._seqs: set[int] = set()
        self._floor = 0
        self._last = 0

    @property
    def last_seq(self) -> int:
        """The highest seq seen (0 if none): where ``SYNC`` should resume."""
        return self._last

    def __contains__(self, seq: object) -> bool:
        return isinstance(seq, int) and (seq <= self._floor or seq in self._seqs)

    def __len__(self) -> int:
        return len(self._seqs)

    def add(self, seq: int) -> bool:
        """Record ``seq``; True if it was not seen before. Seq 0 (my own, in HISTORY) is never
        recorded and always counts as new."""
        if seq <= 0:
            return True
        if seq in self:
            return False
        self._seqs.add(seq)
        self._last = max(self._last, seq)
        if len(self._seqs) > self._capacity:
            self._compact()
        return True

    def reset(self) -> None:
        """Forget everything (another user logged in on this client)."""
        self._seqs.clear()
        self._floor = 0
        self._last = 0

    def _compact(self) -> None:
        ordered = sorted(self._seqs)
        dropped = ordered[: len(ordered) // 2]
        self._floor = max(self._floor, dropped[-1])
        self._seqs.difference_update(dropped)
