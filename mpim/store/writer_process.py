"""The server's side of the store writer process (see ``writer_child``).

Calls are pickled onto a socket pair and their outcomes come back in the
same order, one frame per committed batch, read by the event loop itself:
no thread of this process waits on the writer. If the process dies, every
call it held fails as ``StoreUnavailable`` (a commit whose answer was lost
may have happened; clients retry sends with their cid) and the next call
starts a new one. Calls made while it starts wait in order and go first.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import pickle
import socket
import subprocess
import sys
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final, cast

from mpim.store.failures import StoreUnavailable
from mpim.store.frames import STOP, FrameBuffer, encode, frame
from mpim.store.group_commit import BatchOutcome, WriteCall, settle

logger = logging.getLogger(__name__)

# Where the mpim package lives, for a child started from a source tree.
_PACKAGE_ROOT: Final = str(Path(__file__).resolve().parent.parent.parent)
# After a start that failed, calls fail at once for this long instead of
# each starting a process that fails the same way.
RESTART_PAUSE_SECONDS: Final = 1.0

# (outcome, calls, seconds, seconds of them blocked on storage or None)
BatchObserver = Callable[[BatchOutcome, int, float, float | None], None]


class WriterExited(RuntimeError):
    """The writer process ended, or could not start."""


def _unavailable(reason: str) -> StoreUnavailable:
    return StoreUnavailable(WriterExited(reason))


class _Link(asyncio.Protocol):
    """The socket to one child: outcomes in, matched to the calls in order."""

    def __init__(self, observe: BatchObserver) -> None:
        self._observe = observe
        self._buffer = FrameBuffer()
        self.waiting: deque[asyncio.Future[Any]] = deque()
        self.transport: asyncio.Transport | None = None
        loop = asyncio.get_running_loop()
        self.ready: asyncio.Future[None] = loop.create_future()  # the database is open
        self.closed: asyncio.Future[None] = loop.create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not subclasses of asyncio's.
        self.transport = cast(asyncio.Transport, transport)

    def send(self, data: bytes, future: asyncio.Future[Any]) -> None:
        assert self.transport is not None
        self.waiting.append(future)
        self.transport.write(data)

    def data_received(self, data: bytes) -> None:
        self._buffer.feed(data)
        while (payload := self._buffer.next()) is not None:
            if not self.ready.done():  # the first frame says the child is ready
                self.ready.set_result(None)
                continue
            try:
                outcomes, errors, size, seconds, blocked = pickle.loads(payload)
            except Exception:
                # Which calls the frame answered is unknown: end the link,
                # which fails every call it holds; the next call restarts it.
                logger.exception("undecodable answer from the store writer process")
                if self.transport is not None:
                    self.transport.abort()
                return
            settle([self.waiting.popleft() for _ in outcomes], outcomes)
            self._observe(BatchOutcome(outcomes, errors), size, seconds, blocked)

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        if not self.ready.done():
            self.ready.set_exception(WriterExited("the store writer process exited at start"))
        while self.waiting:
            future = self.waiting.popleft()
            if not future.done():
                future.set_exception(_unavailable("the store writer process exited"))
        if not self.closed.done():
            self.closed.set_result(None)


class WriterProcess:
    """Starts, feeds and stops the writer process for one database."""

    def __init__(
        self,
        url: str,
        server_timeout_seconds: float,
        synchronous: str,
        max_batch: int,
        observe: BatchObserver,
        *,
        wal_restart_bytes: int,
        wal_checkpoint_interval: float,
    ) -> None:
        self._config = json.dumps(
            {
                "url": url,
                "server_timeout_seconds": server_timeout_seconds,
                "synchronous": synchronous,
                "max_batch": max_batch,
                "wal_restart_bytes": wal_restart_bytes,
                "wal_checkpoint_interval": wal_checkpoint_interval,
                "log_level": logging.getLevelName(logging.getLogger("mpim").getEffectiveLevel()),
            }
        )
        self._observe = observe
        self._process: subprocess.Popen[bytes] | None = None
        self._link: _Link | None = None
        self._starting: asyncio.Task[None] | None = None
        # Calls made while no child is ready, in order: they go first.
        self._backlog: list[tuple[bytes, asyncio.Future[Any]]] = []
        self._failed_at = -RESTART_PAUSE_SECONDS
        self._stopped = False

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    async def start(self) -> None:
        """Start the child and wait until its database is open (start-up faults surface here)."""
        await self._ensure_starting()

    def _ensure_starting(self) -> asyncio.Task[None]:
        if self._starting is None or self._starting.done():
            self._starting = asyncio.get_running_loop().create_task(self._start())
            self._starting.add_done_callback(_retrieve)
        return self._starting

    async def _start(self) -> None:
        try:
            await self._reap()
            ours, theirs = socket.socketpair()
            try:
                self._process = await asyncio.to_thread(self._spawn, theirs.fileno())
                link = _Link(self._observe)
                await asyncio.get_running_loop().connect_accepted_socket(lambda: link, ours)
            except BaseException:
                ours.close()
                raise
            finally:
                theirs.close()
            await link.ready
        except BaseException as exc:
            self._failed_at = time.monotonic()
            self._fail_backlog(f"the store writer process did not start: {exc}")
            raise
        self._link = link
        backlog, self._backlog = self._backlog, []
        for data, future in backlog:
            link.send(data, future)

    async def _reap(self) -> None:
        """Wait for a child that has exited (or was told to), and say so."""
        process, self._process = self._process, None
        if process is None:
            return
        code = await asyncio.to_thread(process.wait)
        if code and not self._stopped:
            logger.error("store writer process exited with code %s", code)

    def _fail_backlog(self, reason: str) -> None:
        backlog, self._backlog = self._backlog, []
        for _, future in backlog:
            if not future.done():
                future.set_exception(_unavailable(reason))

    def _spawn(self, fd: int) -> subprocess.Popen[bytes]:
        env = dict(os.environ)
        path = env.get("PYTHONPATH")
        env["PYTHONPATH"] = _PACKAGE_ROOT + (os.pathsep + path if path else "")
        return subprocess.Popen(
            [sys.executable, "-m", "mpim.store.writer_child", str(fd), self._config],
            pass_fds=(fd,),
            env=env,
            stdin=subprocess.DEVNULL,
        )

    async def submit(self, call: WriteCall) -> Any:
        """``call``'s result after its commit, or its error."""
        if self._stopped:
            raise RuntimeError("Database stopped")
        data = encode(call)  # a closure fails here, in the caller
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        link = self._link
        if link is not None and link.transport is not None and not self._backlog:
            link.send(data, future)
            return await future
        if time.monotonic() - self._failed_at < RESTART_PAUSE_SECONDS:
            raise _unavailable("the store writer process failed to start; retrying shortly")
        self._backlog.append((data, future))
        if link is not None and link.transport is None:
            logger.error("store writer process exited; starting another")
            self._link = None
        self._ensure_starting()
        return await future

    async def stop(self) -> None:
        """The calls already sent are committed and answered; then the process exits."""
        self._stopped = True
        if self._starting is not None and not self._starting.done():
            with contextlib.suppress(Exception):
                await self._starting
        link = self._link
        if link is not None and link.transport is not None:
            link.transport.write(frame(STOP))
            await link.closed
        self._link = None
        await self._reap()


def _retrieve(task: asyncio.Task[None]) -> None:
    """A failed start is reported to the calls that waited for it (and to
    ``start``'s caller), not again as a task exception nobody retrieved."""
    if not task.cancelled():
        task.exception()
