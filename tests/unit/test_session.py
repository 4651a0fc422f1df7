"""Session and SessionHub: ordering, backpressure, timers, close and push routing,
without sockets or services.

An idle session must own no task, queue or timer (a gateway holds tens of
thousands of them); these tests pin that down along with the promises the
command loop keeps while it comes and goes.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import cast

import pytest

from mpim.bus.pushes import Delivery, PushBatch, PushedMessage
from mpim.config import GatewaySettings
from mpim.gateway.dispatcher import Step
from mpim.gateway.hub import SessionHub
from mpim.gateway.session import Session
from mpim.proto import common_pb2, message_pb2
from mpim.proto.interfaces import MessageService


class FakeTransport:
    kind = "test"
    peer = "test:1"

    def __init__(self) -> None:
        self.written: list[str] = []
        self.closed = False
        self.aborted = False
        self.reading = True
        self.pauses = 0
        self.writes = 0

    def write(self, data: bytes) -> None:
        self.writes += 1
        self.written += data.decode().splitlines()

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.aborted = True

    def pause_reading(self) -> None:
        self.reading = False
        self.pauses += 1

    def resume_reading(self) -> None:
        self.reading = True

    def output_buffer_size(self) -> int:
        return 0


class Script:
    """A dispatch function: PING answers at once, AUTH logs in, SEND <n> is
    pipelined and SLOW is not; both wait for ``gate``."""

    def __init__(self) -> None:
        self.gate = asyncio.Event()
        self.gate.set()
        self.executed: list[str] = []
        # QUEUED <n>: a send already queued, answered when the test resolves it.
        self.queued: dict[str, asyncio.Future[str]] = {}

    def __call__(self, session: Session, raw: bytes) -> Step:
        line = raw.decode()
        self.executed.append(line)
        if line == "PING":
            return Step(reply="+OK pong")
        if line == "AUTH":

            async def auth() -> str:
                session.uid = 1
                return "+OK uid=1"

            return Step(call=auth)
        word, _, arg = line.partition(" ")
        if word == "QUEUED":
            future = self.queued[arg] = asyncio.get_running_loop().create_future()
            return Step(pending=future)

        async def wait_then(reply: str) -> str:
            await self.gate.wait()
            return reply

        if word == "SEND":
            return Step(call=lambda: wait_then(f"+OK msg_id={arg}"), pipelinable=True)
        assert word == "SLOW"
        return Step(call=lambda: wait_then("+OK slow"))


def make_session(script: Script, **settings: float) -> tuple[Session, FakeTransport, list[Session]]:
    transport = FakeTransport()
    closed: list[Session] = []

    async def on_closed(session: Session) -> None:
        closed.append(session)

    session = Session(
        "gw-1-1", transport, GatewaySettings.model_validate(settings), script, on_closed
    )
    session.start()
    return session, transport, closed


async def until(check: Callable[[], bool], timeout: float = 2.0) -> None:
    for _ in range(int(timeout / 0.001)):
        if check():
            return
        await asyncio.sleep(0.001)
    raise AssertionError("condition not reached")


async def settle() -> None:
    for _ in range(20):
        await asyncio.sleep(0)


def is_idle(session: Session) -> bool:
    return session._task is None and session._lines is None and session._inflight is None


async def test_an_idle_logged_in_session_keeps_no_task_queue_timer_or_buffer() -> None:
    session, transport, _ = make_session(Script())
    assert is_idle(session)
    assert session._login_timer is not None
    session.feed([b"AUTH", b"PING"])
    await until(lambda: len(transport.written) == 2)
    await settle()
    assert transport.written == ["+OK uid=1", "+OK pong"]
    assert is_idle(session)
    assert session._login_timer is None  # logged in: the deadline is met
    assert session._out is None and session._held is None and session._reply_seqs is None
    assert not hasattr(session, "__dict__")


async def test_pipelined_replies_stay_in_order_when_the_loop_goes_idle_between() -> None:
    script = Script()
    session, transport, _ = make_session(script)
    script.gate.clear()
    session.feed([b"SEND 1", b"SEND 2"])
    await until(lambda: session._task is None)  # both started, neither answered
    session.feed([b"PING"])
    await until(lambda: session._task is None)
    assert transport.written == []  # the pong waits for the sends before it
    script.gate.set()
    await until(lambda: len(transport.written) == 3)
    assert transport.written == ["+OK msg_id=1", "+OK msg_id=2", "+OK pong"]
    await settle()
    assert is_idle(session)


async def test_queued_sends_answer_in_order_in_one_write_whatever_order_they_commit() -> None:
    script = Script()
    session, transport, _ = make_session(script)
    session.feed([b"QUEUED 1", b"QUEUED 2", b"QUEUED 3", b"PING"])
    # Only the oldest carries the callback that answers them all.
    for n in ("2", "3"):
        assert script.queued[n].remove_done_callback(session._write_ready_replies) == 0
    for n in ("3", "2"):  # the later sends are done first: nothing may be written
        script.queued[n].set_result(f"+OK msg_id={n}")
    await settle()
    assert transport.written == []
    script.queued["1"].set_result("+OK msg_id=1")
    await until(lambda: len(transport.written) == 4)
    assert transport.written == ["+OK msg_id=1", "+OK msg_id=2", "+OK msg_id=3", "+OK pong"]
    assert transport.writes == 1
    await settle()
    assert is_idle(session)
    assert session._armed is None  # an idle session holds no finished future


async def test_a_cancelled_queued_send_is_skipped_and_the_rest_still_answer() -> None:
    script = Script()
    session, transport, _ = make_session(script)
    session.feed([b"QUEUED 1", b"QUEUED 2"])
    script.queued["2"].set_result("+OK msg_id=2")
    script.queued["1"].cancel()
    await until(lambda: transport.written == ["+OK msg_id=2"])
    session.feed([b"QUEUED 3"])  # a new first send after the connection went idle
    script.queued["3"].set_result("+OK msg_id=3")
    await until(lambda: len(transport.written) == 2)
    assert transport.written == ["+OK msg_id=2", "+OK msg_id=3"]
    session.feed([b"QUEUED 4", b"QUEUED 5"])
    for n in ("4", "5"):  # in order, one at a time: each answers on its own
        script.queued[n].set_result(f"+OK msg_id={n}")
        await until(lambda n=n: transport.written[-1] == f"+OK msg_id={n}")


async def test_a_command_after_pipelined_sends_runs_after_their_replies() -> None:
    script = Script()
    session, transport, _ = make_session(script)
    script.gate.clear()
    session.feed([b"SEND 1"])
    await until(lambda: session._task is None)
    session.feed([b"SLOW"])
    await settle()
    script.gate.set()
    await until(lambda: len(transport.written) == 2)
    assert transport.written == ["+OK msg_id=1", "+OK slow"]


async def test_reading_pauses_beyond_max_pending_and_resumes_at_half() -> None:
    script = Script()
    session, transport, _ = make_session(script, max_pending_commands=4)
    script.gate.clear()
    session.feed([b"SLOW", b"PING", b"PING"])
    assert transport.reading
    session.feed([b"PING"])
    assert not transport.reading and transport.pauses == 1
    await settle()
    assert script.executed == ["SLOW"]
    assert not transport.reading  # three still queued: more than half the limit
    script.gate.set()
    await until(lambda: len(transport.written) == 4)
    assert transport.reading
    assert transport.written == ["+OK slow"] + ["+OK pong"] * 3


async def not_reading_after_one_ping() -> tuple[Script, Session, FakeTransport, list[Session]]:
    """A session whose client stopped reading: of two PINGs, one has run."""
    script = Script()
    session, transport, closed = make_session(script)
    session.pause_writing()
    session.feed([b"PING", b"PING"])
    await settle()
    assert script.executed == ["PING"]  # the second waits for the client
    return script, session, transport, closed


async def test_commands_wait_while_the_client_is_not_reading_its_replies() -> None:
    script, session, transport, _ = await not_reading_after_one_ping()
    session.resume_writing()
    await until(lambda: len(transport.written) == 2)
    assert script.executed == ["PING", "PING"]
    await settle()
    assert is_idle(session)


async def test_a_session_that_never_logs_in_is_closed_at_the_timeout() -> None:
    session, transport, closed = make_session(Script(), login_timeout_seconds=0.05)
    session.feed([b"PING"])
    await until(lambda: transport.closed)
    assert transport.written == ["+OK pong", "-ERR login timeout"]
    assert closed == [session]


async def test_a_logged_in_session_outlives_the_login_timeout() -> None:
    session, transport, closed = make_session(Script(), login_timeout_seconds=0.05)
    session.feed([b"AUTH"])
    await asyncio.sleep(0.2)
    assert not transport.closed and not closed
    assert transport.written == ["+OK uid=1"]


async def test_shutdown_of_an_idle_session_sends_the_notice_and_closes_once() -> None:
    session, transport, closed = make_session(Script())
    session.feed([b"AUTH"])
    await until(lambda: is_idle(session) and bool(transport.written))
    await session.shutdown(1.0, "-ERR server shutting down")
    assert transport.written == ["+OK uid=1", "-ERR server shutting down"]
    assert transport.closed and closed == [session]
    await session.shutdown(1.0, "-ERR server shutting down")  # again: nothing more
    assert closed == [session]


async def test_shutdown_lets_the_running_command_finish_and_drops_the_queued_ones() -> None:
    script = Script()
    session, transport, closed = make_session(script)
    script.gate.clear()
    session.feed([b"SLOW", b"PING"])
    await settle()
    stopping = asyncio.create_task(session.shutdown(1.0, "-ERR server shutting down"))
    await settle()
    script.gate.set()
    await stopping
    assert transport.written == ["+OK slow", "-ERR server shutting down"]
    assert script.executed == ["SLOW"]
    assert closed == [session]


async def test_a_lost_idle_connection_is_cleaned_up() -> None:
    session, transport, closed = make_session(Script())
    session.feed([b"AUTH"])
    await until(lambda: is_idle(session) and bool(transport.written))
    session.connection_lost()
    await until(lambda: bool(closed))
    assert closed == [session]
    assert transport.written == ["+OK uid=1"]


async def test_a_lost_connection_waits_for_its_pipelined_sends_before_cleanup() -> None:
    script = Script()
    session, _, closed = make_session(script)
    script.gate.clear()
    session.feed([b"SEND 1"])
    await until(lambda: session._task is None)
    session.connection_lost()
    await settle()
    assert not closed  # the send is still being stored
    script.gate.set()
    await until(lambda: bool(closed))


async def test_close_with_answers_what_came_before_then_closes() -> None:
    script = Script()
    session, transport, closed = make_session(script)
    script.gate.clear()
    session.feed([b"SEND 1", b"PING"])
    session.close_with("-ERR line too long")
    await settle()
    script.gate.set()
    await until(lambda: transport.closed)
    assert transport.written == ["+OK msg_id=1", "+OK pong", "-ERR line too long"]
    assert closed == [session]


async def test_close_with_cuts_off_a_client_that_is_not_reading_its_replies() -> None:
    # Queued behind a command that waits for the client to read, the close
    # would never come: the idle timeout could not end such a connection.
    script, session, transport, closed = await not_reading_after_one_ping()
    session.close_with("-ERR idle timeout")
    await until(lambda: closed == [session])
    assert transport.aborted
    assert script.executed == ["PING"]
    assert "-ERR idle timeout" not in transport.written


async def test_pushes_held_during_a_multi_line_reply_follow_it() -> None:
    session, transport, _ = make_session(Script())
    session.feed([b"AUTH"])
    await until(lambda: bool(transport.written))
    with session.holding_pushes():
        session.write_message_lines([(1, "MSG 1")])
        assert session.push(1, "MSG 1 again")  # carried by the reply: dropped
        assert session.push(2, "MSG 2")
        session.write_line("+OK pull_done")
    await settle()
    assert transport.written == ["+OK uid=1", "MSG 1", "+OK pull_done", "MSG 2"]
    assert session._held is None and session._reply_seqs is None


async def test_a_reader_whose_held_pushes_pass_the_limit_is_dropped(
    caplog: pytest.LogCaptureFixture,
) -> None:
    session, transport, _ = make_session(Script(), max_output_bytes=64 * 1024)
    session.feed([b"AUTH"])
    await until(lambda: bool(transport.written))
    line = "x" * 1000
    with session.holding_pushes():
        taken = [session.push(seq, line) for seq in range(100)]
    assert taken[:60] == [True] * 60 and not taken[-1]
    assert session.dropped_slow and transport.aborted
    # Logged once, with the connection and user as fields (not in the text).
    [record] = [r for r in caplog.records if r.getMessage() == "slow consumer disconnected"]
    assert (record.conn, record.uid) == (session.conn_id, session.uid)  # type: ignore[attr-defined]
    assert record.unsent_bytes > 64 * 1024  # type: ignore[attr-defined]


class RecordedMarks:
    """The hub's message service: keeps the delivery marks it is sent."""

    def __init__(self) -> None:
        self.marks: list[tuple[int, int]] = []

    async def MarkDelivered(self, request: message_pb2.MarkDeliveredRequest) -> common_pb2.Empty:
        self.marks += zip(request.uids, request.seqs, strict=True)
        return common_pb2.Empty()


