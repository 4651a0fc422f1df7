"""The TCP transport: asyncio.Protocol framing straight into a Session.

A gateway holds tens of thousands of these, so a connection keeps only what
it needs (``__slots__``; the peer address is read from the transport when
asked), and socket options are set once on the listening socket, which
accepted sockets inherit, instead of on each connection; only the keepalive
idle time is set per connection, to spread the probes (``stagger_keepalive``).
"""

from __future__ import annotations

import asyncio
import logging
import random
import socket
from collections.abc import Callable
from typing import Any, Protocol, cast

from mpim.errors import ErrorCode
from mpim.gateway.session import Session
from mpim.protocol.framing import LineSplitter

logger = logging.getLogger(__name__)

SessionFactory = Callable[["TcpConnection"], Session]


class TcpConnection(asyncio.Protocol):
    """Frames bytes into lines (bounded) and implements the session's Transport."""

    __slots__ = (
        "_greeting",
        "_keepalive_seconds",
        "_make_session",
        "_session",
        "_splitter",
        "_transport",
    )

    kind = "tcp"

    def __init__(
        self,
        make_session: SessionFactory,
        max_line_bytes: int,
        greeting: bytes,
        keepalive_seconds: float = 0.0,
    ) -> None:
        """``greeting``: the first line, with its ``\\n``; ``keepalive_seconds``:
        as given to ``prepare_listener`` (0: off)."""
        self._make_session = make_session
        self._keepalive_seconds = keepalive_seconds
        self._splitter = LineSplitter(max_line_bytes)
        self._greeting = greeting
        self._transport: asyncio.Transport | None = None
        self._session: Session | None = None

    # -- asyncio.Protocol ----------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        transport = cast(asyncio.Transport, transport)
        self._transport = transport
        if self._keepalive_seconds > 0:
            stagger_keepalive(transport.get_extra_info("socket"), self._keepalive_seconds)
        transport.set_write_buffer_limits(high=256 * 1024)
        transport.write(self._greeting)
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
        # Both uvloop and asyncio keep the address after the socket closes.
        transport = self._transport
        peer: Any = transport.get_extra_info("peername") if transport is not None else None
        return f"{peer[0]}:{peer[1]}" if peer else "?"


KEEPALIVE_INTERVAL_SECONDS = 10
KEEPALIVE_PROBES = 3
_KEEPIDLE_MAX = 32767  # seconds; Linux refuses more


class SocketOptions(Protocol):
    """What is set on a socket: a ``socket.socket`` or a loop's wrapper of one."""

    @property
    def family(self) -> int: ...

    def setsockopt(self, level: int, optname: int, value: int, /) -> None: ...


def prepare_listener(sock: SocketOptions, keepalive_seconds: float) -> None:
    """Set the options every client socket accepted on ``sock`` inherits.

    Once here instead of per connection: asking a uvloop transport for its
    socket creates an object (72 bytes) it then keeps for the connection's
    lifetime, paid only for the keepalive stagger.
    (Both uvloop and asyncio also set TCP_NODELAY on each TCP connection.)
    """
    if sock.family in (socket.AF_INET, socket.AF_INET6):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if keepalive_seconds > 0:
            enable_keepalive(sock, keepalive_seconds)


def stagger_keepalive(sock: SocketOptions | None, idle_seconds: float) -> None:
    """Give one accepted socket its own keepalive idle time, in [idle, 2 x idle).

    Clients that connect together (a load test; every client reconnecting
    after a restart) would otherwise be probed in the same timer tick. With
    10,000 idle connections that burst overflowed the receive backlog
    (``net.core.netdev_max_backlog``, 1,000 packets; ``/proc/net/softnet_stat``
    counted the drops), probes and their answers were lost, and after three
    missed probes the kernel reset about half of the healthy connections
    (``TcpExtTCPAbortOnTimeout`` 5,256 in one benchmark sweep). Spread over
    ``idle`` one-second steps, each tick carries a fraction of them.
    """
    if sock is None or not hasattr(socket, "TCP_KEEPIDLE"):
        return
    base = min(max(1, round(idle_seconds)), _KEEPIDLE_MAX // 2)
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, base + random.randrange(base))
    except OSError as exc:  # the listener's idle time, inherited, still holds
        logger.debug("keepalive stagger not set: %s", exc)


def enable_keepalive(sock: SocketOptions, idle_seconds: float) -> None:
    """Let the kernel find dead peers: a crashed client host never sends a FIN."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    if hasattr(socket, "TCP_KEEPIDLE"):  # Linux; elsewhere the system defaults apply
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, max(1, round(idle_seconds)))
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, KEEPALIVE_INTERVAL_SECONDS)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT, KEEPALIVE_PROBES)
