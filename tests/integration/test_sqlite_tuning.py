"""SQLite settings for many small random writes: page size, checkpoint
interval, and statements in few shapes (so SQLite compiles each once)."""

from __future__ import annotations

import os
import re
import sqlite3
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Connection, Engine, create_engine, event

from mpim.store import database, rawsql
from mpim.store.database import SQLITE_PAGE_SIZE, WAL_CHECKPOINT_BYTES, Database, sqlite_engine
from mpim.store.messages import DIRECT, MessageStore, NewMessage
from mpim.store.schema import migrate
from mpim.store.users import UserStore


async def _open_and_read(path: Path) -> tuple[int, int, int]:
    db = Database(f"sqlite:///{path}")
    await db.start()
    try:
        with db.engine.connect() as conn:
            raw = conn.connection.driver_connection
            assert raw is not None
            page = raw.execute("PRAGMA page_size").fetchone()[0]
            autocheckpoint = raw.execute("PRAGMA wal_autocheckpoint").fetchone()[0]
            limit = raw.execute("PRAGMA journal_size_limit").fetchone()[0]
    finally:
        await db.stop()
    return int(page), int(autocheckpoint), int(limit)


async def test_a_new_database_gets_small_pages_and_a_64_mib_checkpoint(tmp_path: Path) -> None:
    page, autocheckpoint, limit = await _open_and_read(tmp_path / "new.sqlite3")
    assert page == SQLITE_PAGE_SIZE == 2048
    assert autocheckpoint * page == WAL_CHECKPOINT_BYTES
    assert limit == WAL_CHECKPOINT_BYTES


