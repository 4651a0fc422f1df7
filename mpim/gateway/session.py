"""One client connection's state and command loop, independent of transport.

Lines are executed one at a time in arrival order, so replies come in
command order. Reading pauses while too many commands are queued and while
the client is not reading its replies: a pipelining client is slowed down,
never buffered without bound. Pushes are different: they are not awaited,
so a client whose unsent output passes ``max_output_bytes`` is disconnected
(its messages stay in its inbox for SYNC/PULL) instead of stalling others.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Iterator
from typing import TYPE_CHECKING

from mpim.gateway.ratelimit import TokenBucket
from mpim.gateway.transport import Transport

if TYPE_CHECKING:
    from mpim.config import GatewaySettings

logger = logging.getLogger(__name__)

LineHandler = Callable[["Session", bytes], Awaitable[None]]


class _CloseWith:
    """Queued after the last good line: send ``reply``, then close."""

    __slots__ = ("reply",)

    def __init__(self, reply: str) -> None:
        self.reply = reply


class Session:
    """A connected client: login state, ordered command execution, output."""

    def __init__(
        self,
        conn_id: str,
        transport: Transport,
        settings: GatewaySettings,
        handle_line: LineHandler,
        on_closed: Callable[[Session], Awaitable[None]],
    ) -> None:
        self.conn_id = conn_id
        self.transport = transport
        self.uid: int | None = None
        self.token: str | None = None
        self.rate = TokenBucket(settings.rate_limit_per_second, settings.rate_limit_burst)
        self._settings = settings
        self._handle_line = handle_line
        self._on_closed = on_closed
        self._lines: deque[bytes | _CloseWith] = deque()
        self._wakeup = asyncio.Event()
        self._writable = asyncio.Event()
        self._writable.set()
        self._reading_paused = False
        self._hold_depth = 0
        self._held: list[str] = []
        self._closing = False
        self._shutdown_notice: str | None = None
        self._input_done = False
        self.closed = False
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(
            self._run(), name=f"session-{self.conn_id}"
        )

    # -- input (called by the transport) ------------------------------------

    def feed(self, lines: list[bytes]) -> None:
        if self._closing:
            return
        self._lines.extend(lines)
        self._wakeup.set()
        if len(self._lines) >= self._settings.max_pending_commands and not self._reading_paused:
            self._reading_paused = True
            self.transport.pause_reading()

    def close_with(self, reply: str) -> None:
        """Framing failed: answer what came before, then ``reply``, then close."""
        if not self._closing:
            self._lines.append(_CloseWith(reply))
            self.input_ended()

    def input_ended(self) -> None:
        """The peer closed its side or the connection was lost."""
        self._input_done = True
        self._wakeup.set()

    def connection_lost(self) -> None:
        self.closed = True
        self._closing = True
        self._lines.clear()
        self._writable.set()
        self.input_ended()

    def pause_writing(self) -> None:
        self._writable.clear()

    def resume_writing(self) -> None:
        self._writable.set()

    # -- command loop --------------------------------------------------------

    async def _run(self) -> None:
        try:
            while True:
                if not self._lines:
                    if self._input_done or self._closing:
                        break
                    self._wakeup.clear()
                    await self._wakeup.wait()
                    continue
                line = self._lines.popleft()
                if isinstance(line, _CloseWith):
                    self.write_line(line.reply)
                    break
                if (
                    self._reading_paused
                    and len(self._lines) <= self._settings.max_pending_commands // 2
                ):
                    self._reading_paused = False
                    self.transport.resume_reading()
                await self._handle_line(self, line)
                if not self._writable.is_set():
                    await self._writable.wait()
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.exception("session %s failed", self.conn_id)
        finally:
            await self._finish()

    async def _finish(self) -> None:
        try:
            await self._on_closed(self)
        finally:
            if not self.closed:
                if self._shutdown_notice is not None:
                    self.write_line(self._shutdown_notice)
                self.closed = True
                self.transport.close()

    async def shutdown(self, grace: float, notice: str) -> None:
        """Stop taking commands, let the current one finish, send ``notice``, close."""
        if self._closing and self._task is not None and self._task.done():
            return
        self._shutdown_notice = notice
        self._closing = True
        self._lines.clear()
        self._wakeup.set()
        if self._task is not None:
            with contextlib.suppress(TimeoutError, asyncio.CancelledError):
                await asyncio.wait_for(asyncio.shield(self._task), grace)
            if not self._task.done():
                self._task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._task

    def close_after_reply(self) -> None:
        """QUIT: what is queued is not executed; the connection closes after flushing."""
        self._closing = True
        self._lines.clear()
        self._wakeup.set()

    # -- output --------------------------------------------------------------

    def write_line(self, line: str) -> None:
        if not self.closed:
            self.transport.write(line.encode() + b"\n")

    def write_lines(self, lines: list[str]) -> None:
        if lines and not self.closed:
            self.transport.write(("\n".join(lines) + "\n").encode())

    @contextlib.contextmanager
    def holding_pushes(self) -> Iterator[None]:
        """Within a multi-line reply no push may interleave: buffer them."""
        self._hold_depth += 1
        try:
            yield
        finally:
            self._hold_depth -= 1
            if self._hold_depth == 0 and self._held:
                held, self._held = self._held, []
                self._write_push(held)

    def push(self, lines: list[str]) -> bool:
        """Queue pushed message lines; False if the session cannot take them."""
        if self.closed or self._closing or self.uid is None:
            return False
        if self._hold_depth:
            if len(self._held) + len(lines) > self._settings.pull_page_size * 4:
                return False
            self._held.extend(lines)
            return True
        return self._write_push(lines)

    def _write_push(self, lines: list[str]) -> bool:
        if self.closed:
            return False
        self.write_lines(lines)
        if self.transport.output_buffer_size() > self._settings.max_output_bytes:
            logger.warning(
                "conn %s uid=%s: slow consumer, %d bytes unsent; disconnecting",
                self.conn_id,
                self.uid,
                self.transport.output_buffer_size(),
            )
            self.closed = True
            self._closing = True
            self.transport.abort()
            self.input_ended()
            return False
        return True
