"""The SQLite writer process: calls cross to it, commit there, and come back in order."""

from __future__ import annotations

import asyncio
import importlib
import os
import pickle
import signal
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
from sqlalchemy.exc import IntegrityError

from mpim.errors import ErrorCode, MpimError
from mpim.store import checkpointer, database, writer_process
from mpim.store.database import Database
from mpim.store.failures import StoreUnavailable
from mpim.store.frames import FrameBuffer, encode
from mpim.store.messages import DIRECT, MessageStore, NewMessage
from mpim.store.users import UserStore
from tests.support.writer_calls import (
    begin_id,
    die,
    note,
    notes,
    refuse,
    unpicklable,
    wait_for_file,
    wal_autocheckpoint,
    writer_children,
)


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    database = Database(f"sqlite:///{tmp_path / 'w.sqlite3'}", writer_process=True)
    await database.start()
    yield database
    await database.stop()


async def _behind_a_held_commit(
    db: Database, gate: Path, make_calls: Callable[[], list[Awaitable[object]]]
) -> list[object]:
    """Hold the writer in a commit, make the calls (queued behind it), then
    let it go: their outcomes, or exceptions."""
    held = asyncio.ensure_future(db.write(wait_for_file, str(gate)))
    await asyncio.sleep(0.2)
    waiting = asyncio.gather(*make_calls(), return_exceptions=True)
    await asyncio.sleep(0.2)
    await asyncio.to_thread(gate.touch)
    await held
    return list(await waiting)


def _sample(db: Database, name: str) -> float:
    value = db.metrics.registry.get_sample_value(name)
    return 0.0 if value is None else value


async def test_calls_commit_in_the_writer_process_in_the_order_they_were_made(
    db: Database,
) -> None:
    pids = await asyncio.gather(*(db.write(note, f"k{i}", str(i)) for i in range(300)))
    assert set(pids) == {db.writer_pid}
    assert db.writer_pid != os.getpid()
    # Committed before the answer: a reader of this process sees every row.
    assert await db.read(notes) == [(f"k{i}", str(i)) for i in range(300)]


async def test_calls_queued_behind_a_commit_share_one_transaction_and_fail_alone(
    db: Database, tmp_path: Path
) -> None:
    commits_before = _sample(db, "mpim_store_batch_size_count")
    outcomes = await _behind_a_held_commit(
        db,
        tmp_path / "go",
        lambda: [
            db.write(note, "a", "1"),
            db.write(refuse, ErrorCode.NOT_MEMBER.value),
            db.write(note, "b", "2"),
            db.write(note, "a", "again"),  # the key is taken
            db.write(unpicklable),
            db.write(note, "c", "3"),
        ],
    )
    assert outcomes[0] == outcomes[2] == outcomes[5] == db.writer_pid
    assert isinstance(outcomes[1], MpimError) and outcomes[1].code is ErrorCode.NOT_MEMBER
    assert isinstance(outcomes[3], IntegrityError)
    assert isinstance(outcomes[4], RuntimeError) and "pickle" in str(outcomes[4])
    assert await db.read(notes) == [("a", "1"), ("b", "2"), ("c", "3")]
    # The held call, then the six together (re-run one by one after the failures).
    assert _sample(db, "mpim_store_batch_size_count") - commits_before == 2
    assert _sample(db, "mpim_store_write_errors_total") >= 2  # IntegrityError, unpicklable


async def test_a_closure_is_refused_in_the_caller_and_nothing_is_sent(db: Database) -> None:
    with pytest.raises((pickle.PicklingError, AttributeError, TypeError)):
        await db.write(lambda conn: None)
    assert await db.write(note, "after", "x") == db.writer_pid
    assert await db.read(notes) == [("after", "x")]