async def test_an_existing_database_keeps_its_page_size(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite3"
    old = sqlite3.connect(path)
    old.execute("PRAGMA page_size=4096")
    old.execute("CREATE TABLE kept (x INTEGER)")
    old.commit()
    old.close()
    page, autocheckpoint, _ = await _open_and_read(path)
    assert page == 4096
    assert autocheckpoint * page == WAL_CHECKPOINT_BYTES  # the interval is in bytes, not pages


@pytest.fixture
def statements(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """The SQL text of every statement run in this process meanwhile: through
    SQLAlchemy, and through ``rawsql.run``, which on SQLite goes to the
    driver directly."""
    seen: list[str] = []

    def note(_conn: Any, _cursor: Any, sql: str, *_args: Any) -> None:
        seen.append(sql)

    run = rawsql.run

    def noted_run(conn: Connection, sql: str, params: Sequence[Any]) -> Any:
        seen.append(sql)
        return run(conn, sql, params)

    monkeypatch.setattr(rawsql, "run", noted_run)
    event.listen(Engine, "before_cursor_execute", note)
    yield seen
    event.remove(Engine, "before_cursor_execute", note)


async def test_batches_of_every_size_run_statements_of_few_shapes(
    tmp_path: Path, statements: list[str]
) -> None:
    db = Database(f"sqlite:///{tmp_path / 'shapes.sqlite3'}")  # writer thread: in this process
    await db.start()
    try:
        users = UserStore(db)
        uids = [await users.create_user(f"u{i}", "-", 0) for i in range(130)]
        assert None not in uids
        store = MessageStore(db)
        statements.clear()
        msg_id, marks, sent = 1 << 40, [], 0
        for size in range(1, 121):  # each batch to `size` recipients, with cids
            batch = []
            for i in range(size):
                msg_id += 1
                batch.append(NewMessage(msg_id, DIRECT, uids[0], uids[1 + i], 0, "t", f"c{msg_id}"))
            stored = await store.append(batch, marks)
            assert all(s.error is None and not s.duplicate for s in stored)
            marks = [d for s in stored for d in s.deliveries]
            sent += size
        writes = [sql for sql in statements if not sql.startswith(("BEGIN", "COMMIT"))]
        received = [len((await store.sync(uid, 0, 500))[0]) for uid in uids[1:]]
        assert sum(received) == sent
    finally:
        await db.stop()
    assert len(writes) > 120
    # About ten statements, each in at most 8 sizes (1, 2, 4 .. 128); sized
    # to their batch, each would take up to 120 texts.
    assert len(set(writes)) <= 10 * 8, len(set(writes))
    for sql in writes:
        if "?" not in sql:
            continue  # no list to size (the batched indexes' count and merge)
        assert _list_length(sql) in (1, 2, 4, 8, 16, 32, 64, 128), sql[:100]


def _list_length(sql: str) -> int:
    """Rows of a multi-row VALUES, terms of an OR, or keys of an IN list."""
    if "WHERE (" in sql:
        return sql.count(" OR ") + 1
    if "IN (" in sql:
        return sql[sql.index("IN (") :].count("?")
    return len(re.findall(r"\(\?", sql))


@pytest.mark.parametrize("n", [0, 1, 2, 3, 255, 256, 257, 400, 511, 513, 1000])
def test_sqlite_statements_take_keys_and_rows_in_power_of_two_pieces(n: int) -> None:
    conn = create_engine("sqlite://").connect()
    items = list(range(n))
    pieces = rawsql._row_pieces(conn, items)
    assert [x for piece in pieces for x in piece] == items  # every row, in order, once
    chunks = rawsql._key_chunks(conn, items)
    assert sorted({x for chunk in chunks for x in chunk}) == items
    for part in [*pieces, *chunks]:
        assert len(part) in {1 << k for k in range(9)}  # 1 .. SQLITE_PIECE (256)
    conn.close()


def _temp_files_open() -> list[str]:
    """SQLite's unnamed temporary files this process holds (``etilqs_*``, unlinked)."""
    fds = Path("/proc/self/fd")
    names = []
    for fd in fds.iterdir():
        try:
            names.append(os.readlink(fd))
        except OSError:
            continue  # closed meanwhile (the directory's own fd)
    return [n for n in names if "etilqs_" in n]


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="reads /proc/self/fd (Linux)")
def test_a_statement_changing_many_pages_keeps_its_rollback_copy_in_memory(
    tmp_path: Path,
) -> None:
    # A multi-row statement inside a transaction keeps a copy of every page it
    # changes, to undo just that statement if a row fails. Past 64 KiB that
    # copy went to a temporary file: an open, an unlink, two writes per page
    # and a close in every commit of a busy writer, three times the log's
    # own writes (strace of the writer process at 10,000 msg/s).
    engine = sqlite_engine(f"sqlite:///{tmp_path / 'stmt.sqlite3'}", "FULL", immediate=True)
    try:
        with engine.begin() as conn:
            raw = conn.connection.driver_connection
            assert raw is not None
            raw.execute("CREATE TABLE spread (k INTEGER PRIMARY KEY, v TEXT NOT NULL)")
            raw.executemany(
                "INSERT INTO spread VALUES (?, ?)", ((k * 100, "x" * 200) for k in range(2000))
            )
        with engine.begin() as conn:
            raw = conn.connection.driver_connection
            assert raw is not None
            assert raw.execute("PRAGMA temp_store").fetchone()[0] == 2  # MEMORY
            keys = [k * 100 + 1 for k in range(0, 2000, 10)]  # one new row on each of 200 pages
            values = ", ".join(["(?, ?)"] * len(keys))
            raw.execute(
                f"INSERT INTO spread VALUES {values}", [x for k in keys for x in (k, "y" * 200)]
            )
            assert _temp_files_open() == []
    finally:
        engine.dispose()


async def test_a_schema_upgrade_keeps_its_temporary_data_on_disk(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # An upgrade's statements copy whole tables; their rollback copies and
    # sorts may be as large as a table, so they are not held in memory.
    seen: list[int] = []

    def noting_migrate(conn: Connection) -> None:
        raw = conn.connection.driver_connection
        assert raw is not None
        seen.append(raw.execute("PRAGMA temp_store").fetchone()[0])
        migrate(conn)

    monkeypatch.setattr(database, "migrate", noting_migrate)
    db = Database(f"sqlite:///{tmp_path / 'upgrade.sqlite3'}", writer_process=False)
    await db.start()
    try:
        engine = db._write_engine  # the writer thread's, which migrated
        assert engine is not None
        with engine.connect() as conn:  # the same pooled connection, given back
            raw = conn.connection.driver_connection
            assert raw is not None
            after = raw.execute("PRAGMA temp_store").fetchone()[0]
    finally:
        await db.stop()
    assert seen == [1]  # FILE while migrating
    assert after == 2  # MEMORY for the commits after
