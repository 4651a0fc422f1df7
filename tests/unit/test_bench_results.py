"""Merging worker partials and summarising rounds."""

from __future__ import annotations

from collections import Counter

import pytest

from mpim.bench.histogram import Histogram
from mpim.bench.results import (
    MAX_ERROR_SAMPLES,
    Partial,
    RoundResult,
    merge_partials,
    summarize,
    summarize_by_label,
)


def _partial(sent: int, latencies: list[int], last_ack: int, cpu: float) -> Partial:
    part = Partial(counts=Counter(sent=sent, acked=sent), cpu_seconds=cpu)
    part.hists["e2e"] = Histogram.of(latencies)
    part.mark("last_ack_ns", last_ack)
    return part


def test_merge_adds_counts_merges_histograms_keeps_latest_marks() -> None:
    merged = merge_partials([_partial(10, [100, 200], 5, 1.0), _partial(5, [300], 9, 0.5)])
    assert merged.counts["sent"] == 15
    assert merged.hists["e2e"].total == 3
    assert merged.hists["e2e"].max == 300
    assert merged.marks["last_ack_ns"] == 9
    assert merged.cpu_seconds == 1.5


def test_error_samples_are_deduplicated_and_bounded() -> None:
    parts = []
    for i in range(3):
        part = Partial()
        for j in range(MAX_ERROR_SAMPLES + 2):
            part.note_error(f"-ERR {i}-{j}")
        part.note_error("-ERR same")
        parts.append(part)
    merged = merge_partials(parts)
    assert merged.counts["errors"] == 3 * (MAX_ERROR_SAMPLES + 3)
    assert len(merged.error_samples) == MAX_ERROR_SAMPLES
    assert len(set(merged.error_samples)) == MAX_ERROR_SAMPLES


def _round(label: str, rate: float, p99: float, lost: int = 0) -> RoundResult:
    return RoundResult(
        label,
        {"sent": 100, "lost": lost, "errors": 0},
        {"delivered_per_s": rate, "server_rss_mb_peak": None},
        {"e2e": {"p99": p99, "p50": p99 / 2}},
    )


def test_summary_takes_medians_of_metrics_and_sums_of_counts() -> None:
    s = summarize([_round("a", 10, 5.0), _round("a", 30, 1.0, lost=2), _round("a", 20, 9.0)])
    assert s.metrics["delivered_per_s"] == 20
    assert s.metrics["server_rss_mb_peak"] is None
    assert s.latency_ms["e2e"]["p99"] == 5.0
    assert s.counts == {"sent": 300, "lost": 2, "errors": 0}
    assert s.problems() == ["lost=2"]


def test_summary_by_label_keeps_sweep_order() -> None:
    rounds = [_round("1000", 1, 1), _round("1000", 3, 1), _round("2000", 5, 2)]
    summaries = summarize_by_label(rounds)
    assert [s.label for s in summaries] == ["1000", "2000"]
    assert summaries[0].metrics["delivered_per_s"] == 2


def test_summarize_refuses_nothing() -> None:
    with pytest.raises(ValueError):
        summarize([])


def test_round_results_survive_json() -> None:
    original = _round("x", 1.5, 2.5, lost=1)
    original.error_samples.append("-ERR boom")
    assert RoundResult.from_json(original.to_json()) == original
