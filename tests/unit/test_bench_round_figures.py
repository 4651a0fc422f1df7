"""Per-round store figures: slow and blocked commits from two /metrics scrapes."""

from __future__ import annotations

import json
from pathlib import Path

from prometheus_client import CollectorRegistry, generate_latest

from mpim.bench.docs import write_doc
from mpim.bench.server_metrics import SLOW_COMMIT_SECONDS, round_figures
from mpim.bench.suite import Entry, SuiteRecord
from mpim.metrics.families import StoreMetrics
from mpim.metrics.scrape import Scrape


def _scrape(commits: list[float], blocked: list[float]) -> Scrape:
    metrics = StoreMetrics(CollectorRegistry())
    for seconds in commits:
        metrics.commit_latency.observe(seconds)
    for seconds in blocked:
        metrics.commit_blocked.observe(seconds)
    return Scrape.parse(generate_latest(metrics.registry).decode())


def test_a_round_counts_only_its_own_slow_and_blocked_commits() -> None:
    before = _scrape([0.001, 0.2], [0.0, 0.19])
    after = _scrape(
        [0.001, 0.2, 0.003, 0.06, 0.3, SLOW_COMMIT_SECONDS],
        [0.0, 0.19, 0.001, 0.002, 0.25, 0.0],
    )
    assert round_figures(before, after) == {
        "store_commits": 4,
        "store_slow_commits": 2,  # 0.06 and 0.3; exactly the bound is not slow
        "store_blocked_commits": 1,  # the 0.3 s commit was blocked for 0.25 s
    }


def test_the_bound_is_a_bucket_of_both_store_histograms() -> None:
    """Otherwise every commit of a round would count as slow."""
    bounds = {
        (s.name, float(s.labels["le"]))
        for s in _scrape([], []).samples
        if s.name.endswith("_bucket")
    }
    assert ("mpim_store_commit_seconds_bucket", SLOW_COMMIT_SECONDS) in bounds
    assert ("mpim_store_commit_blocked_seconds_bucket", SLOW_COMMIT_SECONDS) in bounds


def _round(label: str, p99: float, slow: int | None, blocked: int | None) -> dict[str, object]:
    metrics: dict[str, object] = {"delivered_per_s": 10_000.0}
    if slow is not None:
        metrics.update(store_slow_commits=slow, store_blocked_commits=blocked, store_commits=900)
    return {
        "label": label,
        "counts": {"acked": 10, "delivered": 10},
        "metrics": metrics,
        "latency_ms": {"e2e": {"p50": 1.0, "p99": p99, "p999": p99}},
        "error_samples": [],
    }


def _render(tmp_path: Path, rounds: list[dict[str, object]]) -> str:
    results = tmp_path / "results"
    results.mkdir()
    data = {"summary": [rounds[0]], "rounds": rounds, "problems": []}
    (results / "c2c_sweep.mpim.json").write_text(json.dumps(data))
    SuiteRecord(
        suite="test",
        machine={"nproc": 2, "cpu_model": "cpu", "load_average": [0.1, 0.1, 0.1]},
        started_at="2026-01-01T00:00:00+00:00",
        runs=[{"key": "c2c_sweep", "title": "Sweep", "mpim": "mpim", "fresh": 0}],
        entries=[Entry("c2c_sweep", "mpim", "c2c_sweep.mpim.json", ["mpim bench c2c"], [0], 1.0)],
        profiles={},
    ).save(results)
    (tmp_path / "analysis.md").write_text("## Analysis\n")
    return write_doc(results, tmp_path / "docs" / "benchmarks.md", "run me").read_text()


def test_the_sweep_lists_each_round_beside_its_slow_commits(tmp_path: Path) -> None:
    text = _render(
        tmp_path,
        [
            _round("10000 msg/s", 14.2, 0, 0),
            _round("10000 msg/s", 151.0, 3, 2),
            _round("20000 msg/s", 60.5, 7, 0),
        ],
    )
    assert "| 10000 | 14.2 / 151.0 | 0 / 3 | 0 / 2 |" in text
    assert "| 20000 | 60.5 | 7 | 0 |" in text


def test_without_the_servers_metrics_the_sweep_has_no_round_table(tmp_path: Path) -> None:
    text = _render(tmp_path, [_round("10000 msg/s", 14.2, None, None)])
    assert "slow commits per round" not in text
