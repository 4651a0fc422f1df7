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

from mpim.errors import ErrorCode
from mpim.gateway.ratelimit import TokenBucket
from mpim.gateway.transport import Transport

if TYPE_CHECKING:
    from mpim.config import GatewaySettings

logger = logging.getLogger(__name__)

if TYPE_CHECKING:
    from mpim.gateway.dispatcher import Step

LineDispatch = Callable[["Session", bytes], "Step"]

# Pipelined commands awaiting their reply on one connection, at most.
MAX_INFLIGHT = 256
# Gathered output is written at the end of the loop pass, or at this size.
_FLUSH_AT_BYTES = 64 * 1024


class _CloseWith:
    """Queued after the last good line: send ``reply``, then close."""

    __slots__ = ("reply",)

    def __init__(self, reply: str) -> None:
        self.reply = reply


class Session:
    """A connected client: login state, ordered command execution, output."""

    # Set on the instance only when it happens: the gateway counts it at close.
    dropped_slow = False
    # Idle sweeps (Gateway) since this connection last sent anything.
    idle_sweeps = 0

    def __init__(
        self,
        conn_id: str,
        transport: Transport,
        settings: GatewaySettings,
        dispatch: LineDispatch,
        on_closed: Callable[[Session], Awaitable[None]],
        *,
        refuse: str | None = None,
    ) -> None:
        self.conn_id = conn_id
        self.transport = transport
        self.uid: int | None = None
        self.token: str | None = None
        self.rate = TokenBucket(settings.rate_limit_per_second, settings.rate_limit_burst)
        self._settings = settings
        self._dispatch = dispatch
        # Replies of started commands, oldest first; written strictly in order.
        self._inflight: deque[asyncio.Future[str | None]] = deque()
        self._on_closed = on_closed
        self._lines: deque[bytes | _CloseWith] = deque()
        self._wakeup = asyncio.Event()
        self._writable = asyncio.Event()
        self._writable.set()
        self._reading_paused = False
        self._hold_depth = 0
        self._held: list[tuple[int, str]] = []
        self._held_bytes = 0
        # seqs the current multi-line reply wrote: held pushes of them are dropped
        self._reply_seqs: set[int] = set()
        self._closing = False
        self._out: list[bytes] = []
        self._out_bytes = 0
        self._flush_scheduled = False
        self._shutdown_notice: str | None = None
        self._input_done = False
        self.closed = False
        self._task: asyncio.Task[None] | None = None
        self._login_timer: asyncio.TimerHandle | None = None
        self._refuse = refuse

    def start(self) -> None:
        """Begin executing commands; a refused session sends its reason and closes."""
        loop = asyncio.get_running_loop()
        self._task = loop.create_task(self._run(), name=f"session-{self.conn_id}")
        if self._refuse is not None:
            self.close_with(self._refuse)
            return
        timeout = self._settings.login_timeout_seconds
        if timeout > 0:
            self._login_timer = loop.call_later(timeout, self._login_expired)

    def _login_expired(self) -> None:
        if self.uid is None and not self._closing:
            logger.info("conn %s: closed, no login within the timeout", self.conn_id)
            self.close_with(f"-ERR {ErrorCode.LOGIN_TIMEOUT.value}")

    # -- input (called by the transport) ------------------------------------

    def feed(self, lines: list[bytes]) -> None:
        if self._closing:
            return
        self.idle_sweeps = 0
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
                    await self._drain()
                    self.write_line(line.reply)
                    break
                if (
                    self._reading_paused
                    and len(self._lines) <= self._settings.max_pending_commands // 2
                ):
                    self._reading_paused = False
                    self.transport.resume_reading()
                await self._execute(line)
                if not self._writable.is_set():
                    await self._writable.wait()
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.exception("session %s failed", self.conn_id)
        finally:
            with contextlib.suppress(Exception):
                await self._drain()
            await self._finish()

    async def _execute(self, line: bytes) -> None:
        """Run one command. Sends may overlap later commands; replies stay in order."""
        step = self._dispatch(self, line)
        if step.call is None:
            if step.reply is not None:
                if self._inflight:
                    done: asyncio.Future[str | None] = asyncio.get_running_loop().create_future()
                    done.set_result(step.reply)
                    self._inflight.append(done)
                else:
                    self.write_line(step.reply)
            return
        if step.pipelinable:
            task = asyncio.get_running_loop().create_task(step.call())
            self._inflight.append(task)
            task.add_done_callback(self._write_ready_replies)
            if len(self._inflight) >= MAX_INFLIGHT:
                await asyncio.wait({self._inflight[0]})
                self._write_ready_replies()
            return
        await self._drain()
        reply = await step.call()
        if reply is not None:
            self.write_line(reply)

    def _write_ready_replies(self, _: object = None) -> None:
        inflight = self._inflight
        while inflight and inflight[0].done():
            future = inflight.popleft()
            if future.cancelled():
                continue
            reply = future.result()
            if reply is not None:
                self.write_line(reply)

    async def _drain(self) -> None:
        """Wait until every started command has replied."""
        while self._inflight:
            await asyncio.wait({self._inflight[-1]})
            while self._inflight and self._inflight[0].done():
                self._write_ready_replies()
            if self._inflight:
                await asyncio.wait({self._inflight[0]})
                self._write_ready_replies()

    async def _finish(self) -> None:
        if self._login_timer is not None:
            self._login_timer.cancel()
        try:
            await self._on_closed(self)
        finally:
            if not self.closed:
                if self._shutdown_notice is not None:
                    self.write_line(self._shutdown_notice)
                self._flush_output()
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

    # Output is gathered and handed to the transport once per event-loop pass:
    # a burst of acks and pushes to one connection costs one write, not one
    # system call per line.

    def write_line(self, line: str) -> None:
        if not self.closed:
            self._queue_output(line.encode() + b"\n")

    def write_lines(self, lines: list[str]) -> None:
        if lines and not self.closed:
            self._queue_output(("\n".join(lines) + "\n").encode())

    def _queue_output(self, data: bytes) -> None:
        self._out.append(data)
        self._out_bytes += len(data)
        if self._out_bytes >= _FLUSH_AT_BYTES:
            self._flush_output()
        elif not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._flush_output)

    def _flush_output(self) -> None:
        self._flush_scheduled = False
        if not self._out:
            return
        data = b"".join(self._out) if len(self._out) > 1 else self._out[0]
        self._out.clear()
        self._out_bytes = 0
        if not self.closed:
            self.transport.write(data)

    def unsent_bytes(self) -> int:
        return self.transport.output_buffer_size() + self._out_bytes

    @contextlib.contextmanager
    def holding_pushes(self) -> Iterator[None]:
        """A multi-line reply: pushes wait until it ends (write its done line inside).

        A held push of a message the reply itself carried is dropped, so a
        PULL racing a push never shows a message twice.
        """
        self._hold_depth += 1
        try:
            yield
        finally:
            self._hold_depth -= 1
            if self._hold_depth == 0:
                held, self._held, self._held_bytes = self._held, [], 0
                skip, self._reply_seqs = self._reply_seqs, set()
                lines = [line for seq, line in held if seq not in skip]
                if lines:
                    self._write_push(lines)

    def write_message_lines(self, messages: list[tuple[int, str]]) -> None:
        """(seq, line) pairs of a multi-line reply."""
        if self._hold_depth:
            self._reply_seqs.update(seq for seq, _ in messages)
        self.write_lines([line for _, line in messages])

    def push(self, seq: int, line: str) -> bool:
        """Queue a pushed message line; False if this session did not take it."""
        if self.closed or self._closing or self.uid is None:
            return False
        if self._hold_depth:
            self._held.append((seq, line))
            self._held_bytes += len(line) + 1
            if self._held_bytes > self._settings.max_output_bytes:
                self._drop_slow_consumer(self._held_bytes)
                return False
            return True
        return self._write_push([line])

    def _write_push(self, lines: list[str]) -> bool:
        if self.closed:
            return False
        self.write_lines(lines)
        if self.unsent_bytes() > self._settings.max_output_bytes:
            self._drop_slow_consumer(self.unsent_bytes())
            return False
        return True

    def _drop_slow_consumer(self, unsent: int) -> None:
        """Its messages stay in its inbox; the client reconnects and SYNCs."""
        logger.warning(
            "conn %s uid=%s: slow consumer, %d bytes unsent; disconnecting",
            self.conn_id,
            self.uid,
            unsent,
        )
        self.dropped_slow = True
        self.closed = True
        self._closing = True
        self._out.clear()
        self._out_bytes = 0
        self.transport.abort()
        self.input_ended()
