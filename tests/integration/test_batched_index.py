"""SQLite's conversation index and inbox, written in batches: HISTORY, SYNC and
PULL see every message once, before and after the batch that holds it is
merged."""

from __future__ import annotations

import itertools
import random
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import Connection, create_engine, insert, inspect, select, text

from mpim.store import batched_index, schema
from mpim.store.database import Database
from mpim.store.groups import GroupStore
from mpim.store.messages import (
    DIRECT,
    GROUP,
    MessageStore,
    NewMessage,
    _history_query,
    _inbox_query,
)
from mpim.store.users import UserStore

MERGE_ROWS = 7  # small, so that a few sends cross it many times


@pytest.fixture
async def db(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Database]:
    monkeypatch.setattr(batched_index, "MERGE_ROWS", MERGE_ROWS)
    database = Database(f"sqlite:///{tmp_path / 'store.sqlite3'}")  # writer thread: sees the patch
    await database.start()
    yield database
    await database.stop()


def _counts(db: Database) -> tuple[int, int]:
    engine = create_engine(db.url)
    with engine.connect() as conn:
        pending = conn.execute(text("SELECT count(*) FROM index_pending")).scalar_one()
        merged = conn.execute(text("SELECT count(*) FROM conv_index")).scalar_one()
    engine.dispose()
    return int(pending), int(merged)


async def test_history_sees_each_message_once_whether_pending_or_merged(db: Database) -> None:
    users = UserStore(db)
    alice, bob, carol = [await users.create_user(n, "x", 0) for n in ("alice", "bob", "carol")]
    assert alice and bob and carol
    groups = GroupStore(db)
    gid = await groups.create_group(alice, "g", "", 0)
    for uid in (bob, carol):
        await groups.add_member(gid, uid, 0)
    store = MessageStore(db)
    convs = {
        "ab": f"d:{min(alice, bob)}:{max(alice, bob)}",
        "ac": f"d:{min(alice, carol)}:{max(alice, carol)}",
        "g": f"g:{gid}",
    }
    sent: dict[str, list[int]] = {name: [] for name in convs}
    ids = itertools.count(1)
    rng = random.Random(7)
    merges_seen = 0
    for _ in range(12):
        batch = []
        for _ in range(rng.randint(1, 5)):
            name = rng.choice(list(convs))
            sender, target, kind = {
                "ab": (rng.choice((alice, bob)), 0, DIRECT),
                "ac": (carol, alice, DIRECT),
                "g": (rng.choice((alice, bob, carol)), gid, GROUP),
            }[name]
            if name == "ab":
                target = bob if sender == alice else alice
            msg_id = next(ids)
            batch.append(NewMessage(msg_id, kind, sender, target, 0, f"{name}{msg_id}", None))
            sent[name].append(msg_id)
        results = await store.append(batch)
        assert all(r.error is None for r in results)
        pending, merged = _counts(db)
        assert pending + merged == sum(len(v) for v in sent.values())  # each entry once
        assert pending < MERGE_ROWS
        merges_seen = max(merges_seen, merged)
        for name, conv in convs.items():
            newest_first = sent[name][::-1]
            whole = await store.history(alice, conv, 100, None)
            assert [m.id for m in whole] == newest_first
            paged: list[int] = []
            before = None
            while True:  # pages of 2 straddle the pending and the merged part
                page = await store.history(alice, conv, 2, before)
                if not page:
                    break
                paged += [m.id for m in page]
                before = page[-1].id
            assert paged == newest_first
    assert merges_seen >= 3 * MERGE_ROWS  # the merge ran several times


async def test_a_merge_empties_the_pending_table_and_restarts_its_count(db: Database) -> None:
    users = UserStore(db)
    a, b = [await users.create_user(n, "x", 0) for n in ("a", "b")]
    assert a and b
    store = MessageStore(db)
    await store.append([NewMessage(i, DIRECT, a, b, 0, "m", None) for i in range(1, MERGE_ROWS)])
    assert _counts(db) == (MERGE_ROWS - 1, 0)
    await store.append([NewMessage(i, DIRECT, b, a, 0, "m", None) for i in range(100, 103)])
    assert _counts(db) == (0, MERGE_ROWS + 2)  # the crossing commit's own entries too
    await store.append([NewMessage(200, DIRECT, a, b, 0, "m", None)])
    engine = create_engine(db.url)
    with engine.connect() as conn:
        assert conn.execute(text("SELECT pos, msg_id FROM index_pending")).all() == [(1, 200)]
    engine.dispose()


