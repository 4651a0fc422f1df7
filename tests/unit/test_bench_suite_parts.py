"""Suite plumbing: shown commands, combining fresh-server runs, worker failure texts."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from mpim.bench.client import BenchSetupError
from mpim.bench.results import RoundResult
from mpim.bench.servers import command_line
from mpim.bench.suite import FULL, QUICK, _combine
from mpim.bench.worker import describe_failure


def test_commands_are_shown_as_a_reader_types_them() -> None:
    argv = [sys.executable, "-m", "mpim", "bench", "c2c", "--addr", "127.0.0.1:41234"]
    assert command_line(argv) == "mpim bench c2c --addr 127.0.0.1:<port>"
    fixed = [sys.executable, "-m", "mpim", "bench", "c2c", "--addr", "127.0.0.1:6400"]
    assert command_line(fixed) == "mpim bench c2c --addr 127.0.0.1:6400"


def _result(per_conn: float, run_id: str) -> dict[str, object]:
    round_ = RoundResult(
        "19000 connections",
        {"connected": 19000, "errors": 0},
        {"rss_bytes_per_connection": per_conn},
    )
    return {
        "run_id": run_id,
        "rounds": [round_.to_json()],
        "problems": [],
        "ok": True,
        "summary": [],
    }


def test_fresh_server_runs_combine_into_medians(tmp_path: Path) -> None:
    parts = []
    for i, value in enumerate((7000.0, 9000.0, 8000.0)):
        path = tmp_path / f".idle.{i}.json"
        path.write_text(json.dumps(_result(value, f"run{i}")))
        parts.append(path)
    out = tmp_path / "idle.mpim.json"
    _combine(parts, out)
    data = json.loads(out.read_text())
    assert len(data["rounds"]) == 3
    assert data["summary"][0]["metrics"]["rss_bytes_per_connection"] == 8000.0
    assert data["summary"][0]["counts"]["connected"] == 57000
    assert data["fresh_servers"] == 3 and data["run_id"] == "run0,run1,run2"
    assert not any(p.exists() for p in parts)


def test_suites_name_each_scenario_once_and_parse_their_commands() -> None:
    for suite in (FULL, QUICK):
        keys = [run.key for run in suite]
        assert len(keys) == len(set(keys))
        for run in suite:
            assert run.args[0] in {"c2c", "group", "idle", "login"}
            assert "--addr" not in run.args


def test_failures_of_the_server_are_one_line_and_bugs_keep_their_traceback() -> None:
    refused = ExceptionGroup("setup", [ConnectionRefusedError(111, "Connection refused")])
    assert describe_failure(refused) == "ConnectionRefusedError: [Errno 111] Connection refused"
    assert describe_failure(BenchSetupError("REGISTER x: -ERR user exists")) == (
        "BenchSetupError: REGISTER x: -ERR user exists"
    )
    try:
        raise KeyError("bug")
    except KeyError as exc:
        text = describe_failure(exc)
    assert "Traceback" in text and "KeyError" in text
