"""The TCP transport: asyncio.Protocol framing straight into a Session."""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Callable
from typing import Any, cast

from mpim.errors import ErrorCode
from mpim.gateway.session import Session
from mpim.protocol.framing import LineSplitter

logger = logging.getLogger(__name__)

SessionFactory = Callable[["TcpConnection"], Session]


class TcpConnection(asyncio.Protocol):
    """Frames bytes into lines (bounded) and implements the session's Transport."""

    kind = "tcp"

    def __init__(
        self,
        make_session: SessionFactory,
        max_line_bytes: int,
        greeting: str,
        keepalive_seconds: float = 0.0,
    ) -> None:
        self._make_session = make_session
        self._keepalive = keepalive_seconds
        self._splitter = LineSplitter(max_line_bytes)
        self._greeting = greeting
        self._transport: asyncio.Transport | None = None
        self._session: Session | None = None
        self._peer = "?"

    # -- asyncio.Protocol ----------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        transport = cast(asyncio.Transport, transport)
        self._transport = transport
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if self._keepalive > 0:
                enable_keepalive(sock, self._keepalive)
        peer: Any = transport.get_extra_info("peername")
        if peer:
            self._peer = f"{peer[0]}:{peer[1]}"
        transport.set_write_buffer_limits(high=256 * 1024)
        transport.write(self._greeting.encode() + b"\n")
        self._session = self._make_session(self)
        self._session.start()

    def data_received(self, data: bytes) -> None:
        session = self._session
        if session is None:
            return
        lines = self._splitter.feed(data)
        if lines:
            session.feed(lines)
        if self._splitter.overflow:
            # Answer what came before, then the error, then close.
            session.close_with(f"-ERR {ErrorCode.LINE_TOO_LONG.value}")
            self.pause_reading()

    def eof_received(self) -> bool | None:
        # An unterminated last line is discarded; queued commands still run.
        if self._session is not None:
            self._session.input_ended()
        return True

    def connection_lost(self, exc: Exception | None) -> None:
        if self._session is not None:
            self._session.connection_lost()

    def pause_writing(self) -> None:
        if self._session is not None:
            self._session.pause_writing()

    def resume_writing(self) -> None:
        if self._session is not None:
            self._session.resume_writing()

    # -- Transport (what the session uses) ----------------------------------

    def write(self, data: bytes) -> None:
        if self._transport is not None and not self._transport.is_closing():
            self._transport.write(data)

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()

    def abort(self) -> None:
        if self._transport is not None:
            self._transport.abort()

    def pause_reading(self) -> None:
        if self._transport is not None and self._transport.is_reading():
            self._transport.pause_reading()

    def resume_reading(self) -> None:
        if self._transport is not None and not self._transport.is_closing():
            self._transport.resume_reading()

    def output_buffer_size(self) -> int:
        return self._transport.get_write_buffer_size() if self._transport is not None else 0

    @property
    def peer(self) -> str:
        return self._peer


KEEPALIVE_INTERVAL_SECONDS = 10
KEEPALIVE_PROBES = 3


def enable_keepalive(sock: socket.socket, idle_seconds: float) -> None:
    """Let the kernel find dead peers: a crashed client host never sends a FIN."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    if hasattr(socket, "TCP_KEEPIDLE"):  # Linux; elsewhere the system defaults apply
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, max(1, round(idle_seconds)))
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, KEEPALIVE_INTERVAL_SECONDS)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT, KEEPALIVE_PROBES)
