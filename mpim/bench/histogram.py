"""A mergeable latency histogram with bounded relative error.

Workers record raw microsecond latencies on the hot path (an array append is
the cheapest thing Python can do per message) and fold them into this
histogram once per round. Buckets are log-linear — exact below 256 µs, then
256 sub-buckets per power of two, so any reported percentile is within 0.4 %
of the true value — and histograms from several processes merge by adding
counts, which raw percentiles cannot.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable
from typing import Final

SUB_BITS: Final = 8
_SUB: Final = 1 << SUB_BITS
PERCENTILES: Final = (50.0, 90.0, 99.0, 99.9)


def bucket_of(value: int) -> int:
    """Bucket index of a non-negative value; monotonic in ``value``."""
    if value < _SUB:
        return max(value, 0)
    shift = value.bit_length() - SUB_BITS
    return (shift << SUB_BITS) + (value >> shift)


def bucket_bounds(index: int) -> tuple[int, int]:
    """``[low, high]`` (inclusive) of the values that fall in bucket ``index``."""
    shift = index >> SUB_BITS
    if shift == 0:
        return index, index
    mantissa = index & (_SUB - 1)
    if mantissa < _SUB // 2:  # not produced by bucket_of for shift > 0
        raise ValueError(f"not a bucket index: {index}")
    low = mantissa << shift
    return low, low + (1 << shift) - 1


class Histogram:
    """Counts per bucket plus exact count, sum, min and max."""

    __slots__ = ("counts", "max", "min", "sum", "total")

    def __init__(self) -> None:
        self.counts: Counter[int] = Counter()
        self.total = 0
        self.sum = 0
        self.min = 0
        self.max = 0

    @classmethod
    def of(cls, values: Iterable[int]) -> Histogram:
        hist = cls()
        hist.record_many(values)
        return hist

    def record_many(self, values: Iterable[int]) -> None:
        data = [v if v > 0 else 0 for v in values]
        if not data:
            return
        self.counts.update(map(bucket_of, data))
        low, high = min(data), max(data)
        self.min = low if self.total == 0 else min(self.min, low)
        self.max = max(self.max, high)
        self.total += len(data)
        self.sum += sum(data)

    def merge(self, other: Histogram) -> None:
        if other.total == 0:
            return
        self.counts.update(other.counts)
        self.min = other.min if self.total == 0 else min(self.min, other.min)
        self.max = max(self.max, other.max)
        self.total += other.total
        self.sum += other.sum

    def percentile(self, pct: float) -> int:
        """The value at percentile ``pct`` (0 to 100), within one bucket's width."""
        if self.total == 0:
            return 0
        if pct >= 100.0:
            return self.max
        rank = max(1, math.ceil(pct / 100.0 * self.total))
        seen = 0
        for index in sorted(self.counts):
            seen += self.counts[index]
            if seen >= rank:
                low, high = bucket_bounds(index)
                return min(max((low + high) // 2, self.min), self.max)
        return self.max

    def mean(self) -> float:
        return self.sum / self.total if self.total else 0.0

    def summary_ms(self) -> dict[str, float]:
        """p50/p90/p99/p99.9/max/mean in milliseconds (values are microseconds)."""
        out = {f"p{_pct_label(p)}": self.percentile(p) / 1000.0 for p in PERCENTILES}
        out["max"] = self.max / 1000.0
        out["mean"] = self.mean() / 1000.0
        out["count"] = float(self.total)
        return out


def _pct_label(pct: float) -> str:
    return str(int(pct)) if pct == int(pct) else str(pct).replace(".", "")
