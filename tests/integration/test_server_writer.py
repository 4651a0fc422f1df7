"""Server writers (MySQL/MariaDB, PostgreSQL): the writer process, the kept
lane connection, and a transaction's writes sent together."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Connection, Engine, event, text
from sqlalchemy.exc import IntegrityError

from mpim.store import held_writes, lane_connection, rawsql
from mpim.store.database import Database, ensure_database, server_engine
from mpim.store.failures import StoreUnavailable, is_unreachable
from mpim.store.messages import DIRECT, MessageStore, NewMessage
from mpim.store.users import UserStore
from tests.support.databases import mysql_url, postgres_url  # noqa: F401 (fixtures)
from tests.support.writer_calls import (
    die,
    server_note,
    server_notes,
    wait_for_file,
    writer_children,
)


@pytest.fixture(params=["mysql", "postgres"])
def server_url(request: pytest.FixtureRequest) -> str:
    return str(request.getfixturevalue(f"{request.param}_url"))


@pytest.fixture
def mysql_engine(mysql_url: str) -> Iterator[Engine]:  # noqa: F811 (fixture)
    ensure_database(mysql_url)
    engine = server_engine(mysql_url, 60.0, pool_size=2)
    held_writes.enable(engine)
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE t (k INT PRIMARY KEY, v INT NOT NULL)"))
    yield engine
    engine.dispose()


def _statements_run(engine: Engine) -> list[str]:
    """Every statement SQLAlchemy hands the driver from now on (held writes bypass it)."""
    seen: list[str] = []
    event.listen(engine, "before_cursor_execute", lambda _c, _cur, sql, *_: seen.append(sql))
    return seen


def _rows(engine: Engine) -> list[tuple[int, int]]:
    with engine.connect() as conn:
        return [(int(k), int(v)) for k, v in conn.execute(text("SELECT k, v FROM t ORDER BY k"))]


def test_writes_are_held_and_sent_together_at_the_end(mysql_engine: Engine) -> None:
    run = _statements_run(mysql_engine)
    with mysql_engine.begin() as conn, held_writes.together(conn):
        rawsql.insert_rows(conn, "t", ("k", "v"), [(1, 10), (2, 20)])
        rawsql.write(conn, "UPDATE t SET v = v + %s WHERE k = %s", (5, 1))
        rawsql.insert_rows(conn, "t", ("k", "v"), [(3, 30)])
        assert run == []  # nothing went one statement at a time
    assert _rows(mysql_engine) == [(1, 15), (2, 20), (3, 30)]


def test_a_read_sees_the_writes_held_before_it(mysql_engine: Engine) -> None:
    with mysql_engine.begin() as conn, held_writes.together(conn):
        rawsql.insert_rows(conn, "t", ("k", "v"), [(1, 10)])
        core = conn.execute(text("SELECT v FROM t WHERE k = 1")).scalar_one()
        rawsql.write(conn, "UPDATE t SET v = %s WHERE k = %s", (11, 1))
        driver = rawsql.run(conn, "SELECT v FROM t WHERE k = %s", (1,)).scalar_one()
    assert (core, driver) == (10, 11)


def test_a_failing_held_write_fails_the_transaction_and_keeps_nothing(
    mysql_engine: Engine,
) -> None:
    with (
        pytest.raises(IntegrityError),
        mysql_engine.begin() as conn,
        held_writes.together(conn),
    ):
        rawsql.insert_rows(conn, "t", ("k", "v"), [(1, 10)])
        rawsql.insert_rows(conn, "t", ("k", "v"), [(1, 99)])  # the same key: refused
        rawsql.insert_rows(conn, "t", ("k", "v"), [(2, 20)])
    assert _rows(mysql_engine) == []
    with mysql_engine.begin() as conn, held_writes.together(conn):  # the connection still works
        rawsql.insert_rows(conn, "t", ("k", "v"), [(2, 20)])
    assert _rows(mysql_engine) == [(2, 20)]


def test_without_together_or_on_an_engine_not_enabled_writes_run_at_once(mysql_url: str) -> None:  # noqa: F811
    ensure_database(mysql_url)
    plain = server_engine(mysql_url, 60.0, pool_size=1)
    try:
        with plain.begin() as conn:
            conn.execute(text("CREATE TABLE t (k INT PRIMARY KEY, v INT NOT NULL)"))
        run = _statements_run(plain)
        with plain.begin() as conn, held_writes.together(conn):
            rawsql.insert_rows(conn, "t", ("k", "v"), [(1, 10)])
            assert len(run) == 1
    finally:
        plain.dispose()


def _checkouts(engine: Engine) -> list[int]:
    seen: list[int] = []
    event.listen(engine, "checkout", lambda *_: seen.append(1))
    return seen


def _commit_one(lane: lane_connection.LaneConnection, key: int) -> None:
    with lane.begin() as conn:
        conn.execute(text("INSERT INTO t (k, v) VALUES (:k, 0)"), {"k": key})


def test_a_lane_keeps_its_connection_while_busy(mysql_engine: Engine) -> None:
    checkouts = _checkouts(mysql_engine)
    lane = lane_connection.LaneConnection(mysql_engine)
    for key in range(5):
        _commit_one(lane, key)
    lane.release()
    assert len(checkouts) == 1
    assert [k for k, _ in _rows(mysql_engine)] == [0, 1, 2, 3, 4]


def test_a_lane_idle_too_long_or_after_a_failure_checks_out_again(
    mysql_engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(lane_connection, "FRESH_SECONDS", 0.05)
    checkouts = _checkouts(mysql_engine)
    lane = lane_connection.LaneConnection(mysql_engine)
    _commit_one(lane, 1)
    time.sleep(0.1)
    _commit_one(lane, 2)
    assert len(checkouts) == 2
    with pytest.raises(IntegrityError):
        _commit_one(lane, 2)
    _commit_one(lane, 3)
    assert len(checkouts) == 3
    lane.release()


def test_a_lane_whose_connection_the_server_killed_fails_once_then_recovers(
    mysql_engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    lane = lane_connection.LaneConnection(mysql_engine)
    with lane.begin() as conn:
        victim = conn.execute(text("SELECT CONNECTION_ID()")).scalar_one()
    with mysql_engine.connect() as admin:
        admin.execute(text(f"KILL CONNECTION {int(victim)}"))
    # Fresh, so not pinged: the commit meets the dead connection.
    with pytest.raises(Exception) as caught:
        _commit_one(lane, 1)
    assert is_unreachable(caught.value)
    _commit_one(lane, 2)  # a new connection from the pool
    lane.release()
    # Idle past the limit, the pool's pre-ping replaces a dead one unnoticed.
    monkeypatch.setattr(lane_connection, "FRESH_SECONDS", 0.0)
    with lane.begin() as conn:
        victim = conn.execute(text("SELECT CONNECTION_ID()")).scalar_one()
    with mysql_engine.connect() as admin:
        admin.execute(text(f"KILL CONNECTION {int(victim)}"))
    _commit_one(lane, 3)
    lane.release()
    assert [k for k, _ in _rows(mysql_engine)] == [2, 3]


async def test_a_server_writer_process_commits_sends_while_marks_take_the_side_lane(
    server_url: str, tmp_path: Path
) -> None:
    db = Database(server_url, writer_process=True)
    await db.start()
    try:
        assert db.writer_pid in writer_children()
        alice, bob = [await UserStore(db).create_user(n, "x", 0) for n in ("alice", "bob")]
        assert alice is not None and bob is not None
        store = MessageStore(db)
        sent = await store.append([NewMessage(1, DIRECT, alice, bob, 0, "hi", "c1")])
        assert sent[0].deliveries == [(bob, 1)]
        # The process's commit is held; a mark commits beside it, on the thread.
        gate = tmp_path / "gate"
        held = asyncio.ensure_future(db.write(wait_for_file, str(gate)))
        await asyncio.sleep(0.2)
        await asyncio.wait_for(store.mark_delivered([(bob, 1)]), 5)
        assert not held.done()
        gate.touch()
        await held
        assert await store.pull(bob, 10) == ([], False)
        pid = await db.write(server_note, "a")
        assert pid == db.writer_pid
    finally:
        await db.stop()
    assert writer_children() == []


async def test_a_dead_server_writer_fails_what_it_held_and_the_next_call_starts_another(
    server_url: str,
) -> None:
    db = Database(server_url, writer_process=True)
    await db.start()
    try:
        first = db.writer_pid
        await db.write(server_note, "before")
        with pytest.raises(StoreUnavailable):
            await db.write(die)
        await db.write(server_note, "after")
        assert db.writer_pid not in (None, first)
        assert await db.read(server_notes) == ["after", "before"]
    finally:
        await db.stop()


def test_held_writes_leave_sqlite_alone(tmp_path: Path) -> None:
    from mpim.store.database import sqlite_engine

    engine = sqlite_engine(f"sqlite:///{tmp_path / 's.sqlite3'}", "FULL", immediate=True)
    held_writes.enable(engine)
    try:
        with engine.begin() as conn:
            conn.exec_driver_sql("CREATE TABLE t (k INTEGER PRIMARY KEY, v INTEGER)")
        with engine.begin() as conn, held_writes.together(conn):
            assert not held_writes.hold(conn, "INSERT INTO t VALUES (1, 1)", ())
    finally:
        engine.dispose()


def test_held_writes_go_out_early_rather_than_pass_the_size_limit(
    mysql_engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(held_writes, "MAX_HELD_BYTES", 2000)
    queries: list[int] = []
    real_send = held_writes.send

    def counting_send(conn: Connection) -> None:
        if (
            conn.info.get("mpim.held_writes") is not None
            and conn.info["mpim.held_writes"].statements
        ):
            queries.append(len(conn.info["mpim.held_writes"].statements))
        real_send(conn)

    monkeypatch.setattr(held_writes, "send", counting_send)
    with mysql_engine.begin() as conn, held_writes.together(conn):
        for k in range(10):  # each about 600 bytes: three fit under the limit
            rawsql.write(conn, "INSERT INTO t (k, v) VALUES (%s, %s)" + " " * 560, (k, k))
    assert queries == [3, 3, 3, 1]
    assert [k for k, _ in _rows(mysql_engine)] == list(range(10))
