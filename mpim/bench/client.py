"""A lean protocol client for the tool's hot path.

``mpim.client.MpimConnection`` creates a future and a coroutine step per
command; at tens of thousands of messages per second that would make the load
tool, not the server, the bottleneck. This client is an ``asyncio.Protocol``:
one ``data_received`` splits the chunk into lines, reads the clock once, and
calls plain callbacks — replies in command order from a FIFO, pushes to
``on_push``. Lines written from inside those callbacks (a closed-loop sender
answering its ack) are coalesced into one ``write`` per chunk.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections import deque
from collections.abc import Callable
from typing import Final, cast

logger = logging.getLogger(__name__)

#: ``(line or None if the connection was lost, receive time ns, arg1, arg2)``.
ReplyHandler = Callable[[bytes | None, int, int, int], None]
PushHandler = Callable[[bytes, int], None]

CONNECT_TIMEOUT: Final = 30.0
MAX_BUFFER: Final = 1 << 20


class BenchConnection(asyncio.Protocol):
    """One TCP connection speaking the line protocol; build it with :func:`connect`."""

    def __init__(self, on_push: PushHandler | None = None) -> None:
        self.on_push = on_push
        self.on_lost: Callable[[str], None] | None = None
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.close_reason = ""
        self.greeting = b""
        self._buf = b""
        self._pending: deque[tuple[ReplyHandler, int, int]] = deque()
        self._out: list[bytes] | None = None
        self._collect: list[bytes] | None = None
        self._greeted: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self._pending.append((self._on_greeting, 0, 0))

    # -- asyncio.Protocol ----------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def data_received(self, data: bytes) -> None:
        now = time.time_ns()
        buf = self._buf + data if self._buf else data
        lines = buf.split(b"\n")
        self._buf = lines.pop()
        if len(self._buf) > MAX_BUFFER:
            self._lose("server sent an over-long line")
            return
        out: list[bytes] = []
        self._out = out
        pending = self._pending
        try:
            for line in lines:
                if line[-1:] == b"\r":
                    line = line[:-1]
                head = line[:1]
                if head == b"+" or head == b"-":
                    if not pending:
                        self._unexpected(line, now)
                        continue
                    handler, a, b = pending.popleft()
                    handler(line, now, a, b)
                elif self._collect is not None:
                    self._collect.append(line)
                elif line and self.on_push is not None:
                    self.on_push(line, now)
        finally:
            self._out = None
            if out and self.transport is not None:
                self.transport.write(b"".join(out))

    def eof_received(self) -> bool | None:
        self._lose("server closed the connection")
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self._lose(f"connection lost: {exc}" if exc else "connection closed")

    # -- sending -------------------------------------------------------------

    def send(self, data: bytes, handler: ReplyHandler, a: int = 0, b: int = 0) -> bool:
        """Write one ``\\n``-terminated command; ``handler`` gets its reply line."""
        if self.closed or self.transport is None:
            return False
        self._pending.append((handler, a, b))
        out = self._out
        if out is not None:
            out.append(data)
        else:
            self.transport.write(data)
        return True

    async def request(self, line: str, timeout: float = CONNECT_TIMEOUT) -> bytes:
        """Send one command and await its status line (setup and control path)."""
        future: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()

        def done(reply: bytes | None, now: int, a: int, b: int) -> None:
            if future.done():
                return
            if reply is None:
                future.set_exception(ConnectionError(self.close_reason))
            else:
                future.set_result(reply)

        if not self.send(line.encode() + b"\n", done):
            raise ConnectionError(self.close_reason or "not connected")
        async with asyncio.timeout(timeout):
            return await future

    async def request_lines(
        self, line: str, timeout: float = CONNECT_TIMEOUT
    ) -> tuple[list[bytes], bytes]:
        """Send PULL/SYNC and return ``(message lines, final status line)``.

        Call it only while nothing else is pending: every non-status line that
        arrives until the status line is taken as part of the reply (a push
        just before it is indistinguishable, and a message for the reader
        either way).
        """
        self._collect = []
        try:
            status = await self.request(line, timeout)
            return self._collect or [], status
        finally:
            self._collect = None

    async def wait_greeting(self) -> bytes:
        """The server's first line; ``ConnectionRefusedError`` if it is not ``+OK``."""
        self.greeting = await self._greeted
        return self.greeting

    def close(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()

    # -- internals -----------------------------------------------------------

    def _on_greeting(self, line: bytes | None, now: int, a: int, b: int) -> None:
        if self._greeted.done():
            return
        if line is None:
            self._greeted.set_exception(ConnectionError(self.close_reason))
        elif not line.startswith(b"+OK"):
            self._greeted.set_exception(ConnectionRefusedError(line.decode(errors="replace")))
        else:
            self._greeted.set_result(line)

    def _unexpected(self, line: bytes, now: int) -> None:
        logger.debug("status line with no command pending: %r", line[:200])
        if self.on_push is not None:
            self.on_push(line, now)

    def _lose(self, reason: str) -> None:
        if self.closed:
            return
        self.closed = True
        self.close_reason = reason
        now = time.time_ns()
        pending, self._pending = self._pending, deque()
        for handler, a, b in pending:
            try:
                handler(None, now, a, b)
            except Exception:
                logger.exception("reply handler failed on close")
        if self.on_lost is not None:
            self.on_lost(reason)
        if self.transport is not None:
            self.transport.close()


async def connect(
    host: str, port: int, on_push: PushHandler | None = None, timeout: float = CONNECT_TIMEOUT
) -> BenchConnection:
    """Open a connection and wait for the server's ``+OK`` greeting."""
    loop = asyncio.get_running_loop()
    async with asyncio.timeout(timeout):
        _, protocol = await loop.create_connection(lambda: BenchConnection(on_push), host, port)
        conn = protocol
        try:
            await conn.wait_greeting()
        except BaseException:
            conn.abort()
            raise
    return conn


def reply_fields(reply: bytes) -> dict[str, str]:
    """``key=value`` words of a status line (``+OK uid=3 token=x`` → uid, token)."""
    out: dict[str, str] = {}
    for word in reply.decode(errors="replace").split()[1:]:
        key, sep, value = word.partition("=")
        if sep:
            out[key] = value
    return out


def expect_ok(reply: bytes, what: str) -> dict[str, str]:
    """The fields of a ``+OK`` reply; ``BenchSetupError`` naming ``what`` otherwise."""
    if not reply.startswith(b"+OK"):
        raise BenchSetupError(f"{what}: {reply.decode(errors='replace')[:200]}")
    return reply_fields(reply)


class BenchSetupError(RuntimeError):
    """The server refused a setup step (registration, login, group creation)."""


__all__ = ["BenchConnection", "BenchSetupError", "connect", "expect_ok", "reply_fields"]
