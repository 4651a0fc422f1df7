"""The WebSocket transport: one protocol line per text frame, into a Session.

The sibling of ``tcp.py``. A WebSocket connection becomes a ``Session``
exactly like a TCP one; only the framing differs (see docs/websocket.md):

- each text frame the client sends carries one line (a trailing ``\\n`` or
  ``\\r\\n`` is allowed; a frame holding several ``\\n``-separated lines is
  split, so message text can never smuggle a line break to other clients);
- every line the server writes goes out as its own text frame, without the
  ``\\n``;
- a binary frame is not part of the protocol: it is answered with
  ``-ERR binary frames not supported`` after the replies to what came before,
  and the connection is closed with code 1003 (unsupported data).

Writes never block, as the Session requires: frames are encoded with the
websockets Sans-I/O protocol and handed straight to the socket's buffer (the
same path as ``websockets.broadcast``). Flow control comes from the asyncio
transport's high/low-water marks, forwarded to the Session like TCP's.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Final

from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed, InvalidState
from websockets.frames import CloseCode
from websockets.protocol import State

from mpim.errors import ErrorCode
from mpim.gateway.session import LINES_PER_TURN, Session
from mpim.gateway.transport import Transport
from mpim.protocol.framing import LineSplitter

logger = logging.getLogger(__name__)

# A transport-level framing error, like LINE_TOO_LONG. It is not an ErrorCode
# member because no command can produce it; it is documented in
# docs/websocket.md.
BINARY_FRAME_REPLY: Final = "-ERR binary frames not supported"

WsSessionFactory = Callable[[Transport], Session]


class MpimServerConnection(ServerConnection):
    """websockets' server connection, forwarding socket events to our transport.

    websockets uses the asyncio transport's pause/resume_writing only for its
    own ``drain()``, and reports a lost connection only to a pending ``recv()``.
    A Session needs both signals as they happen (TCP gets them from
    ``asyncio.Protocol``): to stop executing commands for a client that does not
    read its replies, and to stop waiting for a socket that is gone even while
    reading is paused. Passed to ``serve(create_connection=...)``, the
    library's documented hook for this.
    """

    mpim_transport: WebSocketTransport | None = None

    def pause_writing(self) -> None:
        super().pause_writing()
        if self.mpim_transport is not None:
            self.mpim_transport.writing_paused()

    def resume_writing(self) -> None:
        super().resume_writing()
        if self.mpim_transport is not None:
            self.mpim_transport.writing_resumed()

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        if self.mpim_transport is not None:
            self.mpim_transport.lost()


class WebSocketTransport:
    """Frames one WebSocket connection into protocol lines and back.

    Implements the ``Transport`` protocol the Session uses; ``serve()`` runs
    the connection from greeting to close and returns only once the
    connection is closed, which is when websockets expects its handler to end.
    """

    kind = "websocket"

    def __init__(self, conn: MpimServerConnection, max_line_bytes: int) -> None:
        self._conn = conn
        self._splitter = LineSplitter(max_line_bytes)
        self._session: Session | None = None
        self._reading = asyncio.Event()
        self._reading.set()
        self._closing = False
        self._close_code = CloseCode.NORMAL_CLOSURE
        self._close_reason = ""
        self._close_task: asyncio.Task[None] | None = None
        address = conn.remote_address
        self._peer = f"{address[0]}:{address[1]}" if address else "?"

    async def serve(self, make_session: WsSessionFactory, greeting: str) -> None:
        """Greet, run a Session on this connection, return when it is closed."""
        self.write(greeting.encode() + b"\n")
        session = make_session(self)
        self._session = session
        self._conn.mpim_transport = self
        session.start()
        try:
            await self._read_frames(session)
        finally:
            # The connection is closed here (recv raised ConnectionClosed);
            # tell the session in case the socket event came first.
            session.connection_lost()
            if self._close_task is not None:
                await self._close_task

    async def _read_frames(self, session: Session) -> None:
        frames = 0
        while True:
            frames += 1
            if frames == LINES_PER_TURN:
                # recv() returns without suspending while frames are buffered,
                # and one socket read can hold thousands: the others' turn.
                frames = 0
                await asyncio.sleep(0)
            if not self._closing:
                await self._reading.wait()
            try:
                message = await self._conn.recv()
            except ConnectionClosed as exc:
                logger.debug("ws %s closed: %s", self._peer, exc)
                return
            if self._closing:
                # Keep draining after a close request so the closing
                # handshake is never stuck behind unread frames.
                continue
            if isinstance(message, bytes):
                self._framing_error(session, BINARY_FRAME_REPLY, CloseCode.UNSUPPORTED_DATA)
                continue
            data = message.encode()
            if not data.endswith(b"\n"):
                data += b"\n"
            lines = self._splitter.feed(data)
            if lines:
                session.feed(lines)
            if self._splitter.overflow:
                reply = f"-ERR {ErrorCode.LINE_TOO_LONG.value}"
                self._framing_error(session, reply, CloseCode.MESSAGE_TOO_BIG)

    def _framing_error(self, session: Session, reply: str, code: CloseCode) -> None:
        """Answer what came before, then ``reply``, then close with ``code``."""
        self._close_code = code
        self._close_reason = reply.removeprefix("-ERR ")
        session.close_with(reply)
        self.pause_reading()

    # -- socket events (from MpimServerConnection) ---------------------------

    def writing_paused(self) -> None:
        if self._session is not None:
            self._session.pause_writing()

    def writing_resumed(self) -> None:
        if self._session is not None:
            self._session.resume_writing()

    def lost(self) -> None:
        self._closing = True
        self._reading.set()
        if self._session is not None:
            self._session.connection_lost()

    # -- Transport (what the session uses) ----------------------------------

    def write(self, data: bytes) -> None:
        """Send each ``\\n``-terminated line of ``data`` as one text frame."""
        conn = self._conn
        if self._closing or conn.protocol.state is not State.OPEN:
            return
        lines = data.split(b"\n")
        if lines[-1] == b"":
            lines.pop()
        try:
            for line in lines:
                conn.protocol.send_text(line)
            conn.send_data()
        except (InvalidState, OSError) as exc:
            # The socket failed under us; connection_lost follows.
            logger.debug("ws %s: write failed: %r", self._peer, exc)
            self.abort()

    def close(self) -> None:
        """Close after what is already written: the closing handshake follows it."""
        if self._closing:
            return
        self._closing = True
        self._reading.set()
        self._close_task = asyncio.get_running_loop().create_task(
            self._conn.close(self._close_code, self._close_reason), name=f"ws-close-{self._peer}"
        )

    def abort(self) -> None:
        self._closing = True
        self._reading.set()
        self._conn.transport.abort()

    def pause_reading(self) -> None:
        self._reading.clear()

    def resume_reading(self) -> None:
        self._reading.set()

    def output_buffer_size(self) -> int:
        return self._conn.transport.get_write_buffer_size()

    @property
    def peer(self) -> str:
        return self._peer
