"""A set of non-negative integers stored as sorted, disjoint half-open intervals.

Acknowledged and received sequence numbers are almost always one contiguous
run, so this representation stays a handful of integers even for millions of
messages — small enough to send between processes every round.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Iterator


class RangeSet:
    """Sorted disjoint ``[start, end)`` intervals; cheap appends at the top end."""

    __slots__ = ("_count", "_ends", "_starts")

    def __init__(self, intervals: Iterable[tuple[int, int]] = ()) -> None:
        self._starts: list[int] = []
        self._ends: list[int] = []
        self._count = 0
        for start, end in intervals:
            self.add_range(start, end)

    def add(self, value: int) -> None:
        """Insert one value; O(1) when it extends or follows the highest interval."""
        ends = self._ends
        if not ends:
            self._starts.append(value)
            ends.append(value + 1)
            self._count = 1
            return
        last = ends[-1]
        if value == last:
            ends[-1] = last + 1
            self._count += 1
            return
        if value > last:
            self._starts.append(value)
            ends.append(value + 1)
            self._count += 1
            return
        self.add_range(value, value + 1)

    def add_range(self, start: int, end: int) -> None:
        """Insert every value in ``[start, end)``, merging touching intervals."""
        if end <= start:
            return
        starts, ends = self._starts, self._ends
        lo = bisect.bisect_left(ends, start)  # first interval that ends at/after start
        hi = bisect.bisect_right(starts, end)  # intervals starting after end are untouched
        if lo < hi:
            start = min(start, starts[lo])
            end = max(end, ends[hi - 1])
            self._count -= sum(ends[i] - starts[i] for i in range(lo, hi))
        starts[lo:hi] = [start]
        ends[lo:hi] = [end]
        self._count += end - start

    def __contains__(self, value: object) -> bool:
        if not isinstance(value, int):
            return False
        i = bisect.bisect_right(self._starts, value) - 1
        return i >= 0 and value < self._ends[i]

    def __len__(self) -> int:
        return self._count

    def __iter__(self) -> Iterator[int]:
        for start, end in zip(self._starts, self._ends, strict=True):
            yield from range(start, end)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, RangeSet):
            return NotImplemented
        return self._starts == other._starts and self._ends == other._ends

    def __repr__(self) -> str:
        return f"RangeSet({self.intervals()!r})"

    def intervals(self) -> list[tuple[int, int]]:
        return list(zip(self._starts, self._ends, strict=True))

    def count_between(self, start: int, end: int) -> int:
        """How many members lie in ``[start, end)``."""
        if end <= start or not self._starts:
            return 0
        total = 0
        i = max(bisect.bisect_right(self._starts, start) - 1, 0)
        starts, ends = self._starts, self._ends
        while i < len(starts) and starts[i] < end:
            total += max(0, min(ends[i], end) - max(starts[i], start))
            i += 1
        return total

    def count_not_in(self, other: RangeSet) -> int:
        """``len(self - other)`` without building the difference."""
        return self._count - sum(other.count_between(s, e) for s, e in self.intervals())

    def update(self, other: RangeSet) -> None:
        for start, end in other.intervals():
            self.add_range(start, end)
