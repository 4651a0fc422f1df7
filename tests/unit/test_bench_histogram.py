"""Latency histograms: bounded error, exact extremes, merge equals combine."""

from __future__ import annotations

import math
import random

import pytest

from mpim.bench.histogram import Histogram, bucket_bounds, bucket_of


def test_buckets_are_monotonic_and_contain_their_values() -> None:
    previous = -1
    for value in [*range(0, 2000), *range(2000, 10**7, 997)]:
        index = bucket_of(value)
        assert index >= previous
        previous = index
        low, high = bucket_bounds(index)
        assert low <= value <= high


def test_small_values_are_exact() -> None:
    assert all(bucket_bounds(bucket_of(v)) == (v, v) for v in range(256))


def test_bucket_width_is_within_one_percent() -> None:
    for value in (300, 5_000, 123_456, 9_999_999):
        low, high = bucket_bounds(bucket_of(value))
        assert (high - low) / low < 0.008


@pytest.mark.parametrize("pct", [50.0, 90.0, 99.0, 99.9])
def test_percentiles_match_the_exact_ones_within_bucket_error(pct: float) -> None:
    rng = random.Random(4)
    values = [int(rng.lognormvariate(8, 1.2)) for _ in range(50_000)]
    hist = Histogram.of(values)
    exact = sorted(values)[max(0, math.ceil(pct / 100 * len(values)) - 1)]
    assert hist.percentile(pct) == pytest.approx(exact, rel=0.008, abs=1)


def test_extremes_count_and_mean_are_exact() -> None:
    hist = Histogram.of([5, 1000, 123_456])
    assert (hist.min, hist.max, hist.total) == (5, 123_456, 3)
    assert hist.mean() == pytest.approx((5 + 1000 + 123_456) / 3)
    assert hist.percentile(100) == 123_456


def test_negative_latencies_count_as_zero() -> None:
    hist = Histogram.of([-3, 4])
    assert (hist.min, hist.max, hist.total) == (0, 4, 2)


def test_merging_equals_recording_everything_in_one() -> None:
    rng = random.Random(1)
    a = [rng.randrange(1, 10**6) for _ in range(5000)]
    b = [rng.randrange(1, 10**5) for _ in range(3000)]
    merged = Histogram.of(a)
    merged.merge(Histogram.of(b))
    whole = Histogram.of(a + b)
    assert merged.counts == whole.counts
    assert (merged.min, merged.max, merged.total, merged.sum) == (
        whole.min,
        whole.max,
        whole.total,
        whole.sum,
    )


def test_merging_into_an_empty_histogram_keeps_the_minimum() -> None:
    empty = Histogram()
    empty.merge(Histogram.of([700, 900]))
    assert empty.min == 700


def test_an_empty_histogram_summarises_to_zeros() -> None:
    summary = Histogram().summary_ms()
    assert summary["count"] == 0
    assert summary["p99"] == 0


def test_summary_is_in_milliseconds_with_named_percentiles() -> None:
    summary = Histogram.of([1000] * 10 + [20_000]).summary_ms()
    assert set(summary) == {"p50", "p90", "p99", "p999", "max", "mean", "count"}
    assert summary["p50"] == pytest.approx(1.0, rel=0.01)
    assert summary["max"] == 20.0
