"""Targets, profile summaries and the rendered benchmark page (from synthetic results)."""

from __future__ import annotations

import json
from pathlib import Path

from mpim.bench.docs import write_doc
from mpim.bench.profile import frame_name, summarize_raw
from mpim.bench.suite import Entry, SuiteRecord
from mpim.bench.targets import TARGETS, Target, figure_of, pick_summary, verdict

GOAL = Target("x", "k", "metrics.rate", ">=", 1000, "/s")
LIMIT = Target("y", "k", "latency.e2e.p99", "<=", 20, "ms")


def test_verdicts_say_by_how_much() -> None:
    assert verdict(GOAL, 1500) == "met (+50 %)"
    assert verdict(GOAL, 250) == "missed by 75 % (needs 4.0x)"
    assert verdict(GOAL, 980) == "missed by 2 % (needs 1.02x)"
    assert verdict(LIMIT, 10) == "met (50 % under)"
    assert verdict(LIMIT, 50) == "missed: 2.5x the limit"
    assert verdict(LIMIT, 20.9) == "missed: 4 % over the limit"
    assert verdict(GOAL, None) == "no result"
    assert verdict(Target("z", None, "", ">=", 1, ""), None) == "not measured"


def test_figures_are_found_in_a_summary_entry() -> None:
    entry = {"metrics": {"rate": 5}, "latency_ms": {"e2e": {"p99": 1.5}}}
    assert figure_of(entry, "metrics.rate") == 5
    assert figure_of(entry, "latency.e2e.p99") == 1.5
    assert figure_of(entry, "latency.ack.p99") is None
    result = {"summary": [{"label": "5000 msg/s"}, {"label": "10000 msg/s"}]}
    assert pick_summary(result, "10000") == {"label": "10000 msg/s"}
    assert pick_summary(result, None) == {"label": "5000 msg/s"}


RAW = "\n".join(
    [
        "Thread._bootstrap (threading.py:1002);"
        "Database._write_loop (mpim/store/database.py:184);execute (sqlite3:1) 30",
        "_run_module_as_main (<frozen runpy>:198);main (mpim/cli.py:9);"
        "serve (mpim/gateway/server.py:80);"
        "feed (mpim/gateway/session.py:40) 50",
        "_run_module_as_main (<frozen runpy>:198);serve (mpim/gateway/server.py:81);"
        "select (selectors.py:468) 20",
    ]
)


def test_profile_summary_has_self_inclusive_and_threads() -> None:
    summary = summarize_raw(RAW)
    assert summary.samples == 100
    assert summary.self_top[0] == ("feed (mpim/gateway/session.py)", 50.0)
    inclusive = dict(summary.inclusive_top)
    assert inclusive["serve (mpim/gateway/server.py)"] == 70.0  # line numbers merged
    assert "main (mpim/cli.py)" not in inclusive  # on every stack: no information
    threads = dict(summary.threads)
    assert threads["event loop (main thread)"] == 70.0
    assert threads["thread: Database._write_loop (mpim/store/database.py)"] == 30.0


def test_frame_names_lose_line_numbers_and_site_packages() -> None:
    frame = "execute (/x/.venv/lib/python3.11/site-packages/sqlalchemy/engine/base.py:1494)"
    assert frame_name(frame) == "execute (sqlalchemy/engine/base.py)"
    assert summarize_raw("").samples == 0


def _messaging(rate: float, p99: float) -> dict[str, object]:
    return {
        "label": "closed loop, window 16",
        "counts": {"acked": 10, "delivered": 10, "lost": 0, "errors": 0},
        "metrics": {"delivered_per_s": rate, "acked_per_s": rate, "offered_rate": None},
        "latency_ms": {"e2e": {"p50": 1.0, "p99": p99, "p999": 2 * p99, "max": 9.0}},
        "error_samples": [],
    }


def test_the_page_renders_tables_targets_and_charts(tmp_path: Path) -> None:
    results = tmp_path / "results"
    results.mkdir()
    entries = []
    for server, rate in (("mpim", 25_000.0), ("relay", 100_000.0)):
        data = {"summary": [_messaging(rate, 4.0)], "problems": []}
        (results / f"c2c_closed.{server}.json").write_text(json.dumps(data))
        entries.append(
            Entry("c2c_closed", server, f"c2c_closed.{server}.json", ["mpim bench c2c"], [0], 1.0)
        )
    suite = SuiteRecord(
        suite="test",
        machine={"nproc": 2, "cpu_model": "cpu", "load_average": [0.5, 0.4, 0.3]},
        started_at="2026-01-01T00:00:00+00:00",
        runs=[{"key": "c2c_closed", "title": "One-to-one chat", "mpim": "mpim", "fresh": 0}],
        entries=entries,
        profiles={
            "c2c_closed": {
                "samples": 10,
                "threads": [["event loop", 100.0]],
                "self_top": [["f (mpim/x.py)", 50.0]],
                "inclusive_top": [],
                "command": "mpim bench c2c",
            }
        },
    )
    suite.save(results)
    (tmp_path / "analysis.md").write_text("## What stands in the way\n\nThe writer.\n")
    doc = write_doc(results, tmp_path / "docs" / "benchmarks.md", "run me")
    text = doc.read_text()
    assert "## Targets (issue 4)" in text
    # The hand-written analysis beside the results follows the targets table.
    assert text.index("## Targets (issue 4)") < text.index("## What stands in the way")
    assert "The writer." in text
    assert "| 25,000 | 100,000 | 0.25 |" in text
    assert "missed by 17 %" in text  # 25,000 of 30,000
    assert "not measured" in text
    assert "![c2c_closed](../results/c2c_closed.png)" in text
    assert (results / "c2c_closed.png").stat().st_size > 1000
    assert len(TARGETS) >= 6


def test_server_figures_come_from_the_runs_metrics_as_percent() -> None:
    result = {"server_metrics": {"user_and_route_hit_ratio": 0.955, "route_lookups": 40.0}}
    assert figure_of({}, "server.user_and_route_hit_ratio", result) == 95.5
    assert figure_of({}, "server.route_lookups", result) == 40.0
    assert figure_of({}, "server.user_and_route_hit_ratio", {}) is None


def test_the_method_says_when_the_cluster_began_on_an_empty_store(tmp_path: Path) -> None:
    results = tmp_path / "results"
    results.mkdir()
    for fresh in (True, False):
        SuiteRecord(
            suite="test",
            machine={"nproc": 2, "cpu_model": "cpu", "load_average": [0.1, 0.1, 0.1]},
            started_at="2026-01-01T00:00:00+00:00",
            cluster_config="bench/cluster.toml",
            fresh_store=fresh,
        ).save(results)
        (tmp_path / "analysis.md").write_text("## Analysis\n")
        text = write_doc(results, tmp_path / "benchmarks.md", "run me").read_text()
        assert ("began on empty tables" in text) is fresh
