"""A database written by schema version 1 is upgraded in place (1→2→3), data kept."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import create_engine, insert, inspect, select, text

from mpim.store import schema
from mpim.store.database import Database
from mpim.store.messages import MessageStore
from mpim.store.users import UserStore


def _create_version_1(url: str) -> None:
    engine = create_engine(url)
    version_1 = [t for t in schema.metadata.sorted_tables if t.name != "message_workers"]
    with engine.begin() as conn:
        schema.metadata.create_all(conn, tables=version_1)
        conn.execute(text(f"DROP INDEX {schema.TOKENS_EXPIRY_INDEX}"))  # added by version 3
        conn.execute(insert(schema.schema_version).values(version=1))
        conn.execute(
            insert(schema.users).values(
                uid=1, username="Old", username_key="old", password_hash="h", created_at_ms=1
            )
        )
    engine.dispose()


async def test_version_1_database_is_upgraded_and_keeps_its_data(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'v1.sqlite3'}"
    _create_version_1(url)
    db = Database(url)
    await db.start()
    try:
        assert (await UserStore(db).get_by_name("OLD")) is not None
        assert await MessageStore(db).claim_worker_id("m", 0) >= 0
    finally:
        await db.stop()
    engine = create_engine(url)
    with engine.connect() as conn:
        assert "message_workers" in inspect(conn).get_table_names()
        token_indexes = {ix["name"] for ix in inspect(conn).get_indexes("tokens")}
        version = conn.execute(select(schema.schema_version.c.version)).scalar_one()
    engine.dispose()
    assert schema.TOKENS_EXPIRY_INDEX in token_indexes
    assert version == schema.SCHEMA_VERSION == 3


async def test_a_newer_database_is_refused(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'future.sqlite3'}"
    db = Database(url)
    await db.start()
    await db.stop()
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(schema.schema_version.update().values(version=99))
    engine.dispose()
    db = Database(url)
    with pytest.raises(schema.SchemaTooNew):
        await db.start()
    await db.stop()
