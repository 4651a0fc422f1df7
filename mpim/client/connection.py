"""An asyncio client for the MPIM line protocol (see ``/work/shared/protocol.md``).

One ``MpimConnection`` is one TCP connection. Commands may be pipelined: each
``command()`` call appends a pending future to a FIFO and writes its line; a
single reader task matches status lines to the FIFO head, because the server
answers in command order. Lines that are not part of a reply are pushes and go
to ``on_push``.

Memory is bounded: the stream's line limit caps one line, and
``max_reply_lines`` caps how many message lines one PULL/SYNC/HISTORY reply may
hold before the connection is treated as broken.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final, Self

from mpim.client.reply import Reply, is_status_line, parse_kv
from mpim.protocol.messages import is_message_line

__all__ = [
    "MAX_LINE_BYTES",
    "MpimConnection",
    "ProtocolError",
    "Reply",
    "command_word",
    "parse_kv",
    "redact",
]

logger = logging.getLogger(__name__)

#: The server's default maximum line is 64 KiB; the slack covers a message
#: line's header (``GMSG id=… group=… from=… ts=… seq=… text=``) around a
#: text that is itself close to that limit.
MAX_LINE_BYTES: Final = 64 * 1024 + 1024
DEFAULT_MAX_REPLY_LINES: Final = 100_000
MULTILINE_COMMANDS: Final = frozenset({"PULL", "SYNC", "HISTORY"})
CLOSE_TIMEOUT: Final = 5.0
_SECRET_COMMANDS: Final = frozenset({"REGISTER", "LOGIN", "AUTH"})
_TOKEN_VALUE: Final = re.compile(r"token=\S+")

PushHandler = Callable[[str], None]


class ProtocolError(ConnectionError):
    """The server broke the protocol (bad greeting, over-long line, huge reply)."""


def redact(line: str) -> str:
    """A line fit for logs: no passwords (REGISTER/LOGIN), tokens (AUTH, ``token=``)."""
    word = command_word(line)
    if word in _SECRET_COMMANDS:
        return f"{word} <redacted>"
    return _TOKEN_VALUE.sub("token=<redacted>", line) if "token=" in line else line


def command_word(line: str) -> str:
    """The upper-cased command word of a protocol line, skipping an ``@cid=`` prefix."""
    words = line.split()
    if words and words[0].startswith("@"):
        words = words[1:]
    return words[0].upper() if words else ""


@dataclass(slots=True)
class _Pending:
    future: asyncio.Future[Reply]
    multiline: bool
    lines: list[str] = field(default_factory=list)


class MpimConnection:
    """A pipelining client connection; create it with :meth:`open`.

    Pushes and multi-line replies: while a PULL, SYNC or HISTORY is at the head
    of the FIFO, every ``MSG``/``GMSG`` line that arrives is taken as part of
    its reply. The protocol promises no push *inside* such a reply, but a push
    the server wrote just before the reply's first line looks exactly like that
    first line, so it cannot be told apart; it ends up in ``Reply.lines``
    instead of ``on_push``. Callers that track seqs (``ClientSession``) treat
    both paths alike, so nothing is lost either way.

    ``on_push`` also receives a status line that arrives while no command is
    pending (e.g. a server that says goodbye on shutdown), so it is never
    silently dropped.
    """

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        greeting: str,
        *,
        on_push: PushHandler | None = None,
        max_reply_lines: int = DEFAULT_MAX_REPLY_LINES,
    ) -> None:
        self.greeting = greeting
        self._reader = reader
        self._writer = writer
        self._on_push = on_push
        self._max_reply_lines = max_reply_lines
        self._pending: deque[_Pending] = deque()
        self._closed = False
        self._close_reason: ConnectionError = ConnectionError("connection closed by server")
        self._closed_event = asyncio.Event()
        self._reader_task = asyncio.create_task(self._read_loop(), name="mpim-client-reader")

    @classmethod
    async def open(
        cls,
        host: str,
        port: int,
        *,
        on_push: PushHandler | None = None,
        timeout: float = 10.0,
    ) -> Self:
        """Connect and read the ``+OK`` greeting; ``ConnectionError`` on any failure."""
        try:
            async with asyncio.timeout(timeout):
                reader, writer = await asyncio.open_connection(host, port, limit=MAX_LINE_BYTES)
                try:
                    greeting = await _read_greeting(reader)
                except BaseException:
                    writer.close()
                    raise
        except TimeoutError as exc:
            raise ConnectionError(f"timed out connecting to {host}:{port}") from exc
        except ValueError as exc:  # the greeting overran the line limit
            raise ProtocolError(f"bad greeting from {host}:{port}: {exc}") from exc
        logger.debug("connected to %s:%d: %s", host, port, greeting)
        return cls(reader, writer, greeting, on_push=on_push)

    @property
    def closed(self) -> bool:
        """True once :meth:`close` was called or the connection was lost."""
        return self._closed

    @property
    def close_reason(self) -> str:
        """Why the connection closed (meaningful once ``closed`` is true)."""
        return str(self._close_reason)

    @property
    def pending(self) -> int:
        """Commands sent whose reply has not fully arrived yet."""
        return len(self._pending)

    async def command(self, line: str) -> Reply:
        """Send one protocol line and wait for its complete reply.

        Raises ``ValueError`` for a line the server would not answer exactly
        once (blank, or with an embedded line break), ``ConnectionError`` if the
        connection is or becomes closed. A call that is cancelled (e.g. by an
        ``asyncio.timeout`` around it) still consumes its reply when it comes,
        so later replies stay matched to their commands.
        """
        if not line.strip(" ") or "\n" in line or "\r" in line:
            raise ValueError("a command must be one non-blank line")
        if self._closed:
            raise ConnectionError(str(self._close_reason))
        future: asyncio.Future[Reply] = asyncio.get_running_loop().create_future()
        self._pending.append(_Pending(future, command_word(line) in MULTILINE_COMMANDS))
        logger.debug("> %s", redact(line))
        self._writer.write(line.encode() + b"\n")
        with contextlib.suppress(ConnectionError):
            # A failed write also ends the read loop, which fails the future.
            await self._writer.drain()
        return await future

    async def close(self) -> None:
        """Close the connection and wait until it is closed; pending commands fail."""
        if not self._closed:
            self._close_reason = ConnectionError("connection closed by client")
        self._writer.close()
        try:
            async with asyncio.timeout(CLOSE_TIMEOUT):
                await self.wait_closed()
        except TimeoutError:
            logger.warning("connection did not close in %.1fs; aborting it", CLOSE_TIMEOUT)
            self._writer.transport.abort()
            await self.wait_closed()

    async def wait_closed(self) -> None:
        """Wait until the connection is closed, by either side."""
        await self._closed_event.wait()
        await asyncio.wait({self._reader_task})
        with contextlib.suppress(OSError):
            await self._writer.wait_closed()

    async def _read_loop(self) -> None:
        reason: ConnectionError | None = None
        try:
            while True:
                raw = await self._reader.readline()
                if not raw.endswith(b"\n"):
                    break  # EOF; an unterminated last line is discarded, as the server does
                line = raw.rstrip(b"\n").removesuffix(b"\r").decode("utf-8", errors="replace")
                logger.debug("< %s", redact(line))
                self._dispatch(line)
        except ValueError:
            reason = ProtocolError(f"server sent a line longer than {MAX_LINE_BYTES} bytes")
        except ProtocolError as exc:
            reason = exc
        except OSError as exc:
            reason = ConnectionError(f"connection lost: {exc}")
        finally:
            self._shut(reason)

    def _dispatch(self, line: str) -> None:
        if is_status_line(line):
            if not self._pending:
                logger.debug("status line with no command pending: %s", line)
                self._push(line)
                return
            done = self._pending.popleft()
            if not done.future.done():
                done.future.set_result(Reply(done.lines, line))
            return
        head = self._pending[0] if self._pending else None
        if head is not None and head.multiline and is_message_line(line):
            if len(head.lines) >= self._max_reply_lines:
                raise ProtocolError(f"reply longer than {self._max_reply_lines} lines")
            head.lines.append(line)
            return
        self._push(line)

    def _push(self, line: str) -> None:
        if self._on_push is None:
            return
        try:
            self._on_push(line)
        except Exception:
            # Not the line itself: a pushed message carries its text.
            logger.exception("on_push handler failed for a %s line", command_word(line) or "blank")
            logger.debug("the line: %.80r", line)

    def _shut(self, reason: ConnectionError | None) -> None:
        """Mark closed, fail every pending command, release the socket. Idempotent."""
        if reason is not None and not self._closed:
            self._close_reason = reason
        self._closed = True
        while self._pending:
            future = self._pending.popleft().future
            if not future.done():
                future.set_exception(type(self._close_reason)(*self._close_reason.args))
        self._writer.close()
        self._closed_event.set()
        logger.debug("connection closed: %s", self._close_reason)


async def _read_greeting(reader: asyncio.StreamReader) -> str:
    raw = await reader.readline()
    if not raw.endswith(b"\n"):
        raise ConnectionError("server closed the connection before greeting")
    greeting = raw.rstrip(b"\n").removesuffix(b"\r").decode("utf-8", errors="replace")
    if not greeting.startswith("+OK"):
        raise ProtocolError(f"server refused the connection: {greeting[:200]}")
    return greeting
