"""Per-stream order tracking: what arrived in order, late, twice, or not at all.

One ``SeqTracker`` follows one sender→receiver pair (by the sender's sequence
number in the text) or one receiver's inbox (by the server's ``seq=``). It keeps
only the next expected number and the gaps below it, so memory stays small
while nothing goes wrong.
"""

from __future__ import annotations

from typing import Final

from mpim.bench.ranges import RangeSet

IN_ORDER: Final = 0
"""The next expected number."""
AHEAD: Final = 1
"""Beyond the next expected number: the ones skipped become gaps."""
GAP_FILLED: Final = 2
"""A number that was skipped earlier and arrived now: out of order."""
DUPLICATE: Final = 3
"""A number already seen."""


class SeqTracker:
    """Follows one numbered stream that should arrive as ``start, start+1, …``."""

    __slots__ = ("missing", "next")

    def __init__(self, start: int = 0) -> None:
        self.next = start
        self.missing: set[int] = set()

    def observe(self, seq: int) -> int:
        """Record ``seq``; return IN_ORDER, AHEAD, GAP_FILLED or DUPLICATE."""
        expected = self.next
        if seq == expected:
            self.next = expected + 1
            return IN_ORDER
        if seq > expected:
            self.missing.update(range(expected, seq))
            self.next = seq + 1
            return AHEAD
        if seq in self.missing:
            self.missing.discard(seq)
            return GAP_FILLED
        return DUPLICATE

    def seen(self, seq: int) -> bool:
        return seq < self.next and seq not in self.missing

    def contiguous_end(self) -> int:
        """The highest n such that every number up to n has been seen (start-1 if none)."""
        return (min(self.missing) if self.missing else self.next) - 1

    def unseen_count(self, wanted: RangeSet) -> int:
        """How many members of ``wanted`` have not been observed."""
        beyond = wanted.count_between(self.next, max(self.next, _upper(wanted)))
        return beyond + sum(1 for seq in self.missing if seq in wanted)


def _upper(values: RangeSet) -> int:
    intervals = values.intervals()
    return intervals[-1][1] if intervals else 0
