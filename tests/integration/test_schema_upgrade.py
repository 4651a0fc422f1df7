"""Databases written by older schema versions are upgraded in place, data kept."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import Connection, Engine, create_engine, insert, inspect, select, text
from sqlalchemy.exc import IntegrityError

from mpim.store import schema
from mpim.store.database import Database, ensure_database
from mpim.store.messages import DIRECT, GROUP, MessageStore, NewMessage
from mpim.store.users import UserStore
from tests.support.databases import mysql_url, postgres_url  # noqa: F401 (fixtures)
from tests.support.writer_calls import writer_children

_SINCE_5 = ("group_log", "inbox_runs", "inbox_delivered")
_SINCE_7 = ("legacy_group_seqs",)

# The inbox as versions 5 and 6 created it: unique (uid, msg_id), for HISTORY.
_INBOX_V6 = """
CREATE TABLE inbox (
    uid BIGINT NOT NULL, seq BIGINT NOT NULL, msg_id BIGINT NOT NULL,
    PRIMARY KEY (uid, seq), CONSTRAINT uq_inbox_uid_msg UNIQUE (uid, msg_id)
)
"""

# The inbox as versions 1 to 4 created it: a row per recipient, a delivered flag.
_INBOX_V4 = """
CREATE TABLE inbox (
    uid BIGINT NOT NULL, seq BIGINT NOT NULL, msg_id BIGINT NOT NULL,
    delivered BOOLEAN NOT NULL, PRIMARY KEY (uid, seq),
    CONSTRAINT uq_inbox_uid_msg UNIQUE (uid, msg_id)
)
"""


async def _upgraded(url: str) -> Engine:
    """Start and stop a Database on ``url`` (which upgrades it); an engine to look."""
    db = Database(url)
    await db.start()
    await db.stop()
    return create_engine(url)


def _create_tables_before_5(conn: Connection, *leave_out: str) -> None:
    skip = {"inbox", *_SINCE_5, *_SINCE_7, *leave_out}
    schema.metadata.create_all(
        conn, tables=[t for t in schema.metadata.sorted_tables if t.name not in skip]
    )
    if "messages" not in skip:
        conn.execute(text("ALTER TABLE messages DROP COLUMN rseq"))  # since version 7
        if conn.dialect.name == "sqlite":  # a table of its own there since version 9
            conn.execute(text(f"CREATE INDEX {schema.CONV_INDEX} ON messages (conv, msg_id)"))
    conn.execute(text(_INBOX_V4))


def _create_version_1(url: str) -> None:
    engine = create_engine(url)
    with engine.begin() as conn:
        _create_tables_before_5(conn, "message_workers")
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
        message_indexes = {ix["name"] for ix in inspect(conn).get_indexes("messages")}
        version = conn.execute(select(schema.schema_version.c.version)).scalar_one()
    engine.dispose()
    assert schema.TOKENS_EXPIRY_INDEX in token_indexes
    assert schema.CONV_INDEX not in message_indexes  # a table of its own since version 9
    assert version == schema.SCHEMA_VERSION == 10


@pytest.mark.parametrize("writer_process", [False, True], ids=["writer-thread", "writer-process"])
async def test_a_newer_database_is_refused(tmp_path: Path, writer_process: bool) -> None:
    url = f"sqlite:///{tmp_path / 'future.sqlite3'}"
    db = Database(url)
    await db.start()
    await db.stop()
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(schema.schema_version.update().values(version=99))
    engine.dispose()
    db = Database(url, writer_process=writer_process)
    with pytest.raises(schema.SchemaTooNew):
        await db.start()
    # The writer process started beside the migration is gone with it.
    assert db.writer_pid is None and writer_children() == []
    await db.stop()


# The messages table as versions 1 to 3 created it on SQLite.
_MESSAGES_V3 = """
CREATE TABLE messages (
    msg_id BIGINT NOT NULL, kind SMALLINT NOT NULL, sender BIGINT NOT NULL,
    target BIGINT NOT NULL, conv VARCHAR(48) NOT NULL, ts_ms BIGINT NOT NULL,
    text TEXT NOT NULL, client_msg_id VARCHAR(64),
    PRIMARY KEY (msg_id),
    CONSTRAINT uq_messages_sender_cid UNIQUE (sender, client_msg_id)
)
"""


def _users_7_and_8_in_group_1(conn: Connection) -> None:
    for uid in (7, 8):
        conn.execute(
            insert(schema.users).values(
                uid=uid,
                username=f"u{uid}",
                username_key=f"u{uid}",
                password_hash="h",
                created_at_ms=1,
            )
        )
    conn.execute(
        insert(schema.chat_groups).values(
            group_id=1, name="g", description="", owner_uid=7, created_at_ms=1
        )
    )
    conn.execute(
        insert(schema.group_members),
        [{"group_id": 1, "uid": uid, "joined_at_ms": 1} for uid in (7, 8)],
    )


def _message(msg_id: int, cid: str | None) -> dict[str, object]:
    return {
        "msg_id": msg_id,
        "kind": 1,
        "sender": 7,
        "target": 8,
        "conv": "d:7:8",
        "ts_ms": msg_id,
        "text": f"m{msg_id}",
        "client_msg_id": cid,
    }


async def test_version_3_sqlite_gets_a_partial_cid_index_and_keeps_its_messages(
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path / 'v3.sqlite3'}"
    engine = create_engine(url)
    with engine.begin() as conn:
        _create_tables_before_5(conn, "messages")
        conn.execute(text(_MESSAGES_V3))
        conn.execute(text("CREATE INDEX ix_messages_conv ON messages (conv, msg_id)"))
        conn.execute(insert(schema.schema_version).values(version=3))
        conn.execute(insert(schema.messages), [_message(1, "a"), _message(2, None)])
    engine.dispose()

    engine = await _upgraded(url)
    with engine.connect() as conn:
        assert (
            conn.execute(select(schema.schema_version.c.version)).scalar_one()
            == schema.SCHEMA_VERSION
        )
        assert inspect(conn).get_unique_constraints("messages") == []
        indexes = {ix["name"]: ix for ix in inspect(conn).get_indexes("messages")}
        assert set(indexes) == {schema.CID_INDEX}  # HISTORY's is a table since version 9
        entries = conn.execute(text("SELECT conv, msg_id FROM conv_index ORDER BY msg_id"))
        assert [tuple(row) for row in entries] == [("d:7:8", 1), ("d:7:8", 2)]
        ddl = conn.execute(
            text("SELECT sql FROM sqlite_master WHERE name = :n"), {"n": schema.CID_INDEX}
        ).scalar_one()
        assert "WHERE client_msg_id IS NOT NULL" in ddl
        kept = conn.execute(
            select(schema.messages.c.msg_id, schema.messages.c.client_msg_id).order_by(
                schema.messages.c.msg_id
            )
        ).all()
        assert [tuple(row) for row in kept] == [(1, "a"), (2, None)]
    with engine.begin() as conn:  # messages without a cid: as many as you like
        conn.execute(insert(schema.messages), [_message(3, None), _message(4, None)])
    with pytest.raises(IntegrityError), engine.begin() as conn:  # a cid: still unique
        conn.execute(insert(schema.messages), [_message(5, "a")])
    engine.dispose()


async def test_version_4_inbox_keeps_its_delivered_marks_and_group_rows(tmp_path: Path) -> None:
    """Before version 5 every group message had an inbox row per member and
    delivered marks were a column; both keep working beside the new layout."""
    url = f"sqlite:///{tmp_path / 'v4.sqlite3'}"
    engine = create_engine(url)
    with engine.begin() as conn:
        _create_tables_before_5(conn)
        conn.execute(insert(schema.schema_version).values(version=4))
        _users_7_and_8_in_group_1(conn)
        # uid 8 got three messages: 1 pulled (floor 1), 2 pushed, 3 not yet sent
        conn.execute(
            insert(schema.messages),
            [
                {**_message(1, None), "kind": DIRECT},
                {**_message(2, None), "kind": GROUP, "target": 1, "conv": "g:1"},
                {**_message(3, None), "kind": DIRECT},
            ],
        )
        conn.execute(
            text("INSERT INTO inbox VALUES (:uid, :seq, :msg_id, :delivered)"),
            [
                {"uid": 8, "seq": 1, "msg_id": 1, "delivered": True},
                {"uid": 8, "seq": 2, "msg_id": 2, "delivered": True},
                {"uid": 8, "seq": 3, "msg_id": 3, "delivered": False},
            ],
        )
        conn.execute(
            insert(schema.inbox_state),
            [
                {"uid": 7, "last_seq": 0, "pull_floor": 0},
                {"uid": 8, "last_seq": 3, "pull_floor": 1},
            ],
        )
    engine.dispose()

    db = Database(url)
    await db.start()
    try:
        store = MessageStore(db)
        stored = await store.append([NewMessage(4, GROUP, 7, 1, 4, "new", None)])
        assert stored[0].deliveries == [(8, 4)]
        pulled, more = await store.pull(8, 50)
        assert [(m.id, m.seq) for m in pulled] == [(3, 3), (4, 4)] and not more
        synced, last, _ = await store.sync(8, 0, 50)
        assert [(m.id, m.seq, m.kind) for m in synced] == [
            (1, 1, DIRECT),
            (2, 2, GROUP),
            (3, 3, DIRECT),
            (4, 4, GROUP),
        ]
        assert last == 4
        history = await store.history(8, "g:1", 50, None)
        assert [(m.id, m.seq) for m in history] == [(4, 4), (2, 2)]
    finally:
        await db.stop()
    engine = create_engine(url)
    with engine.connect() as conn:  # a version-4 process left running fails loudly
        assert "delivered" not in {c["name"] for c in inspect(conn).get_columns("inbox")}
    engine.dispose()


async def test_version_5_loses_the_inbox_delivered_column(tmp_path: Path) -> None:
    """Version 5 as first released still had the column; version 6 drops it."""
    url = f"sqlite:///{tmp_path / 'v5.sqlite3'}"
    engine = create_engine(url)
    with engine.begin() as conn:
        _create_tables_before_5(conn)
        schema.metadata.create_all(
            conn, tables=[t for t in schema.metadata.sorted_tables if t.name in _SINCE_5]
        )
        conn.execute(insert(schema.schema_version).values(version=5))
    engine.dispose()
    engine = await _upgraded(url)
    with engine.connect() as conn:
        assert "delivered" not in {c["name"] for c in inspect(conn).get_columns("inbox")}
        assert (
            conn.execute(select(schema.schema_version.c.version)).scalar_one()
            == schema.SCHEMA_VERSION
        )
    engine.dispose()


@pytest.fixture(params=["sqlite", "mysql", "postgres"])
def any_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'v6.sqlite3'}"
    return str(request.getfixturevalue(f"{request.param}_url"))


def _create_version_6(url: str) -> None:
    """Users 7 and 8 in group 1; 8 got direct message 1 (seq 1), group
    message 3 as an inbox row (stored before version 5, seq 2) and group
    message 4 by run (seq 3); 7 got direct message 2 (seq 1)."""
    ensure_database(url)
    engine = create_engine(url)
    with engine.begin() as conn:
        schema.metadata.create_all(
            conn,
            tables=[t for t in schema.metadata.sorted_tables if t.name not in {"inbox", *_SINCE_7}],
        )
        conn.execute(text("ALTER TABLE messages DROP COLUMN rseq"))
        conn.execute(text(_INBOX_V6))
        conn.execute(insert(schema.schema_version).values(version=6))
        _users_7_and_8_in_group_1(conn)
        group = {"kind": GROUP, "target": 1, "conv": "g:1"}
        conn.execute(
            text(
                "INSERT INTO messages (msg_id, kind, sender, target, conv, ts_ms, text) "
                "VALUES (:msg_id, :kind, :sender, :target, :conv, 1, :text)"
            ),
            [
                {
                    "msg_id": 1,
                    "kind": DIRECT,
                    "sender": 7,
                    "target": 8,
                    "conv": "d:7:8",
                    "text": "a",
                },
                {
                    "msg_id": 2,
                    "kind": DIRECT,
                    "sender": 8,
                    "target": 7,
                    "conv": "d:7:8",
                    "text": "b",
                },
                {"msg_id": 3, "sender": 7, "text": "c", **group},
                {"msg_id": 4, "sender": 7, "text": "d", **group},
            ],
        )
        conn.execute(
            text("INSERT INTO inbox (uid, seq, msg_id) VALUES (:uid, :seq, :msg_id)"),
            [
                {"uid": 8, "seq": 1, "msg_id": 1},
                {"uid": 7, "seq": 1, "msg_id": 2},
                {"uid": 8, "seq": 2, "msg_id": 3},
            ],
        )
        conn.execute(insert(schema.group_log).values(group_id=1, gseq=1, msg_id=4))
        conn.execute(
            insert(schema.inbox_runs).values(
                uid=8, first_seq=3, last_seq=3, group_id=1, first_gseq=1
            )
        )
        conn.execute(
            insert(schema.inbox_state),
            [
                {"uid": 7, "last_seq": 1, "pull_floor": 1},
                {"uid": 8, "last_seq": 3, "pull_floor": 3},
            ],
        )
    engine.dispose()


async def test_version_6_history_keeps_every_readers_seq_without_the_inbox_msg_key(
    any_url: str,
) -> None:
    _create_version_6(any_url)
    db = Database(any_url, writer_process=True)  # as embedded runs it (servers: a thread)
    await db.start()
    try:
        store = MessageStore(db)

        async def seqs(uid: int, conv: str) -> list[tuple[int, int]]:
            return [(m.id, m.seq) for m in await store.history(uid, conv, 50, None)]

        assert await seqs(8, "d:7:8") == [(2, 0), (1, 1)]  # sent: 0; received: its seq
        assert await seqs(7, "d:7:8") == [(2, 1), (1, 0)]
        assert await seqs(8, "g:1") == [(4, 3), (3, 2)]  # by run; an old inbox row
        assert await seqs(7, "g:1") == [(4, 0), (3, 0)]  # the sender's own
        # New messages after the upgrade: seqs recorded on the way in.
        await store.append(
            [NewMessage(5, DIRECT, 7, 8, 5, "e", None), NewMessage(6, GROUP, 8, 1, 6, "f", None)]
        )
        assert (await seqs(8, "d:7:8"))[0] == (5, 4)
        assert (await seqs(7, "g:1"))[0] == (6, 2)
        synced, last, _ = await store.sync(8, 0, 50)
        assert [(m.id, m.seq) for m in synced] == [(1, 1), (3, 2), (4, 3), (5, 4)] and last == 4
    finally:
        await db.stop()
    engine = create_engine(any_url)
    with engine.connect() as conn:
        found = inspect(conn)
        keys = {c["name"] for c in found.get_unique_constraints("inbox")}
        keys |= {ix["name"] for ix in found.get_indexes("inbox") if ix.get("unique")}
        assert "uq_inbox_uid_msg" not in keys
        assert (
            conn.execute(select(schema.schema_version.c.version)).scalar_one()
            == schema.SCHEMA_VERSION
        )
    engine.dispose()


# The hot tables as versions 5 to 7 created them on SQLite: rows by a hidden
# rowid, each primary key a separate index.
_HOT_TABLES_V7 = """
CREATE TABLE messages (
    msg_id BIGINT NOT NULL, kind SMALLINT NOT NULL, sender BIGINT NOT NULL,
    target BIGINT NOT NULL, conv VARCHAR(48) NOT NULL, ts_ms BIGINT NOT NULL,
    text TEXT NOT NULL, client_msg_id VARCHAR(64), rseq BIGINT, PRIMARY KEY (msg_id)
);
CREATE INDEX ix_messages_conv ON messages (conv, msg_id);
CREATE UNIQUE INDEX uq_messages_sender_cid ON messages (sender, client_msg_id)
    WHERE client_msg_id IS NOT NULL;
