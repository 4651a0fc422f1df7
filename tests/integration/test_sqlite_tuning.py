"""SQLite settings for many small random writes: page size and checkpoint interval."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from mpim.store.database import SQLITE_PAGE_SIZE, WAL_CHECKPOINT_BYTES, Database


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
