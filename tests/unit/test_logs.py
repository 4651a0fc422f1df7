"""Structured logs: both formats parse back, one line per event, scoped fields, rotation."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from mpim.cluster import procs
from mpim.cluster.config import load_cluster
from mpim.config import ConfigError, load_settings
from mpim.logs import (
    bind_log_fields,
    configure_from_settings,
    configure_logging,
    current_log_fields,
    log_fields,
    reset_log_fields,
)
from tests.support.logparse import parse, parse_json, parse_kv

logger = logging.getLogger("mpim.test_logs")

# Everything that could break a line or a naive split.
NASTY = 'say "hi" a=b \\ back\nnew line\r\ttab \u2028sep\x85nel \x00nul 你好 🙂 end'


@pytest.fixture(autouse=True)
def _restore_root() -> Iterator[None]:
    """Leave the root logger as pytest set it up, whatever a test configured."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for handler in root.handlers:
        if handler not in handlers:
            root.removeHandler(handler)
            handler.close()
    root.setLevel(level)


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("MPIM_"):
            monkeypatch.delenv(name)


def capture(fmt: str = "kv", level: str = "DEBUG") -> io.StringIO:
    out = io.StringIO()
    configure_logging(level, fmt=fmt, stream=out)  # type: ignore[arg-type]
    return out


def lines(out: io.StringIO) -> list[str]:
    text = out.getvalue()
    assert text.endswith("\n")
    return text[:-1].split("\n")


# -- the kv format --------------------------------------------------------------


def test_kv_line_has_the_standard_keys_then_extra_fields() -> None:
    out = capture()
    logger.info("conn closed", extra={"uid": 5, "conn": "gw-1-3", "ok": True, "gone": None})
    (line,) = lines(out)
    fields = parse_kv(line)
    assert list(fields) == ["ts", "level", "logger", "msg", "uid", "conn", "ok"]
    assert fields["level"] == "info"
    assert fields["logger"] == "mpim.test_logs"
    assert fields["msg"] == "conn closed"
    assert line.endswith('msg="conn closed" uid=5 conn=gw-1-3 ok=true')  # bare when safe


@pytest.mark.parametrize(
    "value", [NASTY, "", " ", "=", '"', "\\", "a=b", "plain", "x" * 300, "\udc80lone"]
)
def test_kv_values_round_trip_and_stay_on_one_line(value: str) -> None:
    out = capture()
    logger.warning("%s", value, extra={"peer": value})
    (line,) = lines(out)
    assert line.isprintable()  # no raw control or line-separator character at all
    assert len(line.splitlines()) == 1
    fields = parse_kv(line)
    assert fields["msg"] == value
    assert fields["peer"] == value


def test_an_exception_is_one_escaped_field() -> None:
    out = capture()
    try:
        raise ValueError("boom\nsecond line of the error")
    except ValueError:
        logger.exception("handler failed", extra={"uid": 7})
    (line,) = lines(out)
    fields = parse_kv(line)
    assert fields["level"] == "error"
    assert fields["uid"] == "7"
    assert list(fields)[-1] == "exc"
    assert fields["exc"].startswith("Traceback (most recent call last):\n")
    assert fields["exc"].endswith("ValueError: boom\nsecond line of the error")


def test_stack_info_is_one_field_too() -> None:
    out = capture()
    logger.info("where am I", stack_info=True)
    (line,) = lines(out)
    assert "test_stack_info_is_one_field_too" in parse_kv(line)["stack"]


# -- the json format ------------------------------------------------------------


def test_json_lines_load_with_the_same_keys() -> None:
    out = capture("json")
    logger.info("first %s", NASTY, extra={"uid": 5, "ratio": 0.5, "ids": [1, 2]})
    try:
        raise KeyError("k")
    except KeyError:
        logger.error("second", exc_info=True)
    first, second = (parse_json(line) for line in lines(out))
    assert first["msg"] == f"first {NASTY}"
    assert (first["uid"], first["ratio"], first["ids"]) == (5, 0.5, [1, 2])
    assert second["level"] == "error"
    assert second["exc"].endswith("KeyError: 'k'")
    for line in lines(out):
        assert line.isprintable()


def test_unknown_format_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown log format"):
        configure_logging(fmt="xml")  # type: ignore[arg-type]


# -- request-scoped fields ------------------------------------------------------


