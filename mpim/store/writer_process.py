"""The server's side of the SQLite writer process (see ``writer_child``).

Calls are pickled onto a socket pair and their outcomes come back in the
same order, one frame per committed batch, read by the event loop itself:
no thread of this process waits on the writer. If the process dies, every
call it held fails as ``StoreUnavailable`` (a commit whose answer was lost
may have happened; clients retry sends with their cid) and the next call
starts a new one.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import pickle
import socket
import subprocess
import sys
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

from mpim.store.failures import StoreUnavailable
from mpim.store.frames import STOP, FrameBuffer, encode, frame
from mpim.store.group_commit import BatchOutcome, WriteCall, settle

logger = logging.getLogger(__name__)

# Where the mpim package lives, for a child started from a source tree.
_PACKAGE_ROOT = str(Path(__file__).resolve().parent.parent.parent)

BatchObserver = Callable[[BatchOutcome, int, float], None]


class WriterExited(RuntimeError):
    """The writer process ended while calls were waiting for it."""


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

    def data_received(self, data: bytes) -> None:
        self._buffer.feed(data)
        while (payload := self._buffer.next()) is not None:
            if not self.ready.done():  # the first frame says the child is ready
                self.ready.set_result(None)
                continue
            outcomes, errors, size, seconds = pickle.loads(payload)
            settle([self.waiting.popleft() for _ in outcomes], outcomes)
            self._observe(BatchOutcome(outcomes, errors), size, seconds)

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        if not self.ready.done():
            self.ready.set_exception(WriterExited("the store writer process exited at start"))
        failure = StoreUnavailable(WriterExited("the store writer process exited"))
        while self.waiting:
            future = self.waiting.popleft()
            if not future.done():
                future.set_exception(failure)
        if not self.closed.done():
            self.closed.set_result(None)


class WriterProcess:
    """Starts, feeds and stops the writer process for one SQLite file."""

    def __init__(self, url: str, synchronous: str, max_batch: int, observe: BatchObserver) -> None:
        self._config = json.dumps(
            {
                "url": url,
                "synchronous": synchronous,
                "max_batch": max_batch,
                "log_level": logging.getLevelName(logging.getLogger("mpim").getEffectiveLevel()),
            }
        )
        self._observe = observe
        self._process: subprocess.Popen[bytes] | None = None
        self._link: _Link | None = None
        self._starting = asyncio.Lock()
        self._stopped = False

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    async def start(self) -> None:
        async with self._starting:
            if self._link is not None and self._link.transport is not None:
                return
            if self._process is not None:
                code = await asyncio.to_thread(self._process.wait)
                logger.error("store writer process exited (code %s); starting another", code)
            ours, theirs = socket.socketpair()
            try:
                self._process = await asyncio.to_thread(self._spawn, theirs.fileno())
            finally:
                theirs.close()
            link = _Link(self._observe)
            await asyncio.get_running_loop().connect_accepted_socket(lambda: link, ours)
            self._link = link
            # Start-up faults (an unreadable file) surface here, not at the first
            # write; and calls made from now on find the process reading.
            await link.ready

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
        link = self._link
        if link is None or link.transport is None:
            await self.start()
            link = self._link
        assert link is not None and link.transport is not None
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        link.waiting.append(future)
        link.transport.write(data)
        return await future

    async def stop(self) -> None:
        """The calls already sent are committed and answered; then the process exits."""
        self._stopped = True
        link, process = self._link, self._process
        if link is not None and link.transport is not None:
            link.transport.write(frame(STOP))
            await link.closed
        if process is not None:
            code = await asyncio.to_thread(process.wait)
            if code:
                logger.warning("store writer process exited with code %s", code)
        self._link = self._process = None
