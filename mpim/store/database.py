"""The Store's engine: reads on a small thread pool, writes on one group-commit thread.

Storage never runs on the event loop. Writes are functions of a Connection,
queued to a single writer thread that runs every queued job in one
transaction and commits once, so many concurrent writers share one fsync.
If any job in a batch raises, the batch is rolled back and each job re-runs
alone, so one failing job never fails or delays its neighbours' outcome.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import make_url

from mpim.store.schema import migrate

logger = logging.getLogger(__name__)

T = TypeVar("T")
Job = Callable[[Connection], Any]


@dataclass(slots=True)
class _Pending:
    job: Job
    future: asyncio.Future[Any]


_STOP = object()


class Database:
    """Owns the SQLAlchemy engine and the threads that use it."""

    def __init__(
        self,
        url: str,
        *,
        sqlite_synchronous: str = "FULL",
        max_batch: int = 1000,
        read_threads: int = 4,
    ) -> None:
        self.url = url
        self._sqlite_synchronous = sqlite_synchronous
        self._max_batch = max_batch
        self._read_threads = read_threads
        self._engine: Engine | None = None
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._writer: threading.Thread | None = None
        self._readers: ThreadPoolExecutor | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def engine(self) -> Engine:
        if self._engine is None:
            raise RuntimeError("Database not started")
        return self._engine

    @property
    def is_sqlite(self) -> bool:
        return make_url(self.url).get_backend_name() == "sqlite"

    async def start(self) -> None:
        """Connect, create or upgrade the schema, start the writer thread."""
        self._loop = asyncio.get_running_loop()
        self._engine = create_engine(self.url, pool_pre_ping=not self.is_sqlite)
        if self.is_sqlite:
            event.listen(self._engine, "connect", self._on_sqlite_connect)
        self._readers = ThreadPoolExecutor(self._read_threads, thread_name_prefix="mpim-read")
        await self._loop.run_in_executor(self._readers, self._migrate)
        self._writer = threading.Thread(target=self._write_loop, name="mpim-writer", daemon=True)
        self._writer.start()

    def _on_sqlite_connect(self, dbapi_conn: Any, _record: Any) -> None:
        cursor = dbapi_conn.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA synchronous={self._sqlite_synchronous}")
        cursor.execute("PRAGMA busy_timeout=10000")
        cursor.close()

    def _migrate(self) -> None:
        with self.engine.begin() as conn:
            migrate(conn)

    async def stop(self) -> None:
        """Finish every queued write, then close. Nothing queued is dropped."""
        if self._writer is not None:
            self._queue.put(_STOP)
            await asyncio.to_thread(self._writer.join)
            self._writer = None
        if self._readers is not None:
            self._readers.shutdown(wait=True)
            self._readers = None
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None

    async def read(self, job: Callable[[Connection], T]) -> T:
        """Run ``job`` on a pooled connection in a reader thread."""
        if self._readers is None or self._loop is None:
            raise RuntimeError("Database not started")
        return await self._loop.run_in_executor(self._readers, self._run_read, job)

    def _run_read(self, job: Callable[[Connection], T]) -> T:
        with self.engine.connect() as conn:
            return job(conn)

    async def write(self, job: Callable[[Connection], T]) -> T:
        """Run ``job`` in the writer's next transaction; returns after commit."""
        if self._writer is None or self._loop is None:
            raise RuntimeError("Database not started")
        future: asyncio.Future[T] = self._loop.create_future()
        self._queue.put(_Pending(job, future))
        return await future

    # -- writer thread -------------------------------------------------------

    def _write_loop(self) -> None:
        stopping = False
        while not stopping:
            first = self._queue.get()
            if first is _STOP:
                break
            batch: list[_Pending] = [first]
            while len(batch) < self._max_batch:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is _STOP:
                    stopping = True
                    break
                batch.append(item)
            self._commit_batch(batch)

    def _commit_batch(self, batch: list[_Pending]) -> None:
        try:
            with self.engine.begin() as conn:
                results = [p.job(conn) for p in batch]
        except Exception as exc:
            if len(batch) == 1:
                self._resolve([(batch[0], None, exc)])
                return
            logger.debug("batch of %d failed (%r); retrying jobs one by one", len(batch), exc)
            for pending in batch:
                self._commit_batch([pending])
            return
        self._resolve([(p, r, None) for p, r in zip(batch, results, strict=True)])

    def _resolve(self, outcomes: list[tuple[_Pending, Any, BaseException | None]]) -> None:
        assert self._loop is not None

        def deliver() -> None:
            for pending, result, exc in outcomes:
                if pending.future.done():
                    continue
                if exc is not None:
                    pending.future.set_exception(exc)
                else:
                    pending.future.set_result(result)

        try:
            self._loop.call_soon_threadsafe(deliver)
        except RuntimeError:
            logger.warning("event loop closed before %d writes were acknowledged", len(outcomes))