def test_scoped_fields_appear_nest_and_are_reset() -> None:
    out = capture()
    with log_fields(conn="gw-1-3"):
        logger.info("one")
        with log_fields(uid=5, msg_id=99):
            logger.info("two")
            assert current_log_fields() == {"conn": "gw-1-3", "uid": 5, "msg_id": 99}
        logger.info("three")
    logger.info("four")
    token = bind_log_fields(uid=8)
    logger.info("five", extra={"uid": 9})  # an explicit extra wins
    reset_log_fields(token)
    logger.info("six")
    got = [parse_kv(line) for line in lines(out)]
    scoped = [{k: v for k, v in f.items() if k in ("conn", "uid", "msg_id")} for f in got]
    assert scoped == [
        {"conn": "gw-1-3"},
        {"conn": "gw-1-3", "uid": "5", "msg_id": "99"},
        {"conn": "gw-1-3"},
        {},
        {"uid": "9"},
        {},
    ]
    assert current_log_fields() == {}


def test_scoped_fields_are_reset_when_the_block_raises() -> None:
    with pytest.raises(RuntimeError), log_fields(uid=1):
        raise RuntimeError
    assert current_log_fields() == {}


async def test_each_task_has_its_own_fields() -> None:
    out = capture()
    both_bound = asyncio.Barrier(2)

    async def session(uid: int) -> None:
        with log_fields(uid=uid):
            await both_bound.wait()  # the other task has bound its uid by now
            logger.info("hello from %d", uid)

    await asyncio.gather(session(1), session(2))
    got = {(f["msg"], f["uid"]) for f in map(parse_kv, lines(out))}
    assert got == {("hello from 1", "1"), ("hello from 2", "2")}


# -- no secrets at INFO ---------------------------------------------------------


def test_secret_fields_are_redacted_at_info_but_not_at_debug() -> None:
    out = capture()
    logger.info("login", extra={"password": "hunter2", "token": "t0k"})
    with log_fields(text="hello bob"):
        logger.warning("sent")
    logger.debug("login", extra={"password": "hunter2"})
    info, warning, debug = map(parse_kv, lines(out))
    assert (info["password"], info["token"]) == ("<redacted>", "<redacted>")
    assert warning["text"] == "<redacted>"
    assert debug["password"] == "hunter2"


def test_sql_parameters_never_reach_the_log() -> None:
    out = capture()
    body = "-".join(["secret", "message", "text"])  # not in the source the traceback quotes
    engine = create_engine("sqlite://")
    with engine.connect() as conn:
        conn.execute(text("CREATE TABLE t (body TEXT UNIQUE)"))
        conn.execute(text("INSERT INTO t VALUES (:b)"), {"b": body})
        try:
            conn.execute(text("INSERT INTO t VALUES (:b)"), {"b": body})
        except Exception as exc:
            logger.exception("storing failed: %s", exc)
    engine.dispose()
    (line,) = lines(out)
    fields = parse_kv(line)
    assert "UNIQUE constraint failed" in fields["exc"]
    assert "[parameters hidden]" in fields["exc"]
    assert body not in line


# -- handlers, files, rotation --------------------------------------------------


def test_configuring_twice_does_not_double_lines_and_keeps_foreign_handlers() -> None:
    foreign = logging.StreamHandler(io.StringIO())
    logging.getLogger().addHandler(foreign)
    first = capture()
    second = capture()
    logger.info("once")
    assert first.getvalue() == ""
    assert len(lines(second)) == 1
    assert foreign in logging.getLogger().handlers


def test_level_filters() -> None:
    out = capture(level="WARNING")
    logger.info("not shown")
    logger.warning("shown")
    assert [parse_kv(line)["msg"] for line in lines(out)] == ["shown"]


def test_without_stderr_or_file_lines_still_go_to_stderr() -> None:
    out = io.StringIO()
    configure_logging("INFO", stderr=False, stream=out)
    logger.info("not lost")
    assert len(lines(out)) == 1


