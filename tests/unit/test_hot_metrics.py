"""LoopHistogram exports exactly what prometheus_client's Histogram would."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry, Histogram, generate_latest

import mpim.metrics.families  # noqa: F401  (MPIM's processes export no *_created series)
from mpim.metrics.hot import LoopHistogram

BUCKETS = (0.0005, 0.001, 0.01, 0.5, 10.0)
# On a bound, just either side of one, below the first, past the last.
VALUES = [0.0, 0.0005, 0.00050001, 0.001, 0.003, 0.01, 0.2, 0.5, 9.99, 10.0, 11.0, 1e6]


def exposition(observe_into: type) -> bytes:
    registry = CollectorRegistry()
    histogram = observe_into("mpim_t_seconds", "doc", buckets=BUCKETS, registry=registry)
    for value in VALUES:
        histogram.observe(value)
    return generate_latest(registry)


def test_the_same_series_as_a_prometheus_histogram() -> None:
    ours, theirs = exposition(LoopHistogram), exposition(Histogram)
    assert b'mpim_t_seconds_bucket{le="0.001"} 4.0' in ours
    assert ours == theirs


def test_buckets_must_increase_and_end_before_infinity() -> None:
    for buckets in [(1.0, 0.5), (0.5, 0.5), (0.5, float("inf"))]:
        with pytest.raises(ValueError):
            LoopHistogram("mpim_t", "doc", buckets=buckets, registry=CollectorRegistry())