CREATE TABLE inbox (
    uid BIGINT NOT NULL, seq BIGINT NOT NULL, msg_id BIGINT NOT NULL, PRIMARY KEY (uid, seq)
);
CREATE TABLE group_log (
    group_id BIGINT NOT NULL, gseq BIGINT NOT NULL, msg_id BIGINT NOT NULL,
    PRIMARY KEY (group_id, gseq)
);
CREATE INDEX ix_group_log_msg_id ON group_log (msg_id);
CREATE TABLE inbox_runs (
    uid BIGINT NOT NULL, first_seq BIGINT NOT NULL, last_seq BIGINT NOT NULL,
    group_id BIGINT NOT NULL, first_gseq BIGINT NOT NULL, PRIMARY KEY (uid, first_seq)
);
CREATE INDEX ix_inbox_runs_group ON inbox_runs (uid, group_id, first_gseq);
CREATE TABLE inbox_delivered (uid BIGINT NOT NULL, seq BIGINT NOT NULL, PRIMARY KEY (uid, seq));
CREATE TABLE inbox_state (
    uid BIGINT NOT NULL, last_seq BIGINT NOT NULL, pull_floor BIGINT NOT NULL, PRIMARY KEY (uid)
);
"""
_HOT = ("messages", "inbox", "group_log", "inbox_runs", "inbox_delivered", "inbox_state")


def _create_version_7(url: str) -> None:
    """Users 7 and 8 in group 1; 8 got direct message 1 (seq 1, sent with a
    cid) and group message 2 by run (seq 2), and holds a mark for seq 4
    above its floor 1."""
    engine = create_engine(url)
    with engine.begin() as conn:
        schema.metadata.create_all(
            conn, tables=[t for t in schema.metadata.sorted_tables if t.name not in _HOT]
        )
        for statement in _HOT_TABLES_V7.split(";"):
            if statement.strip():
                conn.execute(text(statement))
        # One an operator added: the upgrade must not drop it.
        conn.execute(text("CREATE INDEX ix_ops_sender_ts ON messages (sender, ts_ms)"))
        conn.execute(insert(schema.schema_version).values(version=7))
        _users_7_and_8_in_group_1(conn)
        conn.execute(
            insert(schema.messages),
            [
                {**_message(1, "c1"), "kind": DIRECT, "rseq": 1},
                {**_message(2, None), "kind": GROUP, "target": 1, "conv": "g:1", "rseq": None},
            ],
        )
        conn.execute(insert(schema.inbox).values(uid=8, seq=1, msg_id=1))
        conn.execute(insert(schema.group_log).values(group_id=1, gseq=1, msg_id=2))
        conn.execute(
            insert(schema.inbox_runs).values(
                uid=8, first_seq=2, last_seq=2, group_id=1, first_gseq=1
            )
        )
        conn.execute(insert(schema.inbox_delivered).values(uid=8, seq=4))
        conn.execute(
            insert(schema.inbox_state),
            [
                {"uid": 7, "last_seq": 0, "pull_floor": 0},
                {"uid": 8, "last_seq": 4, "pull_floor": 1},
            ],
        )
    engine.dispose()


def _rows(engine: Engine) -> dict[str, list[tuple[object, ...]]]:
    with engine.connect() as conn:
        return {
            name: [tuple(r) for r in conn.execute(text(f"SELECT * FROM {name} ORDER BY 1, 2"))]
            for name in _HOT
        }


async def test_version_7_sqlite_stores_each_hot_table_in_one_btree(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'v7.sqlite3'}"
    _create_version_7(url)
    engine = create_engine(url)
    before = _rows(engine)
    engine.dispose()

    engine = await _upgraded(url)
    assert _rows(engine) == before
    with engine.connect() as conn:
        assert conn.execute(select(schema.schema_version.c.version)).scalar_one() == 10
        tables = conn.execute(text("SELECT name, sql FROM sqlite_master WHERE type = 'table'"))
        ddl = {name: sql for name, sql in tables}
        for name in ("inbox", "group_log", "inbox_runs", "inbox_delivered"):
            assert "WITHOUT ROWID" in ddl[name], name
        for name, key in (("messages", "msg_id"), ("inbox_state", "uid")):
            assert "WITHOUT ROWID" not in ddl[name]
            assert all(row[3] != "pk" for row in conn.exec_driver_sql(f"PRAGMA index_list({name})"))
            # the key is the rowid itself
            assert (
                conn.execute(text(f"SELECT count(*) FROM {name} WHERE rowid != {key}")).scalar()
                == 0
            )
        found = inspect(conn)
        assert {ix["name"] for ix in found.get_indexes("messages")} == {
            schema.CID_INDEX,
            "ix_ops_sender_ts",
        }
        assert {ix["name"] for ix in found.get_indexes("group_log")} == {"ix_group_log_msg_id"}
        assert {ix["name"] for ix in found.get_indexes("inbox_runs")} == {"ix_inbox_runs_group"}
        assert not [t for t in found.get_table_names() if t.endswith("_v7")]
    with pytest.raises(IntegrityError), engine.begin() as conn:  # a cid: still unique
        conn.execute(insert(schema.messages), [{**_message(9, "c1"), "sender": 7}])
    with pytest.raises(IntegrityError), engine.begin() as conn:  # keys: still unique
        conn.execute(insert(schema.inbox).values(uid=8, seq=1, msg_id=9))
    engine.dispose()

    db = Database(url, writer_process=True)  # as embedded runs it
    await db.start()
    try:
        store = MessageStore(db)
        again, fresh = await store.append(
            [
                NewMessage(5, DIRECT, 7, 8, 5, "again", "c1"),
                NewMessage(6, DIRECT, 7, 8, 6, "e", None),
            ]
        )
        assert (again.msg_id, again.duplicate) == (1, True)
        assert fresh.deliveries == [(8, 5)]  # after the held seq 4's last_seq
        synced, last, _ = await store.sync(8, 0, 50)
        assert [(m.id, m.seq) for m in synced] == [(1, 1), (2, 2), (6, 5)] and last == 5
        assert [(m.id, m.seq) for m in await store.history(8, "d:7:8", 50, None)] == [
            (6, 5),
            (1, 1),
        ]
    finally:
        await db.stop()