async def test_a_key_taken_from_outside_costs_its_entry_not_every_later_send(
    db: Database, caplog: pytest.LogCaptureFixture
) -> None:
    users = UserStore(db)
    a, b, c = [await users.create_user(n, "x", 0) for n in ("a", "b", "c")]
    assert a and b and c
    store = MessageStore(db)
    await store.append([NewMessage(i, DIRECT, a, b, 0, "m", None) for i in range(1, 4)])
    engine = create_engine(db.url)
    with engine.begin() as conn:  # an inbox row above b's last_seq (3): a bad restore, say
        conn.execute(insert(schema.inbox).values(uid=b, seq=5, msg_id=2))
    engine.dispose()
    taken = await store.append([NewMessage(i, DIRECT, a, b, 0, "m", None) for i in range(4, 6)])
    assert [r.deliveries for r in taken] == [[(b, 4)], [(b, 5)]]
    for k in range(3):  # cross the merge: every later send still goes through
        sent = await store.append(
            [NewMessage(100 + 10 * k + i, DIRECT, a, c, 0, "m", None) for i in range(4)]
        )
        assert all(r.error is None for r in sent)
    assert _counts(db)[0] < MERGE_ROWS
    assert "1 of " in caplog.text and "already taken" in caplog.text
    synced, _, _ = await store.sync(b, 0, 50)  # the row found there is kept
    assert [(m.seq, m.id) for m in synced] == [(1, 1), (2, 2), (3, 3), (4, 4), (5, 2)]
    assert [m.id for m in await store.history(a, f"d:{min(a, b)}:{max(a, b)}", 50, None)] == [
        5,
        4,
        3,
        2,
        1,
    ]
    received, _, _ = await store.sync(c, 0, 50)
    assert len(received) == 12


async def test_history_finds_its_rows_by_key_and_never_scans_the_messages(db: Database) -> None:
    engine = create_engine(db.url)
    with engine.connect() as conn:
        for before in (None, 123):
            query = _history_query(conn, "d:1:2", 50, before)
            sql = str(query.compile(engine, compile_kwargs={"literal_binds": True}))
            plan = [str(row[3]) for row in conn.execute(text(f"EXPLAIN QUERY PLAN {sql}"))]
            assert any(step.startswith("SEARCH conv_index USING PRIMARY KEY") for step in plan)
            assert not any(step.startswith("SCAN messages") for step in plan), plan
            assert "SEARCH messages USING INTEGER PRIMARY KEY (rowid=?)" in plan
    engine.dispose()


async def test_sync_and_pull_see_each_message_once_whether_pending_or_merged(
    db: Database,
) -> None:
    users = UserStore(db)
    a, b, c = [await users.create_user(n, "x", 0) for n in ("a", "b", "c")]
    assert a and b and c
    groups = GroupStore(db)
    gid = await groups.create_group(a, "g", "", 0)
    await groups.add_member(gid, b, 0)
    store = MessageStore(db)
    rng = random.Random(11)
    ids = itertools.count(1)
    received: list[int] = []  # b's messages, in seq order
    pulled: list[int] = []
    for _ in range(15):
        batch = []
        for _ in range(rng.randint(1, 4)):
            msg_id = next(ids)
            if rng.random() < 0.25:  # a group message: reaches b by run, between direct ones
                batch.append(NewMessage(msg_id, GROUP, a, gid, 0, f"g{msg_id}", None))
            else:
                batch.append(NewMessage(msg_id, DIRECT, rng.choice((a, c)), b, 0, "d", None))
            received.append(msg_id)
        results = await store.append(batch)
        assert all(r.error is None for r in results)
        synced, last, more = await store.sync(b, 0, 500)
        assert [m.id for m in synced] == received and not more
        assert [m.seq for m in synced] == list(range(1, last + 1))
        after = rng.randint(0, last)
        tail, _, _ = await store.sync(b, after, 500)
        assert [m.id for m in tail] == received[after:]
        page, _ = await store.pull(b, 2)  # PULL in small pages, across merges
        pulled += [m.id for m in page]
    while True:
        page, _ = await store.pull(b, 2)
        if not page:
            break
        pulled += [m.id for m in page]
    assert pulled == received
    engine = create_engine(db.url)
    with engine.connect() as conn:
        merged = conn.execute(text("SELECT count(*) FROM inbox")).scalar_one()
        waiting = conn.execute(
            text("SELECT count(*) FROM index_pending WHERE uid IS NOT NULL")
        ).scalar_one()
    engine.dispose()
    direct_count = sum(1 for m in synced if m.kind == DIRECT)
    assert merged + waiting == direct_count and merged >= 2 * MERGE_ROWS


async def test_inbox_windows_find_their_rows_by_key(db: Database) -> None:
    engine = create_engine(db.url)
    with engine.connect() as conn:
        query = _inbox_query(conn, 5, 10, 20)
        sql = str(query.compile(engine, compile_kwargs={"literal_binds": True}))
        plan = [str(row[3]) for row in conn.execute(text(f"EXPLAIN QUERY PLAN {sql}"))]
    engine.dispose()
    assert any(step.startswith("SEARCH inbox USING PRIMARY KEY (uid=?") for step in plan), plan
    assert not any(step.startswith(("SCAN messages", "SCAN inbox")) for step in plan), plan