async def test_a_dead_writer_fails_what_it_held_and_the_next_call_starts_another(
    db: Database, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    await db.write(note, "before", "1")
    first_pid = db.writer_pid
    gate = tmp_path / "go"
    held = asyncio.ensure_future(db.write(wait_for_file, str(gate)))
    await asyncio.sleep(0.2)
    dying = asyncio.ensure_future(db.write(die))
    behind = asyncio.ensure_future(db.write(note, "lost", "2"))
    await asyncio.sleep(0.2)
    gate.touch()
    outcomes = await asyncio.gather(held, dying, behind, return_exceptions=True)
    # die ran in the batch with "lost": that transaction never committed.
    assert outcomes[0] is None
    assert all(isinstance(o, StoreUnavailable) for o in outcomes[1:]), outcomes
    assert await db.write(note, "after", "3") != first_pid
    assert db.writer_pid not in (None, first_pid)
    assert await db.read(notes) == [("before", "1"), ("after", "3")]
    assert "store writer process exited" in caplog.text


async def test_the_writer_outlives_ctrl_c_so_a_stopping_server_can_still_write(
    db: Database,
) -> None:
    pid = db.writer_pid
    assert pid is not None
    os.kill(pid, signal.SIGINT)  # what Ctrl-C sends the whole foreground group
    os.kill(pid, signal.SIGTERM)
    await asyncio.sleep(0.2)
    assert await db.write(note, "still", "here") == pid


async def test_stop_commits_every_call_already_made(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'w.sqlite3'}"
    db = Database(url, writer_process=True)
    await db.start()
    pid = db.writer_pid
    calls = [asyncio.ensure_future(db.write(note, f"k{i}", "v")) for i in range(500)]
    await asyncio.sleep(0)  # every call is on its way
    await db.stop()
    assert [c.result() for c in calls] == [pid] * 500
    assert pid is not None and not _alive(pid)
    with pytest.raises(RuntimeError):
        await db.write(note, "late", "v")
    again = Database(url)
    await again.start()
    try:
        assert len(await again.read(notes)) == 500
    finally:
        await again.stop()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


async def test_messages_users_and_pulls_round_trip_through_the_writer_process(
    db: Database,
) -> None:
    users = UserStore(db)
    alice = await users.create_user("alice", "h", 0)
    bob = await users.create_user("bob", "h", 0)
    assert alice is not None and bob is not None
    assert await users.create_user("ALICE", "h", 0) is None
    store = MessageStore(db)
    sent = [NewMessage(10 + i, DIRECT, alice, bob, 0, f"m{i}", f"c{i}") for i in range(3)]
    stored = await store.append(sent)
    assert [s.message for s in stored] == sent  # the caller's own objects, not copies
    assert [s.deliveries for s in stored] == [[(bob, 1)], [(bob, 2)], [(bob, 3)]]
    again = await store.append([NewMessage(99, DIRECT, alice, bob, 0, "m0", "c0")])
    assert again[0].duplicate and again[0].msg_id == 10
    refused = await store.append([NewMessage(100, DIRECT, alice, 424242, 0, "x", None)])
    assert refused[0].error is ErrorCode.NO_SUCH_USER
    messages, more = await store.pull(bob, 10)
    assert [m.text for m in messages] == ["m0", "m1", "m2"] and not more
    assert await store.pull(bob, 10) == ([], False)


async def test_calls_made_while_a_dead_writer_restarts_commit_in_order_in_one_new_process(
    db: Database,
) -> None:
    first = db.writer_pid
    assert first is not None
    os.kill(first, signal.SIGKILL)
    await asyncio.sleep(0.2)
    pids = await asyncio.gather(*(db.write(note, f"k{i}", "v") for i in range(50)))
    assert len(set(pids)) == 1 and pids[0] not in (first, None)
    assert [k for k, _ in await db.read(notes)] == [f"k{i}" for i in range(50)]
    assert writer_children() == [pids[0]]  # the dead one reaped, one started


async def test_a_writer_that_cannot_start_fails_calls_as_unavailable_then_recovers(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    process = db._process
    assert process is not None and db.writer_pid is not None
    good = process._config
    # A fault hard to cause otherwise: the next child gets a file it cannot open.
    monkeypatch.setattr(process, "_config", good.replace("w.sqlite3", "no/such/dir/w.sqlite3"))
    spawned: list[int] = []
    spawn = process._spawn
    monkeypatch.setattr(process, "_spawn", lambda fd: spawned.append(fd) or spawn(fd))
    os.kill(db.writer_pid, signal.SIGKILL)
    await asyncio.sleep(0.2)
    calls = await asyncio.gather(
        *(db.write(note, f"k{i}", "v") for i in range(3)), return_exceptions=True
    )
    assert all(isinstance(c, StoreUnavailable) for c in calls), calls
    assert len(spawned) == 1  # one start for the three
    with pytest.raises(StoreUnavailable):  # at once, not another doomed start
        await db.write(note, "soon", "v")
    assert len(spawned) == 1
    monkeypatch.setattr(process, "_config", good)
    await asyncio.sleep(writer_process.RESTART_PAUSE_SECONDS)
    assert await db.write(note, "later", "v") == db.writer_pid
    assert await db.read(notes) == [("later", "v")]


async def test_stop_while_a_writer_restarts_commits_what_was_called_and_leaves_no_process(
    tmp_path: Path,
) -> None:
    db = Database(f"sqlite:///{tmp_path / 'w.sqlite3'}", writer_process=True)
    await db.start()
    assert db.writer_pid is not None
    os.kill(db.writer_pid, signal.SIGKILL)
    await asyncio.sleep(0.2)
    call = asyncio.ensure_future(db.write(note, "last", "v"))
    await asyncio.sleep(0)  # it is waiting for the new process
    await db.stop()
    assert isinstance(await call, int)
    assert writer_children() == []


async def test_a_call_the_writer_cannot_unpickle_fails_alone(
    db: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A module only this process can import: the writer cannot find the function.
    (tmp_path / "only_here.py").write_text("def touch(conn):\n    return 1\n", encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    only_here = importlib.import_module("only_here")
    outcomes = await asyncio.gather(
        db.write(note, "a", "1"),
        db.write(only_here.touch),
        db.write(note, "b", "2"),
        return_exceptions=True,
    )
    assert outcomes[0] == outcomes[2] == db.writer_pid
    assert isinstance(outcomes[1], RuntimeError) and "could not read" in str(outcomes[1])
    assert await db.read(notes) == [("a", "1"), ("b", "2")]


async def test_a_call_written_alone_gets_a_transaction_of_its_own_in_the_writer(
    db: Database, tmp_path: Path
) -> None:
    first, alone, third, fourth = await _behind_a_held_commit(
        db,
        tmp_path / "go",
        lambda: [
            db.write(begin_id),
            db.write(begin_id, alone=True),
            db.write(begin_id),
            db.write(begin_id),
        ],
    )
    assert first != alone and alone != third and third == fourth


def test_frames_arrive_whole_however_the_bytes_are_cut() -> None:
    stream = encode("one") + encode({"two": 2}) + encode(b"x" * 70_000)
    buffer = FrameBuffer()
    got = []
    for i in range(0, len(stream), 4093):
        buffer.feed(stream[i : i + 4093])
        while (payload := buffer.next()) is not None:
            got.append(pickle.loads(payload))
    assert got == ["one", {"two": 2}, b"x" * 70_000]


def test_refusals_and_outages_survive_pickling() -> None:
    refusal = pickle.loads(pickle.dumps(MpimError(ErrorCode.NO_SUCH_GROUP)))
    assert isinstance(refusal, MpimError) and refusal.code is ErrorCode.NO_SUCH_GROUP
    outage = pickle.loads(pickle.dumps(StoreUnavailable(OSError("gone"))))
    assert isinstance(outage, StoreUnavailable) and str(outage) == "store unreachable: gone"


async def test_the_log_is_checkpointed_beside_the_writer_and_restarted_near_its_limit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The writer's commits do not checkpoint (one that did took every message
    behind it 20-50 ms longer; its own mark is a safety net at 32 times the
    limit); a thread of its process does, and the log still restarts near
    the limit instead of growing with every commit."""
    limit = 256 * 1024
    monkeypatch.setattr(database, "WAL_CHECKPOINT_BYTES", limit)
    monkeypatch.setattr(checkpointer, "INTERVAL_SECONDS", 0.01)
    path = tmp_path / "w.sqlite3"
    db = Database(f"sqlite:///{path}", writer_process=True)
    await db.start()
    try:
        assert await db.write(wal_autocheckpoint) == 32 * limit // 2048  # pages of 2 KiB
        # A busy writer: each call a commit of its own, queued back to back,
        # so a checkpoint of the thread's nearly never ends between two.
        rows = 4000  # about 4 MiB of rows
        await asyncio.gather(
            *(db.write(note, f"k{i}", "x" * 1000, alone=True) for i in range(rows))
        )
        # The file is as long as the longest log: the limit, what one
        # interval adds and what the writer catches up on (256 pages of
        # 2 KiB), with room for a stalled thread; not the safety net's 8 MiB
        # (without the writer's share, 27 MB before the safety net existed).
        extent, restarts, in_file = await asyncio.to_thread(_log_extent_restarts_and_file, path)
        assert extent < limit + 4 * 1024 * 1024, extent
        assert restarts >= 3, restarts
        assert in_file > 3 * 1024 * 1024  # the rows reached the database file
        assert len(await db.read(notes)) == rows
    finally:
        await db.stop()


def _log_extent_restarts_and_file(path: Path) -> tuple[int, int, int]:
    """The log file's size, how often the log restarted (its header's
    checkpoint sequence number) and the database file's size."""
    log = Path(f"{path}-wal").read_bytes()
    return len(log), int.from_bytes(log[12:16], "big"), path.stat().st_size
