"""The Store on every backend, with two writers standing for two message services."""

from __future__ import annotations

import asyncio
import itertools
import random
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Connection, Engine, event

from mpim.errors import ErrorCode
from mpim.proto import common_pb2
from mpim.services.message import MessageServiceImpl
from mpim.store import rawsql
from mpim.store.database import Database
from mpim.store.groups import GroupStore
from mpim.store.messages import DIRECT, GROUP, MessageStore, NewMessage
from mpim.store.users import UserStore
from tests.support.databases import mysql_url, postgres_url  # noqa: F401 (fixtures)
from tests.support.redis_server import wait_until


@pytest.fixture(params=["sqlite", "mysql", "postgres"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'store.sqlite3'}"
    return str(request.getfixturevalue(f"{request.param}_url"))


@pytest.fixture
async def two_databases(store_url: str) -> AsyncIterator[tuple[Database, Database]]:
    first = Database(store_url, max_batch=200)
    second = Database(store_url, max_batch=200)
    await first.start()
    await second.start()  # migrating an up-to-date schema is a no-op
    yield first, second
    await first.stop()
    await second.stop()


_next_id = iter(range(1, 10**9))


async def _users(db: Database, *names: str) -> list[int]:
    users = UserStore(db)
    uids = [await users.create_user(name, "x", 0) for name in names]
    assert None not in uids
    return [uid for uid in uids if uid is not None]


def direct(sender: int, to: int, text: str, cid: str | None = None) -> NewMessage:
    return NewMessage(next(_next_id), DIRECT, sender, to, 0, text, cid)


async def test_two_writers_keep_each_recipients_seq_gap_free_and_unique(
    two_databases: tuple[Database, Database],
) -> None:
    first, second = two_databases
    users = UserStore(first)
    uids = [await users.create_user(f"user{i}", "x", 0) for i in range(6)]
    assert None not in uids
    stores = [MessageStore(first), MessageStore(second)]
    rng = random.Random(7)
    recipients = [u for u in uids if u is not None]

    async def writer(store: MessageStore, sender: int, n: int) -> None:
        for i in range(0, n, 10):
            batch = [direct(sender, rng.choice(recipients), f"m{i + k}") for k in range(10)]
            await store.append(batch)

    await asyncio.gather(*(writer(stores[k % 2], 10_000 + k, 200) for k in range(8)))
    for uid in recipients:
        messages, last, more = await stores[0].sync(uid, 0, 10_000)
        seqs = [m.seq for m in messages]
        assert seqs == list(range(1, len(seqs) + 1)), f"uid {uid}: gaps or reuse"
        assert last == len(seqs) and not more
    total = 0
    for uid in recipients:
        total += len((await stores[0].sync(uid, 0, 10_000))[0])
    assert total == 8 * 200


async def test_client_message_id_is_unique_per_sender_across_writers(
    two_databases: tuple[Database, Database],
) -> None:
    first, second = two_databases
    uid = await UserStore(first).create_user("bob", "x", 0)
    assert uid is not None
    a, b = MessageStore(first), MessageStore(second)
    results = await asyncio.gather(
        a.append([direct(1, uid, "hello", cid="c1")]),
        b.append([direct(1, uid, "hello", cid="c1")]),
        a.append([direct(2, uid, "other sender", cid="c1")]),
    )
    first_id, second_id = results[0][0].msg_id, results[1][0].msg_id
    assert first_id == second_id
    assert sorted([results[0][0].duplicate, results[1][0].duplicate]) == [False, True]
    messages, last, _ = await a.sync(uid, 0, 100)
    assert [m.text for m in messages] == sorted(
        ["hello", "other sender"], key=lambda t: [m.text for m in messages].index(t)
    )
    assert len(messages) == 2 and last == 2


async def test_pull_returns_each_message_at_most_once(
    two_databases: tuple[Database, Database],
) -> None:
    first, second = two_databases
    uid = await UserStore(first).create_user("carol", "x", 0)
    assert uid is not None
    store_a, store_b = MessageStore(first), MessageStore(second)
    await store_a.append([direct(9, uid, f"t{i}") for i in range(50)])
    await store_a.mark_delivered([(uid, 3)])  # pushed live: PULL skips it
    pulls = await asyncio.gather(
        *(store.pull(uid, 7) for store in (store_a, store_b) for _ in range(6))
    )
    pulled = [m.seq for messages, _ in pulls for m in messages]
    assert sorted(pulled) == [s for s in range(1, 51) if s != 3]
    again, more = await store_b.pull(uid, 100)
    assert again == [] and not more


async def test_history_orders_newest_first_with_the_readers_seq(
    two_databases: tuple[Database, Database],
) -> None:
    first, _ = two_databases
    alice, bob = await _users(first, "alice", "bob")
    store = MessageStore(first)
    sent = await store.append(
        [direct(alice, bob, "a1"), direct(bob, alice, "b1"), direct(alice, bob, "a2")]
    )
    history = await store.history(alice, f"d:{min(alice, bob)}:{max(alice, bob)}", 10, None)
    assert [m.text for m in history] == ["a2", "b1", "a1"]
    assert [m.seq for m in history] == [0, 1, 0]
    assert history[1].kind == common_pb2.MESSAGE_KIND_DIRECT
    older = await store.history(alice, f"d:{min(alice, bob)}:{max(alice, bob)}", 10, sent[2].msg_id)
    assert [m.text for m in older] == ["b1", "a1"]


async def test_message_workers_get_distinct_ids(store_url: str) -> None:
    db = Database(store_url)
    await db.start()
    try:
        store = MessageStore(db)
        ids = [await store.claim_worker_id(f"message-{i}", 0) for i in range(5)]
        assert len(set(ids)) == 5
        assert all(0 <= i < 1024 for i in ids)
    finally:
        await db.stop()


async def test_refused_sends_store_nothing_and_take_no_seq(
    two_databases: tuple[Database, Database],
) -> None:
    first, _ = two_databases
    uid = await UserStore(first).create_user("dave", "x", 0)
    assert uid is not None
    store = MessageStore(first)
    results = await store.append(
        [
            direct(5, uid, "ok 1"),
            direct(5, 999_999, "to nobody"),
            NewMessage(next(_next_id), GROUP, 5, 424242, 0, "to no group", None),
            direct(5, uid, "ok 2"),
        ]
    )
    assert [r.error for r in results] == [
        None,
        ErrorCode.NO_SUCH_USER,
        ErrorCode.NO_SUCH_GROUP,
        None,
    ]
    messages, last, _ = await store.sync(uid, 0, 10)
    assert [(m.seq, m.text) for m in messages] == [(1, "ok 1"), (2, "ok 2")]
    assert last == 2


async def test_several_processes_may_create_the_schema_at_once(store_url: str) -> None:
    databases = [Database(store_url) for _ in range(4)]
    try:
        await asyncio.gather(*(db.start() for db in databases))
        uid = await UserStore(databases[0]).create_user("erin", "x", 0)
        assert uid is not None
    finally:
        for db in databases:
            await db.stop()


async def test_delivered_marks_do_not_wait_behind_a_send_commit_on_servers(
    store_url: str,
) -> None:
    db = Database(store_url)
    await db.start()
    try:
        alice, bob = await _users(db, "alice", "bob")
        store = MessageStore(db)
        [stored] = await store.append([direct(alice, bob, "hi")])
        [(uid, seq)] = stored.deliveries

        # A send commit that has not finished: the main writer is held.
        release = threading.Event()
        held = asyncio.ensure_future(db.write(lambda _conn: release.wait(10)))
        await asyncio.sleep(0.05)
        marking = asyncio.ensure_future(store.mark_delivered([(uid, seq)]))
        try:
            if db.is_sqlite:  # one writer: the marks ride with the sends instead
                assert store.marks_ride_with_sends
                await asyncio.sleep(0.2)
                assert not marking.done()
            else:
                assert not store.marks_ride_with_sends
                await asyncio.wait_for(marking, 5)  # committed beside the held one
        finally:
            release.set()
            await asyncio.gather(held, marking)
        assert await store.pull(bob, 10) == ([], False)  # marked: nothing left to pull
    finally:
        await db.stop()


def group(sender: int, group_id: int, text: str) -> NewMessage:
    return NewMessage(next(_next_id), GROUP, sender, group_id, 0, text, None)


async def _group_of(db: Database, uids: list[int], name: str) -> int:
    groups = GroupStore(db)
    group_id = await groups.create_group(uids[0], name, "", 0)
    for uid in uids[1:]:
        await groups.add_member(group_id, uid, 0)
    return group_id


async def test_group_and_direct_messages_share_each_members_gap_free_seq(
    two_databases: tuple[Database, Database],
) -> None:
    first, second = two_databases
    uids = await _users(first, *(f"m{i}" for i in range(5)))
    big = await _group_of(first, uids, "big")
    small = await _group_of(first, uids[:2], "small")
    members = {big: set(uids), small: set(uids[:2])}
    stores = [MessageStore(first), MessageStore(second)]
    rng = random.Random(11)
    expected: dict[int, set[str]] = {uid: set() for uid in uids}

    def one(label: str) -> NewMessage:
        pick = rng.random()
        if pick < 0.3:
            sender, to = rng.sample(uids, 2)
            expected[to].add(label)
            return direct(sender, to, label)
        gid = big if pick < 0.8 else small
        sender = rng.choice(sorted(members[gid]))
        for uid in members[gid] - {sender}:
            expected[uid].add(label)
        return group(sender, gid, label)

    async def writer(store: MessageStore, k: int) -> None:
        for b in range(12):
            await store.append([one(f"w{k}b{b}m{i}") for i in range(rng.randint(1, 15))])

    await asyncio.gather(*(writer(stores[k % 2], k) for k in range(4)))
    seen_in: dict[int, list[list[str]]] = {big: [], small: []}
    for uid in uids:
        messages, last, more = await stores[1].sync(uid, 0, 10_000)
        assert [m.seq for m in messages] == list(range(1, len(messages) + 1)), uid
        assert {m.text for m in messages} == expected[uid] and last == len(messages)
        assert not more
        paged: list[common_pb2.Message] = []
        after = 0
        while True:
            page, after, more = await stores[0].sync(uid, after, 7)
            paged.extend(page)
            if not more:
                break
        assert paged == messages
        for gid, seen in seen_in.items():
            seen.append([m.text for m in messages if m.kind == GROUP and m.group_id == gid])
    for orders in seen_in.values():  # a group's messages reach every member in one order
        for mine, theirs in itertools.combinations(orders, 2):
            both = set(mine) & set(theirs)
            assert [t for t in mine if t in both] == [t for t in theirs if t in both]


async def test_pull_skips_out_of_order_marks_and_folds_them_into_the_floor(
    two_databases: tuple[Database, Database],
) -> None:
    first, second = two_databases
    alice, bob = await _users(first, "alice", "bob")
    gid = await _group_of(first, [alice, bob], "pair")
    store_a, store_b = MessageStore(first), MessageStore(second)
    await store_a.append(
        [
            direct(alice, bob, "d1"),
            group(alice, gid, "g2"),
            group(alice, gid, "g3"),
            direct(alice, bob, "d4"),
        ]
    )
    await store_a.append([group(alice, gid, "g5")])
    await store_b.mark_delivered([(bob, 2), (bob, 4)])  # pushed, with gaps before each
    pulled, more = await store_a.pull(bob, 1)
    assert [(m.seq, m.text) for m in pulled] == [(1, "d1")] and more
    pulled, more = await store_b.pull(bob, 10)
    assert [(m.seq, m.text) for m in pulled] == [(3, "g3"), (5, "g5")] and not more
    assert await store_a.pull(bob, 10) == ([], False)

    await store_a.append([group(alice, gid, "g6"), group(alice, gid, "g7")])
    await store_a.mark_delivered([(bob, 7)])
    await store_b.mark_delivered([(bob, 6), (bob, 6)])  # two connections, one seq
    await store_a.append([direct(alice, bob, "d8")])
    pulled, _ = await store_b.pull(bob, 10)
    assert [(m.seq, m.text) for m in pulled] == [(8, "d8")]
    messages, last, _ = await store_a.sync(bob, 0, 100)
    assert [m.seq for m in messages] == list(range(1, 9)) and last == 8


async def test_group_history_carries_each_readers_own_seq(
    two_databases: tuple[Database, Database],
) -> None:
    first, _ = two_databases
    alice, bob, carol = await _users(first, "alice", "bob", "carol")
    gid = await _group_of(first, [alice, bob, carol], "three")
    store = MessageStore(first)
    sent = await store.append(
        [group(alice, gid, "a1"), group(bob, gid, "b2"), direct(carol, bob, "c-to-b")]
    )
    await store.append([group(alice, gid, "a3")])
    conv = f"g:{gid}"
    as_bob = await store.history(bob, conv, 10, None)
    assert [(m.text, m.seq) for m in as_bob] == [("a3", 3), ("b2", 0), ("a1", 1)]
    as_carol = await store.history(carol, conv, 10, None)
    assert [(m.text, m.seq) for m in as_carol] == [("a3", 3), ("b2", 2), ("a1", 1)]
    older = await store.history(carol, conv, 10, sent[1].msg_id)
    assert [(m.text, m.seq, m.group_id) for m in older] == [("a1", 1, gid)]


async def test_sync_far_past_the_last_seq_is_empty_not_an_error(
    two_databases: tuple[Database, Database],
) -> None:
    first, _ = two_databases
    alice, bob = await _users(first, "alice", "bob")
    gid = await _group_of(first, [alice], "late")
    store = MessageStore(first)
    await store.append([group(alice, gid, f"before {i}") for i in range(5)])
    await GroupStore(first).add_member(gid, bob, 0)
    await store.append([group(alice, gid, "after")])  # bob's seq 1 is the group's 6th
    for after in (1, 2**62, 2**63 - 2):
        assert await store.sync(bob, after, 500) == ([], 1, False)
    messages, last, more = await store.sync(bob, 0, 500)
    assert [(m.seq, m.text) for m in messages] == [(1, "after")] and last == 1 and not more


async def test_pull_skips_a_long_delivered_stretch_in_few_statements(
    two_databases: tuple[Database, Database],
) -> None:
    first, _ = two_databases
    alice, bob = await _users(first, "alice", "bob")
    store = MessageStore(first)
    await store.append([direct(alice, bob, f"offline {i}") for i in range(1, 6)])
    await store.append([direct(alice, bob, f"pushed {i}") for i in range(6, 3006)])
    await store.mark_delivered([(bob, seq) for seq in range(6, 3006)])
    await store.append([direct(alice, bob, f"later {i}") for i in range(3006, 3009)])

    statements = 0

    def count(*_args: object) -> None:
        nonlocal statements
        statements += 1

    event.listen(Engine, "before_cursor_execute", count)
    try:
        pulled, more = await store.pull(bob, 5)
        assert [m.seq for m in pulled] == [1, 2, 3, 4, 5] and more
        pulled, more = await store.pull(bob, 5)
        assert [m.seq for m in pulled] == [3006, 3007, 3008] and not more
    finally:
        event.remove(Engine, "before_cursor_execute", count)
    assert statements < 60  # pages of delivered seqs, not a statement per seq
    assert await store.pull(bob, 5) == ([], False)


async def test_a_job_written_alone_gets_a_transaction_of_its_own(store_url: str) -> None:
    db = Database(store_url)
    await db.start()
    try:
        seen: list[object] = []  # the transaction each job ran in

        def job(conn: Connection) -> None:
            seen.append(conn.get_transaction())

        release = threading.Event()
        held = asyncio.ensure_future(db.write(lambda _conn: release.wait(10)))
        await asyncio.sleep(0.05)
        writes = [
            asyncio.ensure_future(db.write(job)),
            asyncio.ensure_future(db.write(job, alone=True)),
            asyncio.ensure_future(db.write(job)),
            asyncio.ensure_future(db.write(job)),
        ]
        await asyncio.sleep(0.05)
        release.set()
        await asyncio.gather(held, *writes)
        assert seen[0] is not seen[1] and seen[1] is not seen[2] and seen[2] is seen[3]
    finally:
        await db.stop()


def _marks_state(db: Database) -> tuple[dict[int, int], list[tuple[int, int]]]:
    """Each user's pull floor, and the delivered marks still held as rows."""
    with db.engine.connect() as conn:
        floors = dict(conn.exec_driver_sql("SELECT uid, pull_floor FROM inbox_state").all())
        held = conn.exec_driver_sql("SELECT uid, seq FROM inbox_delivered ORDER BY uid, seq")
        return {int(u): int(f) for u, f in floors.items()}, [(int(u), int(s)) for u, s in held]


async def test_folding_marks_raises_floors_drops_their_rows_and_loses_nothing(
    two_databases: tuple[Database, Database],
) -> None:
    first, second = two_databases
    alice, bob, carol = await _users(first, "alice", "bob", "carol")
    store_a, store_b = MessageStore(first), MessageStore(second)
    await store_a.append(
        [direct(alice, bob, f"b{i}") for i in range(1, 8)]
        + [direct(alice, carol, f"c{i}") for i in range(1, 4)]
    )
    # Pushed: bob's 1-4 and 6-7 (5 never reached him), all of carol's.
    await store_b.mark_delivered([(bob, s) for s in (1, 2, 3, 4, 6, 7)])
    await store_b.mark_delivered([(carol, s) for s in (1, 2, 3)])
    on_servers = not first.is_sqlite  # SQLite folds marks as they are stored
    if on_servers:
        # One user a pass: the pass ends at the user it folded; the next goes on.
        assert await store_a.fold_marks(0, 1000, 1) == (bob, 1)
        assert _marks_state(first)[0][bob] == 4
        folding = store_a.fold_marks(bob, 1000, 64)
    else:
        folding = store_a.fold_marks(0, 1000, 64)
    # Sends to the same users go on meanwhile, from the other writer.
    folded, _ = await asyncio.gather(
        folding, store_b.append([direct(alice, bob, "b8"), direct(alice, carol, "c4")])
    )
    assert folded == (carol, 1 if on_servers else 0)
    assert await store_a.fold_marks(carol, 1000, 64) == (0, 0)  # past the last user
    floors, held = _marks_state(first)
    assert (floors[bob], floors[carol]) == (4, 3)
    assert held == [(bob, 6), (bob, 7)]
    await first.write_beside(rawsql.raise_pull_floors, [(bob, 2), (carol, 3)])
    assert _marks_state(first)[0] == floors  # a floor never moves down
    pulled, _ = await store_a.pull(bob, 10)
    assert [(m.seq, m.text) for m in pulled] == [(5, "b5"), (8, "b8")]
    pulled, _ = await store_a.pull(carol, 10)
    assert [(m.seq, m.text) for m in pulled] == [(4, "c4")]
    messages, last, _ = await store_b.sync(bob, 0, 100)
    assert [m.seq for m in messages] == list(range(1, 9)) and last == 8


@pytest.mark.parametrize("backend", ["mysql", "postgres"])
async def test_a_message_service_on_a_server_folds_marks_by_itself(
    backend: str, request: pytest.FixtureRequest
) -> None:
    db = Database(str(request.getfixturevalue(f"{backend}_url")))
    await db.start()
    try:
        alice, bob = await _users(db, "alice", "bob")
        store = MessageStore(db)
        await store.append([direct(alice, bob, f"m{i}") for i in range(1, 4)])
        await store.mark_delivered([(bob, 1), (bob, 2), (bob, 3)])
        assert _marks_state(db)[1] == [(bob, 1), (bob, 2), (bob, 3)]
        # Only the store and the metrics take part in folding.
        unused: Any = None
        service = MessageServiceImpl(store, unused, unused, unused, unused, fold_marks_seconds=0.05)
        await service.start()
        try:

            async def folded() -> bool:
                return _marks_state(db) == ({alice: 0, bob: 3}, [])

            await wait_until(folded)
        finally:
            await service.stop()
    finally:
        await db.stop()