def _users_and_messages(conn: Connection, last_seq: int) -> None:
    """Users 7 and 8; messages 1..5 from 7, odd ones in d:7:8, even in d:7:9."""
    for uid, name in ((7, "u7"), (8, "u8")):
        conn.execute(
            insert(schema.users).values(
                uid=uid, username=name, username_key=name, password_hash="h", created_at_ms=0
            )
        )
        seq = last_seq if uid == 8 else 0
        conn.execute(insert(schema.inbox_state).values(uid=uid, last_seq=seq, pull_floor=0))
    conn.execute(
        insert(schema.messages),
        [
            {
                "msg_id": i,
                "kind": DIRECT,
                "sender": 7,
                "target": 8,
                "conv": "d:7:8" if i % 2 else "d:7:9",
                "ts_ms": i,
                "text": f"m{i}",
                "rseq": i,
            }
            for i in range(1, 6)
        ],
    )


async def test_version_9_as_first_committed_moves_its_pending_entries(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'v9.sqlite3'}"
    engine = create_engine(url)
    with engine.begin() as conn:
        schema.metadata.create_all(conn)
        schema.conv_index.create(conn)
        conn.execute(
            text(
                "CREATE TABLE conv_pending (pos INTEGER NOT NULL PRIMARY KEY, "
                "msg_id BIGINT NOT NULL, conv VARCHAR(48) NOT NULL)"
            )
        )
        conn.execute(insert(schema.schema_version).values(version=9))
        _users_and_messages(conn, last_seq=5)
        conn.execute(insert(schema.inbox), [{"uid": 8, "seq": i, "msg_id": i} for i in range(1, 6)])
        conn.execute(text("INSERT INTO conv_index VALUES ('d:7:8', 1), ('d:7:9', 2), ('d:7:8', 3)"))
        conn.execute(
            text("INSERT INTO conv_pending (msg_id, conv) VALUES (4, 'd:7:9'), (5, 'd:7:8')")
        )
    engine.dispose()

    db = Database(url, writer_process=True)
    await db.start()
    try:
        store = MessageStore(db)
        assert [m.id for m in await store.history(8, "d:7:8", 50, None)] == [5, 3, 1]
        assert [m.id for m in await store.history(8, "d:7:9", 50, None)] == [4, 2]
        synced, last, _ = await store.sync(8, 0, 50)
        assert [(m.id, m.seq) for m in synced] == [(i, i) for i in range(1, 6)] and last == 5
    finally:
        await db.stop()
    engine = create_engine(url)
    with engine.connect() as conn:
        assert conn.execute(select(schema.schema_version.c.version)).scalar_one() == 10
        tables = set(inspect(conn).get_table_names())
        assert "conv_pending" not in tables and "index_pending" in tables
        merged = conn.execute(text("SELECT msg_id FROM conv_index ORDER BY msg_id")).scalars()
        assert list(merged) == [1, 2, 3, 4, 5]
    engine.dispose()


async def test_version_8_moves_the_conversation_index_into_its_table(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'v8.sqlite3'}"
    engine = create_engine(url)
    with engine.begin() as conn:
        schema.metadata.create_all(conn)
        conn.execute(text(f"CREATE INDEX {schema.CONV_INDEX} ON messages (conv, msg_id)"))
        conn.execute(insert(schema.schema_version).values(version=8))
        _users_and_messages(conn, last_seq=0)
    engine.dispose()

    db = Database(url, writer_process=True)  # as embedded runs it
    await db.start()
    try:
        store = MessageStore(db)
        assert [m.id for m in await store.history(8, "d:7:8", 50, None)] == [5, 3, 1]
        await store.append([NewMessage(6, DIRECT, 8, 7, 6, "new", None)])
        assert [m.id for m in await store.history(7, "d:7:8", 50, None)] == [6, 5, 3, 1]
    finally:
        await db.stop()
    engine = create_engine(url)
    with engine.connect() as conn:
        assert conn.execute(select(schema.schema_version.c.version)).scalar_one() == 10
        assert schema.CONV_INDEX not in {ix["name"] for ix in inspect(conn).get_indexes("messages")}
        merged = conn.execute(text("SELECT conv, msg_id FROM conv_index ORDER BY msg_id")).all()
        assert [tuple(r) for r in merged] == [
            ("d:7:8", 1),
            ("d:7:9", 2),
            ("d:7:8", 3),
            ("d:7:9", 4),
            ("d:7:8", 5),
        ]
        pending = conn.execute(text("SELECT msg_id, conv, uid, seq FROM index_pending")).all()
        assert [tuple(r) for r in pending] == [(6, "d:7:8", 7, 1)]
    engine.dispose()