def push_batch(*recipients: tuple[int, int]) -> PushBatch:
    message = PushedMessage(7, common_pb2.MESSAGE_KIND_DIRECT, 9, 0, 1, "hi")
    uids = [uid for uid, _ in recipients]
    return [Delivery(message, uids, [seq for _, seq in recipients])]


async def logged_in(uid: int) -> tuple[Session, FakeTransport]:
    session, transport, _ = make_session(Script())
    session.feed([b"AUTH"])
    await until(lambda: bool(transport.written))
    session.uid = uid
    transport.written.clear()
    return session, transport


async def test_the_hub_pushes_to_one_or_several_sessions_of_a_user() -> None:
    messages = RecordedMarks()
    hub = SessionHub(cast(MessageService, messages))
    (a, a_out), (b, b_out), (c, c_out) = [await logged_in(uid) for uid in (1, 1, 2)]
    hub.add(1, a)
    hub.add(2, c)
    assert hub._by_uid == {1: a, 2: c}  # one device: no list
    hub.add(1, b)
    hub.on_push(push_batch((1, 5), (2, 3)))
    await settle()
    line = "MSG id=7 from=9 ts=1 seq={} text=hi"
    assert a_out.written == b_out.written == [line.format(5)]
    assert c_out.written == [line.format(3)]
    hub.remove(1, a)
    assert hub._by_uid == {1: b, 2: c}
    hub.on_push(push_batch((1, 6)))
    await settle()
    assert a_out.written == [line.format(5)]
    assert b_out.written == [line.format(5), line.format(6)]
    hub.remove(1, a)  # not there any more: no effect
    hub.remove(1, b)
    hub.remove(2, c)
    assert hub._by_uid == {}
    assert hub.pushed == 3
    await hub.stop()
    assert messages.marks == [(1, 5), (2, 3), (1, 6)]
