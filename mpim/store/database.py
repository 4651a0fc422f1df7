"""The Store's engine: reads on a small thread pool, writes on one group-commit writer.

Storage never runs on the event loop. Writes are calls of module-level
functions on a Connection, queued to a single writer that runs every queued
call in one transaction and commits once, so many concurrent writers share
one fsync (``group_commit``). The writer is a thread, or a process of its
own (``writer_process``), where a commit never waits for the event loop's
GIL: embedded MPIM's, and a distributed message service's.

SQLite is tuned for many small random writes, which is what a message's
index entries are (its conversation, each recipient's inbox). A commit
writes every page it changed, so new databases use 2 KiB pages instead of
4 KiB: half the bytes per changed page. And the write-ahead log is
checkpointed at 64 MiB instead of every 1,000 pages: a checkpoint runs
inside the commit that crosses the mark and rewrites every page changed
since the last one, so a busy writer checkpointed dozens of times a second.
Measured with embedded c2c at 10,000 msg/s offered: disk writes halved
(150 to 75 MB/s) and end-to-end p50 fell from about 30 ms to 5-15 ms;
closed-loop and group throughput did not change. (At 1 KiB pages group
fan-out lost 10 %.) Existing databases keep their page size. The writer
process goes further: its commits do not checkpoint, a thread beside them
does (``checkpointer``), and the log restarts near the same 64 MiB.

On servers each writer lane keeps its connection between commits
(``lane_connection``), and on MySQL/MariaDB a transaction's writes go to the
server together (``held_writes``): a commit of sends is three round trips
instead of seven.

On MySQL/MariaDB and PostgreSQL a second writer thread, the side lane,
takes writes that touch no row a send's transaction does and must not wait
behind one: delivered marks, which a PULL on another gateway waits for
(``gateway/pull_barrier.py``). Its commits run beside the main writer's, and
the server's group commit shares their log flushes. SQLite has one writer,
so there the side lane is the main one.

A MySQL/MariaDB or PostgreSQL server that stops answering (frozen, or a
network that drops packets without a reset) would otherwise hold a store
thread forever: each connection waits at most ``server_timeout_seconds`` for
any answer, and then counts as broken (the default, 60 s, outlasts InnoDB's
50 s lock wait, so there a lock wait is reported as itself; PostgreSQL waits
for locks without a limit, so a longer one counts as the server gone). MySQL's
driver has a read timeout; psycopg has none, so PostgreSQL connections (the
``psycopg`` driver) bound their waits themselves (``pg_answer``).

When the server cannot be reached (refused, reset, gone away) every read and
write fails at once with ``StoreUnavailable`` (``-ERR service unavailable``
for the client) instead of retrying: one warning per outage is logged, and
the pool's pre-ping replaces dead connections, so service resumes by itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import queue
import re
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Final, TypeVar

from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import IntegrityError

from mpim.metrics.families import StoreMetrics
from mpim.store import held_writes
from mpim.store.commit_timing import CommitTimer
from mpim.store.failures import StoreUnavailable, is_unreachable
from mpim.store.group_commit import BatchOutcome, WriteCall, commit_calls, next_batch, settle
from mpim.store.lane_connection import LaneConnection
from mpim.store.schema import migrate
from mpim.store.writer_process import WriterProcess

logger = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass(slots=True)
class _Pending:
    call: WriteCall
    future: asyncio.Future[Any]

    @property
    def alone(self) -> bool:
        return self.call.alone


_STOP = object()
SQLITE_MIN_VERSION = (3, 35)
SQLITE_PAGE_SIZE = 2048  # bytes; only a new database takes it
# How long an SQLite connection waits for another's lock before "locked".
SQLITE_BUSY_SECONDS = 10.0
# Compiled statements kept per connection (Python's default: 128); see rawsql.
SQLITE_CACHED_STATEMENTS = 512
WAL_CHECKPOINT_BYTES = 64 * 1024 * 1024
SERVER_TIMEOUT_SECONDS = 60.0
_CONNECT_TIMEOUT_SECONDS = 5


def sqlite_engine(
    url: str,
    synchronous: str,
    *,
    immediate: bool,
    autocheckpoint_bytes: int = WAL_CHECKPOINT_BYTES,
) -> Engine:
    """An engine for MPIM's SQLite file, tuned as described above.

    ``immediate``: transactions begin with BEGIN IMMEDIATE (the writer's).
    ``autocheckpoint_bytes``: a commit that takes the log past this size
    checkpoints it. The writer process's ``Checkpointer`` does that work
    beside the commits, so its connection's mark is only a safety net, far
    above where the Checkpointer restarts the log.
    hide_parameters: an error's text (logged, or shown at start-up) must not
    carry message texts or password and token hashes.
    """
    engine = create_engine(
        url,
        connect_args={"isolation_level": None, "cached_statements": SQLITE_CACHED_STATEMENTS},
        hide_parameters=True,
    )
    configure = functools.partial(
        _configure_sqlite, synchronous=synchronous, autocheckpoint_bytes=autocheckpoint_bytes
    )
    event.listen(engine, "connect", configure)
    begin = _sqlite_begin_immediate if immediate else _sqlite_begin_deferred
    event.listen(engine, "begin", begin)
    return engine


def server_engine(url: str, server_timeout_seconds: float, *, pool_size: int) -> Engine:
    """An engine for a MySQL/MariaDB or PostgreSQL server (see the module's notes)."""
    # READ COMMITTED: no gap locks between concurrent message writers.
    engine = create_engine(
        url,
        connect_args=server_connect_args(url, server_timeout_seconds),
        pool_pre_ping=True,
        pool_size=pool_size,
        pool_recycle=3600,
        isolation_level="READ COMMITTED",
        hide_parameters=True,
    )
    if make_url(url).get_driver_name() == "psycopg":
        from mpim.store import pg_answer  # psycopg is optional

        answering = functools.partial(pg_answer.connect_answering, seconds=server_timeout_seconds)
        event.listen(engine, "do_connect", answering)
    return engine


def _configure_sqlite(
    dbapi_conn: Any, _record: Any, *, synchronous: str, autocheckpoint_bytes: int
) -> None:
    cursor = dbapi_conn.cursor()
    cursor.execute(f"PRAGMA busy_timeout={int(SQLITE_BUSY_SECONDS * 1000)}")
    # Before WAL mode: a new, empty file takes this page size at its first write.
    cursor.execute(f"PRAGMA page_size={SQLITE_PAGE_SIZE}")
    _switch_to_wal(cursor)
    cursor.execute(f"PRAGMA synchronous={synchronous}")
    # A multi-row statement in a transaction keeps a copy of each page it
    # changes, to undo just itself; past 64 KiB SQLite spilled that copy to
    # a temporary file: an open, an unlink and two writes per page in
    # nearly every group commit. In memory it is a page copy. Sorts that
    # need a temporary b-tree stay in memory too; MPIM's queries are bounded,
    # and a schema upgrade, whose are not, switches back to files meanwhile.
    cursor.execute("PRAGMA temp_store=MEMORY")
    page_size = int(cursor.execute("PRAGMA page_size").fetchone()[0])
    cursor.execute(f"PRAGMA wal_autocheckpoint={autocheckpoint_bytes // page_size}")
    # After a checkpoint the log file is cut back to this size.
    cursor.execute(f"PRAGMA journal_size_limit={WAL_CHECKPOINT_BYTES}")
    cursor.close()


@contextlib.contextmanager
def _temporary_files_on_disk(conn: Connection, backend: str) -> Iterator[None]:
    """An upgrade's temporary data on disk, not in memory: copying a table
    into its new shape reuses the pages of tables dropped before it, and the
    statement's rollback copy of those can be as large as the table."""
    if backend != "sqlite":
        yield
        return
    raw = conn.connection.driver_connection
    assert raw is not None
    raw.execute("PRAGMA temp_store=FILE")  # outside a transaction, as it must be
    try:
        yield
    finally:
        raw.execute("PRAGMA temp_store=MEMORY")


def _sqlite_begin_immediate(conn: Connection) -> None:
    conn.exec_driver_sql("BEGIN IMMEDIATE")


def _sqlite_begin_deferred(conn: Connection) -> None:
    conn.exec_driver_sql("BEGIN")


class Database:
    """Owns the SQLAlchemy engine and the threads that use it."""

    def __init__(
        self,
        url: str,
        *,
        sqlite_synchronous: str = "FULL",
        max_batch: int = 1000,
        read_threads: int = 4,
        server_timeout_seconds: float = SERVER_TIMEOUT_SECONDS,
        writer_process: bool = False,
        metrics: StoreMetrics | None = None,
    ) -> None:
        self.url = url
        self._connect_args = server_connect_args(url, server_timeout_seconds)
        self._server_timeout = server_timeout_seconds
        self._is_sqlite = make_url(url).get_backend_name() == "sqlite"
        self.metrics = metrics if metrics is not None else StoreMetrics()
        self._sqlite_synchronous = sqlite_synchronous
        self._max_batch = max_batch
        self._read_threads = read_threads
        self._engine: Engine | None = None
        self._write_engine: Engine | None = None
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._writer: threading.Thread | None = None
        self._side_queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._side_writer: threading.Thread | None = None
        self._use_process = writer_process
        self._process: WriterProcess | None = None
        self._readers: ThreadPoolExecutor | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._down_since: float | None = None  # monotonic time of the outage's first failure
        self._down_lock = threading.Lock()

    @property
    def engine(self) -> Engine:
        if self._engine is None:
            raise RuntimeError("Database not started")
        return self._engine

    @property
    def is_sqlite(self) -> bool:
        return self._is_sqlite

    @property
    def writer_pid(self) -> int | None:
        """The writer process's pid; None when writes run on a thread."""
        return self._process.pid if self._process is not None else None

    async def start(self) -> None:
        """Connect (creating the database if missing), migrate, start the writer."""
        if self.is_sqlite and sqlite3.sqlite_version_info < SQLITE_MIN_VERSION:
            raise RuntimeError(
                f"SQLite {sqlite3.sqlite_version} is too old: MPIM needs "
                f"{'.'.join(map(str, SQLITE_MIN_VERSION))} or newer (UPDATE ... FROM, DROP COLUMN)"
            )
        self._loop = asyncio.get_running_loop()
        self._readers = ThreadPoolExecutor(self._read_threads, thread_name_prefix="mpim-read")
        if self.is_sqlite:
            # Readers: deferred transactions. The writer: BEGIN IMMEDIATE, so a
            # read-then-write job (seq assignment, PULL's claim) holds the write
            # lock from its first statement even if another process shares
            # the file.
            self._engine = sqlite_engine(self.url, self._sqlite_synchronous, immediate=False)
            self._write_engine = sqlite_engine(self.url, self._sqlite_synchronous, immediate=True)
        else:
            await self._loop.run_in_executor(
                self._readers, ensure_database, self.url, self._connect_args
            )
            self._engine = server_engine(
                self.url, self._server_timeout, pool_size=self._read_threads + 2
            )
            # The two writer lanes' own: their connections send a transaction's
            # writes together, which the readers' need not accept.
            self._write_engine = server_engine(self.url, self._server_timeout, pool_size=2)
            held_writes.enable(self._write_engine)
        if self._use_process:
            from mpim.store import checkpointer  # it imports this module's settings

            # The child's start-up (imports, mostly) overlaps the migration;
            # opening the file beside it is safe (busy timeout, WAL switch).
            self._process = WriterProcess(
                self.url,
                self._server_timeout,
                self._sqlite_synchronous,
                self._max_batch,
                self.record_batch,
                wal_restart_bytes=WAL_CHECKPOINT_BYTES,
                wal_checkpoint_interval=checkpointer.INTERVAL_SECONDS,
            )
            starting = asyncio.ensure_future(self._process.start())
            try:
                await self._loop.run_in_executor(self._readers, self._migrate)
            except BaseException:
                with contextlib.suppress(Exception):
                    await starting
                await self._process.stop()
                self._process = None
                raise
            await starting
            assert self._write_engine is not None
            if self.is_sqlite:
                # This process no longer writes: its write connection goes.
                self._write_engine.dispose()
        else:
            await self._loop.run_in_executor(self._readers, self._migrate)
            self._writer = threading.Thread(
                target=self._write_loop, args=(self._queue,), name="mpim-writer", daemon=True
            )
            self._writer.start()
        if not self.is_sqlite:
            self._side_writer = threading.Thread(
                target=self._write_loop,
                args=(self._side_queue,),
                name="mpim-side-writer",
                daemon=True,
            )
            self._side_writer.start()

    def _migrate(self) -> None:
        """Create or upgrade the schema; several processes may start at once."""
        assert self._write_engine is not None
        backend = make_url(self.url).get_backend_name()
        # No server timeout here: an upgrade's statements, and the wait for
        # another process's upgrade, may rightly take longer than any answer.
        engine = (
            self._write_engine
            if self.is_sqlite
            else create_engine(
                self.url, connect_args=server_connect_args(self.url, None), hide_parameters=True
            )
        )
        try:
            self._migrate_on(engine, backend)
        finally:
            if engine is not self._write_engine:
                engine.dispose()

    @staticmethod
    def _migrate_on(engine: Engine, backend: str) -> None:
        with engine.connect() as conn, _temporary_files_on_disk(conn, backend):
            # SQLite's BEGIN IMMEDIATE already serialises; servers need a lock.
            # MySQL's is the session's, and is released only after the commit:
            # its DDL commits at once, so a process let in before the version
            # row is committed would find the tables without it.
            if backend == "mysql":
                conn.execute(text("SELECT GET_LOCK('mpim_schema', 120)"))
                conn.commit()
            try:
                with conn.begin():
                    if backend == "postgresql":
                        conn.execute(text("SELECT pg_advisory_xact_lock(7283641)"))
                    migrate(conn)
            finally:
                if backend == "mysql":
                    conn.execute(text("SELECT RELEASE_LOCK('mpim_schema')"))
                    conn.commit()

    async def stop(self) -> None:
        """Finish every queued write, then close. Nothing queued is dropped."""
        if self._process is not None:
            await self._process.stop()
            self._process = None
        if self._side_writer is not None:
            self._side_queue.put(_STOP)
            await asyncio.to_thread(self._side_writer.join)
            self._side_writer = None
        if self._writer is not None:
            self._queue.put(_STOP)
            await asyncio.to_thread(self._writer.join)
            self._writer = None
        if self._readers is not None:
            self._readers.shutdown(wait=True)
            self._readers = None
        if self._write_engine is not None and self._write_engine is not self._engine:
            self._write_engine.dispose()
        self._write_engine = None
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None

    async def read(self, job: Callable[[Connection], T]) -> T:
        """Run ``job`` on a pooled connection in a reader thread."""
        if self._readers is None or self._loop is None:
            raise RuntimeError("Database not started")
        return await self._loop.run_in_executor(self._readers, self._run_read, job)

    def _run_read(self, job: Callable[[Connection], T]) -> T:
        try:
            with self.engine.connect() as conn:
                result = job(conn)
        except Exception as exc:
            if is_unreachable(exc):
                failure = StoreUnavailable(exc)
                self._went_down(failure)
                raise failure from exc
            raise
        self._came_back()
        return result

    async def ping(self) -> None:
        """Raises unless the store answers a trivial query (readiness checks)."""
        await self.read(_select_one)

    def _went_down(self, failure: StoreUnavailable) -> None:
        """Log the first failure of an outage (not one line per failed call)."""
        with self._down_lock:
            if self._down_since is not None:
                return
            self._down_since = time.monotonic()
        logger.warning("%s; failing reads and writes until it answers", failure)

    def _came_back(self) -> None:
        if self._down_since is None:
            return
        with self._down_lock:
            since, self._down_since = self._down_since, None
        if since is not None:
            logger.info("store reachable again after %.1fs", time.monotonic() - since)

    async def write(
        self,
        fn: Callable[..., T],
        *args: Any,
        side: bool = False,
        alone: bool = False,
    ) -> T:
        """Run ``fn(conn, *args)`` in the writer's next transaction; returns after commit.

        ``fn`` is a module-level function and ``args`` plain data, not a
        closure: with the writer process they are pickled to it. ``side``:
        in the side lane's (see above), for calls that conflict with no send
        and must not wait behind one. ``alone``: in a transaction of its
        own, for a call whose locks, held together with a send's, would take
        rows in a different order than other writers do.
        """
        if self._loop is None or (self._writer is None and self._process is None):
            raise RuntimeError("Database not started")
        call = WriteCall(fn, args, alone)
        if side and self._side_writer is not None:
            lane = self._side_queue
        elif self._process is not None:
            result: T = await self._process.submit(call)
            return result
        else:
            lane = self._queue
        future: asyncio.Future[T] = self._loop.create_future()
        lane.put(_Pending(call, future))
        return await future

    async def write_beside(self, fn: Callable[..., T], *args: Any) -> T:
        """``fn(conn, *args)`` in a transaction of its own, beside the writer lanes.

        For background upkeep on servers, which must not queue in front of
        a send or a mark: it runs on a reader thread, and the server's row
        locks order it against the lanes' transactions. SQLite has one
        writer, so there it is ``write(fn, *args, alone=True)``.
        """
        if self._is_sqlite:
            return await self.write(fn, *args, alone=True)
        if self._readers is None or self._loop is None:
            raise RuntimeError("Database not started")
        call = WriteCall(fn, args, alone=True)
        outcome = await self._loop.run_in_executor(
            self._readers, commit_calls, self.engine.begin, [call]
        )
        self._note_outcome(outcome)
        result, exc = outcome.outcomes[0]
        if exc is not None:
            raise exc
        return result  # type: ignore[no-any-return]

    def record_batch(
        self, outcome: BatchOutcome, size: int, seconds: float, blocked: float | None
    ) -> None:
        """Metrics and outage state after a group commit (either writer)."""
        self.metrics.commit_latency.observe(seconds)
        if blocked is not None:
            self.metrics.commit_blocked.observe(blocked)
        self.metrics.batch_size.observe(size)
        self._note_outcome(outcome)

    def _note_outcome(self, outcome: BatchOutcome) -> None:
        """Error count and outage state after any commit."""
        if outcome.errors:
            self.metrics.write_errors.inc(outcome.errors)
        failure = outcome.unreachable
        if failure is not None:
            self._went_down(failure)
        else:
            self._came_back()

    # -- writer thread -------------------------------------------------------

    def _write_loop(self, jobs: queue.SimpleQueue[Any]) -> None:
        stopping = False
        carried: _Pending | None = None  # a call that must start the next batch

        def more() -> _Pending | None:
            nonlocal stopping
            try:
                item = jobs.get_nowait()
            except queue.Empty:
                return None
            if item is _STOP:
                stopping = True
                return None
            return item  # type: ignore[no-any-return]

        assert self._write_engine is not None
        # Servers: the lane keeps its connection between commits (lane_connection).
        lane = None if self.is_sqlite else LaneConnection(self._write_engine)
        begin = self._write_engine.begin if lane is None else lane.begin
        timer = CommitTimer()
        while not stopping:
            first = carried if carried is not None else jobs.get()
            if first is _STOP:
                break
            batch, carried = next_batch(first, more, self._max_batch)
            timer.start()
            outcome = commit_calls(begin, [p.call for p in batch])
            self.record_batch(outcome, len(batch), *timer.stop())
            self._resolve(batch, outcome)
        timer.close()
        if lane is not None:
            lane.release()

    def _resolve(self, batch: list[_Pending], outcome: BatchOutcome) -> None:
        assert self._loop is not None

        def deliver() -> None:
            settle([p.future for p in batch], outcome.outcomes)

        try:
            self._loop.call_soon_threadsafe(deliver)
        except RuntimeError:
            logger.warning("event loop closed before %d writes were acknowledged", len(batch))


def server_connect_args(url: str, server_timeout_seconds: float | None) -> dict[str, Any]:
    """The driver's timeouts for a server URL (none for SQLite); with no
    ``server_timeout_seconds``, only the connect timeout. (PostgreSQL's
    answer timeout is not a driver option: see ``pg_answer``.)"""
    backend = make_url(url).get_backend_name()
    if backend == "mysql":  # pymysql and mysqlclient take the same three
        args: dict[str, Any] = {"connect_timeout": _CONNECT_TIMEOUT_SECONDS}
        if server_timeout_seconds is not None:
            wait = max(1, round(server_timeout_seconds))
            args.update(read_timeout=wait, write_timeout=wait)
        return args
    if backend == "postgresql":
        return {"connect_timeout": _CONNECT_TIMEOUT_SECONDS}
    return {}


def ensure_database(url: str, connect_args: dict[str, Any] | None = None) -> None:
    """Create the URL's database on a MySQL/MariaDB or PostgreSQL server if missing."""
    parsed = make_url(url)
    if not parsed.database or parsed.get_backend_name() not in _SERVER_BACKENDS:
        return  # SQLite creates its file itself
    name, engine = _server_admin(parsed, connect_args)
    try:
        with engine.connect() as conn:
            if parsed.get_backend_name() == "mysql":
                conn.execute(
                    text(
                        f"CREATE DATABASE IF NOT EXISTS `{name}` "
                        "CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci"
                    )
                )
                return
            exists = conn.execute(
                text("SELECT 1 FROM pg_database WHERE datname = :name"), {"name": name}
            ).first()
            if exists is None:
                # IntegrityError: another process created it first.
                with contextlib.suppress(IntegrityError):
                    conn.execute(text(f'CREATE DATABASE "{name}"'))
    finally:
        engine.dispose()


def drop_database(url: str) -> None:
    """Drop the URL's database on a MySQL/MariaDB or PostgreSQL server, if there."""
    parsed = make_url(url)
    if not parsed.database or parsed.get_backend_name() not in _SERVER_BACKENDS:
        raise ValueError(f"only a MySQL/MariaDB or PostgreSQL database is dropped, not {url!r}")
    name, engine = _server_admin(parsed, None)
    quoted = f"`{name}`" if parsed.get_backend_name() == "mysql" else f'"{name}"'
    try:
        with engine.connect() as conn:
            conn.execute(text(f"DROP DATABASE IF EXISTS {quoted}"))
    finally:
        engine.dispose()


_SERVER_BACKENDS: Final = ("mysql", "postgresql")


def _server_admin(parsed: URL, connect_args: dict[str, Any] | None) -> tuple[str, Engine]:
    """The URL's database name, checked (it goes into DDL unquoted by the
    driver), and an autocommit engine on the server's own database."""
    name = str(parsed.database)
    if not re.fullmatch(r"[A-Za-z0-9_]{1,64}", name):
        raise ValueError(f"store.url: database name {name!r} must be letters, digits and _")
    admin = parsed.set(database="" if parsed.get_backend_name() == "mysql" else "postgres")
    engine = create_engine(admin, connect_args=connect_args or {}, isolation_level="AUTOCOMMIT")
    return name, engine


def _switch_to_wal(cursor: sqlite3.Cursor) -> None:
    """``PRAGMA journal_mode=WAL``, waiting out other processes opening the file.

    SQLite answers "database is locked" at once, without its busy handler,
    when another connection is switching the same new file at that moment
    (several processes starting together).
    """
    deadline = time.monotonic() + SQLITE_BUSY_SECONDS
    while True:
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.02)


def _select_one(conn: Connection) -> None:
    conn.execute(text("SELECT 1"))
