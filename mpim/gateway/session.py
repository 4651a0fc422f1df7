"""One client connection's state and command loop, independent of transport.

Lines are executed one at a time in arrival order, so replies come in
command order, at most ``LINES_PER_TURN`` of them before the event loop
serves the other connections. Reading pauses while too many commands are
queued and while the client is not reading its replies: a pipelining client
is slowed down, never buffered without bound. Pushes are different: they
are not awaited, so a client whose unsent output passes ``max_output_bytes``
is disconnected (its messages stay in its inbox for SYNC/PULL) instead of
stalling others.

Most connections are idle most of the time, and a gateway holds tens of
thousands of them, so an idle session owns no task, event or queue: the
command loop is a task only while lines are queued (``feed`` starts it, it
ends when the queue is empty), and buffers are made when first needed and
dropped when empty. The class has ``__slots__`` for the same reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Iterator
from typing import TYPE_CHECKING, Any

from mpim.errors import ErrorCode
from mpim.gateway.ratelimit import TokenBucket
from mpim.gateway.transport import Transport

if TYPE_CHECKING:
    from mpim.config import GatewaySettings
    from mpim.gateway.dispatcher import Step

logger = logging.getLogger(__name__)

LineDispatch = Callable[["Session", bytes], "Step"]
# Makes a started command's reply line from its finished future.
Render = Callable[["asyncio.Future[Any]"], "str | None"]

# Pipelined commands awaiting their reply on one connection, at most.
MAX_INFLIGHT = 256
# Lines one connection runs before the event loop serves the others. Blank,
# unknown and refused lines are answered without an await, so without a turn
# a client streaming them would hold the loop, and every other user, for as
# long as it kept sending.
LINES_PER_TURN = 64
# Gathered output is written at the end of the loop pass, or at this size.
_FLUSH_AT_BYTES = 64 * 1024


class _CloseWith:
    """Queued after the last good line: send ``reply``, then close."""

    __slots__ = ("reply",)

    def __init__(self, reply: str) -> None:
        self.reply = reply


class Session:
    """A connected client: login state, ordered command execution, output."""

    __slots__ = (
        "_armed",
        "_closing",
        "_dispatch",
        "_flush_scheduled",
        "_held",
        "_held_bytes",
        "_hold_depth",
        "_inflight",
        "_input_done",
        "_lines",
        "_login_timer",
        "_on_closed",
        "_out",
        "_out_bytes",
        "_reading_paused",
        "_refuse",
        "_reply_seqs",
        "_settings",
        "_shutdown_notice",
        "_task",
        "_transport_backlog",
        "_write_paused",
        "_write_waiter",
        "closed",
        "conn_id",
        "dropped_slow",
        "idle_sweeps",
        "rate",
        "token",
        "transport",
        "uid",
    )

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
        self.closed = False
        # Set when it happens: the gateway counts it at close.
        self.dropped_slow = False
        # Idle sweeps (Gateway) since this connection last sent anything.
        self.idle_sweeps = 0
        self._settings = settings
        self._dispatch = dispatch
        self._on_closed = on_closed
        # Lines not executed yet (a line already dispatched is queued as its
        # Step); None when there are none.
        self._lines: deque[bytes | Step | _CloseWith] | None = None
        # Started commands, oldest first, with what renders each one's reply
        # (None: the future's result is the line); written strictly in order.
        self._inflight: deque[tuple[asyncio.Future[Any], Render | None]] | None = None
        # The one started command whose completion writes the replies (see _arm).
        self._armed: asyncio.Future[Any] | None = None
        # The command loop while lines are queued (None when idle); once the
        # session ends, its last loop, which runs the close.
        self._task: asyncio.Task[None] | None = None
        # The client is not reading its replies: the loop waits on the waiter.
        self._write_paused = False
        self._write_waiter: asyncio.Future[None] | None = None
        self._reading_paused = False
        self._input_done = False
        self._closing = False
        self._hold_depth = 0
        self._held: list[tuple[int, str]] | None = None
        self._held_bytes = 0
        # seqs the current multi-line reply wrote: held pushes of them are dropped
        self._reply_seqs: set[int] | None = None
        self._out: list[bytes] | None = None
        self._out_bytes = 0
        # The transport's buffer as the last flush left it: it only grows when
        # we write, so it bounds the buffer from above until the next flush.
        self._transport_backlog = 0
        self._flush_scheduled = False
        self._shutdown_notice: str | None = None
        self._login_timer: asyncio.TimerHandle | None = None
        self._refuse = refuse

    def start(self) -> None:
        """Accept commands; a refused session sends its reason and closes."""
        if self._refuse is not None:
            reply, self._refuse = self._refuse, None
            self.close_with(reply)
            return
        timeout = self._settings.login_timeout_seconds
        if timeout > 0:
            loop = asyncio.get_running_loop()
            self._login_timer = loop.call_later(timeout, self._login_expired)

    def _login_expired(self) -> None:
        self._login_timer = None
        if self.uid is None and not self._closing:
            logger.info("closed: no login within the timeout", extra={"conn": self.conn_id})
            self.close_with(f"-ERR {ErrorCode.LOGIN_TIMEOUT.value}")

    # -- input (called by the transport) ------------------------------------

    def feed(self, lines: list[bytes]) -> None:
        if self._closing:
            return
        self.idle_sweeps = 0
        pending: list[bytes] | list[bytes | Step] = lines
        if self._task is None and self._lines is None and not self._write_paused:
            pending = self._run_inline(lines)
            if not pending or self._closing:
                return
        queue = self._lines
        if queue is None:
            queue = self._lines = deque(pending)
        else:
            queue.extend(pending)
        self._run_soon()
        if len(queue) >= self._settings.max_pending_commands and not self._reading_paused:
            self._reading_paused = True
            self.transport.pause_reading()

    def _run_inline(self, lines: list[bytes]) -> list[bytes | Step]:
        """Run lines that need no await right here, with no task: the common
        case of an idle connection sending a message or a PING.

        Stops at the first step that must be awaited (or once replies have
        to wait); that step and the lines after it are returned, in order,
        for the command loop.
        """
        try:
            for i, line in enumerate(lines):
                if i == LINES_PER_TURN:
                    return list(lines[i:])  # the rest in later turns
                step = self._dispatch(self, line)
                if step.pending is not None:
                    self._track_now(step.pending, step.render)
                elif step.call is None:
                    if step.reply is not None:
                        self._reply_in_order(step.reply)
                else:
                    return [step, *lines[i + 1 :]]
                if self._login_timer is not None:  # the call is skipped once it is gone
                    self._after_command()
                inflight = self._inflight
                if (
                    self._closing
                    or self._write_paused
                    or (inflight is not None and len(inflight) >= MAX_INFLIGHT)
                ):
                    return list(lines[i + 1 :])
        except Exception:
            logger.exception("session failed", extra={"conn": self.conn_id, "uid": self.uid})
            self._closing = True
            self._run_soon()
        return []

    def close_with(self, reply: str) -> None:
        """Framing failed or the connection idled out: answer what came before,
        then ``reply``, then close. Once only: the input has ended by then.

        A client that is not reading its replies would never get that far
        (the command loop waits for it to read): it is cut off at once.
        """
        if self._closing or self._input_done:
            return
        if self._write_paused:
            logger.info(
                "closed: not reading its replies",
                extra={"conn": self.conn_id, "uid": self.uid, "reply": reply},
            )
            self._abort()
            return
        queue = self._lines
        if queue is None:
            queue = self._lines = deque()
        queue.append(_CloseWith(reply))
        self.input_ended()

    def input_ended(self) -> None:
        """The peer closed its side or the connection was lost."""
        self._input_done = True
        self._run_soon()

    def connection_lost(self) -> None:
        self.closed = True
        self._closing = True
        self._lines = None
        self.resume_writing()
        self.input_ended()

    def pause_writing(self) -> None:
        self._write_paused = True

    def resume_writing(self) -> None:
        self._write_paused = False
        waiter, self._write_waiter = self._write_waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    # -- command loop --------------------------------------------------------

    def _run_soon(self) -> None:
        """Start the command loop unless it is running (or the session ended)."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(
                self._run(), name=f"session-{self.conn_id}"
            )

    async def _run(self) -> None:
        ended = True
        try:
            ended = await self._run_lines()
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.exception("session failed", extra={"conn": self.conn_id, "uid": self.uid})
        finally:
            if ended:
                with contextlib.suppress(Exception):
                    await self._drain()
                await self._finish()
            else:
                # Idle: nothing runs for this connection until its next line.
                self._task = None

    async def _run_lines(self) -> bool:
        """Execute queued lines in order: True when the session ends, False when idle."""
        turn = 0
        while True:
            queue = self._lines
            if not queue:
                if self._input_done or self._closing:
                    return True
                self._lines = None
                if not self._inflight:
                    self._inflight = None
                return False
            line = queue.popleft()
            if isinstance(line, _CloseWith):
                await self._drain()
                self.write_line(line.reply)
                return True
            if self._reading_paused and len(queue) <= self._settings.max_pending_commands // 2:
                self._reading_paused = False
                self.transport.resume_reading()
            await self._execute(line)
            self._after_command()
            turn += 1
            if turn == LINES_PER_TURN:
                turn = 0
                await asyncio.sleep(0)  # the other connections' turn
            if self._write_paused:  # no coroutine per command while it reads
                await self.writable()

    async def _execute(self, line: bytes | Step) -> None:
        """Run one command. Sends may overlap later commands; replies stay in order."""
        step = self._dispatch(self, line) if isinstance(line, bytes) else line
        if step.pending is not None:
            await self._track(step.pending, step.render)
            return
        if step.call is None:
            if step.reply is not None:
                self._reply_in_order(step.reply)
            return
        if step.pipelinable:
            await self._track(asyncio.get_running_loop().create_task(step.call()), None)
            return
        await self._drain()
        reply = await step.call()
        if reply is not None:
            self.write_line(reply)

    async def writable(self) -> None:
        """Returns once the client has read its output down to the transport's
        low-water mark, or is gone: a reply of many pages waits here between
        pages rather than buffer them all for a client that does not read."""
        while self._write_paused:
            waiter = self._write_waiter
            if waiter is None:
                waiter = self._write_waiter = asyncio.get_running_loop().create_future()
            await waiter

    def _reply_in_order(self, reply: str) -> None:
        """An immediate reply: now, unless earlier commands are still replying."""
        if self._inflight:
            done: asyncio.Future[str | None] = asyncio.get_running_loop().create_future()
            done.set_result(reply)
            self._inflight.append((done, None))
        else:
            self.write_line(reply)

    async def _track(self, future: asyncio.Future[Any], render: Render | None) -> None:
        """A started command: its reply is written when it and all before it are done."""
        inflight = self._track_now(future, render)
        if len(inflight) >= MAX_INFLIGHT:
            await asyncio.wait({inflight[0][0]})
            self._write_ready_replies()

    def _track_now(
        self, future: asyncio.Future[Any], render: Render | None
    ) -> deque[tuple[asyncio.Future[Any], Render | None]]:
        inflight = self._inflight
        if inflight is None:
            inflight = self._inflight = deque()
        inflight.append((future, render))
        if len(inflight) == 1:
            self._arm(future)
        return inflight

    def _arm(self, head: asyncio.Future[Any]) -> None:
        """Only the oldest started command has the done callback: no reply can
        be written before its reply, and the callback writes every reply ready
        by then. A burst of sends that commit together costs one callback and
        one write, not one of each per send."""
        if head is not self._armed:
            self._armed = head
            head.add_done_callback(self._write_ready_replies)

    def _write_ready_replies(self, _: object = None) -> None:
        inflight = self._inflight
        if inflight is None:
            return
        lines: list[str] = []
        try:
            while inflight and inflight[0][0].done():
                future, render = inflight.popleft()
                if future.cancelled():
                    continue
                reply = future.result() if render is None else render(future)
                if reply is not None:
                    lines.append(reply)
        finally:
            # Even if a render raised: what was rendered goes out, and the
            # next command still has the callback that answers it.
            if lines:
                self.write_lines(lines)
            if inflight:
                self._arm(inflight[0][0])
        if inflight:
            return
        self._armed = None  # an idle connection keeps no finished future
        if self._task is None:
            self._inflight = None

    async def _drain(self) -> None:
        """Wait until every started command has replied."""
        while self._inflight:
            await asyncio.wait({self._inflight[-1][0]})
            while self._inflight and self._inflight[0][0].done():
                self._write_ready_replies()
            if self._inflight:
                await asyncio.wait({self._inflight[0][0]})
                self._write_ready_replies()

    def _after_command(self) -> None:
        if self.uid is not None:
            # Logged in within the deadline: the timer has nothing left to do.
            self._cancel_login_timer()

    def _cancel_login_timer(self) -> None:
        if self._login_timer is not None:
            self._login_timer.cancel()
            self._login_timer = None

    async def _finish(self) -> None:
        self._cancel_login_timer()
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
        self._lines = None
        self._run_soon()  # an idle session has no loop: this one only closes
        task = self._task
        assert task is not None
        with contextlib.suppress(TimeoutError, asyncio.CancelledError):
            await asyncio.wait_for(asyncio.shield(task), grace)
        if not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def close_after_reply(self) -> None:
        """QUIT: what is queued is not executed; the connection closes after flushing."""
        self._closing = True
        self._lines = None
        self._run_soon()

    # -- output --------------------------------------------------------------

    # Output is gathered and handed to the transport once per event-loop pass:
    # a burst of acks and pushes to one connection costs one write, not one
    # system call per line.

    def write_line(self, line: str) -> None:
        if not self.closed:
            self._queue_output(line.encode() + b"\n")

    def write_lines(self, lines: list[str]) -> None:
        if lines and not self.closed:
            text = lines[0] + "\n" if len(lines) == 1 else "\n".join(lines) + "\n"
            self._queue_output(text.encode())

    def _queue_output(self, data: bytes) -> None:
        out = self._out
        if out is None:
            self._out = [data]
        else:
            out.append(data)
        self._out_bytes += len(data)
        if self._out_bytes >= _FLUSH_AT_BYTES:
            self._flush_output()
        elif not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._flush_output)

    def _flush_output(self) -> None:
        self._flush_scheduled = False
        out = self._out
        if out is None:
            return
        self._out = None
        self._out_bytes = 0
        data = b"".join(out) if len(out) > 1 else out[0]
        if not self.closed:
            self.transport.write(data)
            self._transport_backlog = self.transport.output_buffer_size()

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
                held, self._held, self._held_bytes = self._held, None, 0
                skip, self._reply_seqs = self._reply_seqs, None
                if held:
                    lines = [line for seq, line in held if skip is None or seq not in skip]
                    if lines:
                        self._write_push(lines)

    def write_message_lines(self, messages: list[tuple[int, str]]) -> None:
        """(seq, line) pairs of a multi-line reply."""
        if self._hold_depth:
            seqs = self._reply_seqs
            if seqs is None:
                seqs = self._reply_seqs = set()
            seqs.update(seq for seq, _ in messages)
        self.write_lines([line for _, line in messages])

    def push(self, seq: int, line: str) -> bool:
        """Queue a pushed message line; False if this session did not take it."""
        if self.closed or self._closing or self.uid is None:
            return False
        if self._hold_depth:
            held = self._held
            if held is None:
                held = self._held = []
            held.append((seq, line))
            self._held_bytes += len(line) + 1
            if self._held_bytes > self._settings.max_output_bytes:
                self._drop_slow_consumer(self._held_bytes)
                return False
            return True
        self._queue_output(f"{line}\n".encode())  # one line: write_lines inlined
        return self._keeps_up()

    def _write_push(self, lines: list[str]) -> bool:
        if self.closed:
            return False
        self.write_lines(lines)
        return self._keeps_up()

    def _keeps_up(self) -> bool:
        """False (and the connection dropped) once its unsent output passes the
        limit: a reader that stopped reading must not hold unbounded memory."""
        limit = self._settings.max_output_bytes
        # The exact size costs a call into the transport: asked only when the
        # bound says the limit might be passed (a fan-out pushes to thousands).
        if self._out_bytes + self._transport_backlog > limit and self.unsent_bytes() > limit:
            self._drop_slow_consumer(self.unsent_bytes())
            return False
        return True

    def _drop_slow_consumer(self, unsent: int) -> None:
        """Its messages stay in its inbox; the client reconnects and SYNCs."""
        logger.warning(
            "slow consumer disconnected",
            extra={"conn": self.conn_id, "uid": self.uid, "unsent_bytes": unsent},
        )
        self.dropped_slow = True
        self._abort()

    def _abort(self) -> None:
        """Drop the connection now, with what it has not been sent and the
        commands it has not run, as if it were lost (the transport's own
        ``connection_lost`` comes later and finds nothing left to do)."""
        self._out = None
        self._out_bytes = 0
        self.transport.abort()
        self.connection_lost()