def test_files_rotate_by_size_and_keep_the_backups(tmp_path: Path) -> None:
    log = tmp_path / "sub" / "x.log"
    stderr = io.StringIO()
    configure_logging(
        "INFO", file=log, max_bytes=400, backups=2, stderr=False, stream=stderr, fmt="json"
    )
    for index in range(60):
        logger.info("line %03d", index)
    assert stderr.getvalue() == ""
    files = [log, log.with_name("x.log.1"), log.with_name("x.log.2")]
    assert all(path.exists() for path in files)
    assert not log.with_name("x.log.3").exists()
    kept: list[str] = []
    for path in reversed(files):  # oldest first
        content = path.read_text()
        longest = max(len(line) + 1 for line in content.splitlines())
        assert len(content.encode()) < 400 + longest
        kept += [parse(line, "json")["msg"] for line in content.splitlines()]
    assert kept == [f"line {i:03d}" for i in range(60 - len(kept), 60)]
    assert len(kept) < 60  # something was rotated away


def test_without_backups_the_file_is_truncated(tmp_path: Path) -> None:
    log = tmp_path / "x.log"
    configure_logging("INFO", file=log, max_bytes=300, backups=0, stderr=False)
    for index in range(50):
        logger.info("line %03d", index)
    assert list(tmp_path.iterdir()) == [log]
    content = log.read_text().splitlines()
    assert content and len(log.read_bytes()) < 300 + 200
    assert parse_kv(content[-1])["msg"] == "line 049"


def test_file_and_stderr_together(tmp_path: Path) -> None:
    log = tmp_path / "x.log"
    out = io.StringIO()
    configure_logging("INFO", file=log, stream=out)
    logger.info("both")
    assert parse_kv(log.read_text().strip())["msg"] == "both"
    assert parse_kv(out.getvalue().strip())["msg"] == "both"


# -- settings -------------------------------------------------------------------


def test_log_settings_from_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    settings = load_settings()
    assert (settings.log.format, settings.log.file, settings.log.stderr) == ("kv", None, True)
    monkeypatch.setenv("MPIM_LOG__FORMAT", "json")
    monkeypatch.setenv("MPIM_LOG__FILE", str(tmp_path / "m.log"))
    monkeypatch.setenv("MPIM_LOG__MAX_BYTES", "1000")
    monkeypatch.setenv("MPIM_LOG__STDERR", "false")
    monkeypatch.setenv("MPIM_LOG_LEVEL", "WARNING")  # the old top-level key still works
    settings = load_settings()
    assert settings.log.format == "json"
    assert settings.log.file == tmp_path / "m.log"
    assert (settings.log.max_bytes, settings.log.stderr) == (1000, False)
    assert settings.log_level == "WARNING"
    out = io.StringIO()
    configure_from_settings(settings, stream=out)
    logger.warning("to the file", extra={"uid": 3})
    assert out.getvalue() == ""
    fields = json.loads((tmp_path / "m.log").read_text())
    assert (fields["msg"], fields["uid"]) == ("to the file", 3)


def test_log_settings_from_a_file_and_their_errors(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    config = tmp_path / "mpim.toml"
    config.write_text('[log]\nformat = "json"\nbackups = 2\n')
    settings = load_settings(config)
    assert (settings.log.format, settings.log.backups) == ("json", 2)
    monkeypatch.setenv("MPIM_LOG__FORMAT", "kv")  # the environment beats the file
    assert load_settings(config).log.format == "kv"
    monkeypatch.setenv("MPIM_LOG__FILE", "")
    assert load_settings().log.file is None
    monkeypatch.setenv("MPIM_LOG__FORMAT", "xml")
    with pytest.raises(ConfigError, match=r"log\.format"):
        load_settings()


def test_the_cluster_gives_each_process_its_own_rotated_log(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    cluster_file = tmp_path / "cluster.toml"
    cluster_file.write_text(
        '[log]\nformat = "json"\nfile = "/tmp/shared.log"\n\n'
        "[cluster]\nlog_max_bytes = 5000\nlog_backups = 4\n"
        '[[cluster.process]]\nrole = "user"\ninstance_id = "user-1"\nport = 7101\n'
    )
    cfg = load_cluster(cluster_file)
    (spec,) = cfg.processes
    assert cfg.log_file(spec) == tmp_path / "logs" / "user-1.log"
    assert cfg.out_file(spec) == tmp_path / "logs" / "user-1.out"
    for name, value in procs.log_env(cfg, cfg.log_file(spec)).items():
        monkeypatch.setenv(name, value)
    (tmp_path / "settings.toml").write_text(cfg.settings_toml)
    seen = load_settings(tmp_path / "settings.toml").log
    assert seen.file == tmp_path / "logs" / "user-1.log"  # not the shared file
    assert (seen.format, seen.max_bytes, seen.backups, seen.stderr) == ("json", 5000, 4, False)
