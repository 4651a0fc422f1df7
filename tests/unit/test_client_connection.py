"""MpimConnection against a scripted fake server on a real localhost socket.

The fake server lets each test decide exactly which bytes arrive when, which a
real server cannot (races between pushes and replies, broken servers).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from mpim.client.connection import (
    MAX_LINE_BYTES,
    MpimConnection,
    ProtocolError,
    command_word,
    redact,
)

STEP = 5.0  # generous bound for any single awaited step; never a sleep


class FakeServer:
    """Accepts one client; records its lines; sends what the test says."""

    def __init__(self, greeting: bytes = b"+OK welcome fake\r\n") -> None:
        self.greeting = greeting
        self.lines: asyncio.Queue[str] = asyncio.Queue()
        self.accepted = asyncio.Event()
        self.writer: asyncio.StreamWriter | None = None
        self.port = 0
        self._server: asyncio.Server | None = None
        self._handlers: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._on_client, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _on_client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.writer = writer
        writer.write(self.greeting)
        self.accepted.set()
        while raw := await reader.readline():
            await self.lines.put(raw.decode().rstrip("\n"))

    async def expect(self) -> str:
        async with asyncio.timeout(STEP):
            return await self.lines.get()

    def send(self, *lines: str | bytes) -> None:
        assert self.writer is not None
        for line in lines:
            self.writer.write(line if isinstance(line, bytes) else line.encode() + b"\n")

    async def drop(self) -> None:
        assert self.writer is not None
        self.writer.close()
        await self.writer.wait_closed()

    async def stop(self) -> None:
        if self.writer is not None:
            self.writer.close()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()


@pytest.fixture
async def fake() -> AsyncIterator[FakeServer]:
    server = FakeServer()
    await server.start()
    yield server
    await server.stop()


class Pushes(list[str]):
    """Pushed lines, with a way to wait for the n-th one."""

    def __init__(self) -> None:
        super().__init__()
        self._changed = asyncio.Event()

    def __call__(self, line: str) -> None:
        self.append(line)
        self._changed.set()

    async def wait_for(self, count: int) -> None:
        async with asyncio.timeout(STEP):
            while len(self) < count:
                self._changed.clear()
                await self._changed.wait()


@pytest.fixture
async def pushes() -> Pushes:
    return Pushes()


@pytest.fixture
async def conn(fake: FakeServer, pushes: Pushes) -> AsyncIterator[MpimConnection]:
    connection = await MpimConnection.open("127.0.0.1", fake.port, on_push=pushes)
    async with asyncio.timeout(STEP):
        await fake.accepted.wait()
    yield connection
    await connection.close()


async def test_open_reads_the_greeting(conn: MpimConnection) -> None:
    assert conn.greeting == "+OK welcome fake"
    assert not conn.closed


async def test_single_line_reply(fake: FakeServer, conn: MpimConnection) -> None:
    task = asyncio.create_task(conn.command("PING"))
    assert await fake.expect() == "PING"
    fake.send("+OK pong")
    reply = await task
    assert reply.ok and reply.status == "+OK pong" and reply.lines == []


async def test_pipelined_replies_match_commands_in_order(
    fake: FakeServer, conn: MpimConnection
) -> None:
    tasks = [asyncio.create_task(conn.command(c)) for c in ("PING", "GETFRIENDS", "SEND 9 x")]
    assert [await fake.expect() for _ in tasks] == ["PING", "GETFRIENDS", "SEND 9 x"]
    assert conn.pending == 3
    fake.send("+OK pong", "+OK friends: 3", "-ERR no such user")
    replies = await asyncio.gather(*tasks)
    assert [r.status for r in replies] == ["+OK pong", "+OK friends: 3", "-ERR no such user"]
    assert [r.ok for r in replies] == [True, True, False]


async def test_multiline_reply_collects_message_lines(
    fake: FakeServer, conn: MpimConnection
) -> None:
    task = asyncio.create_task(conn.command("PULL"))
    await fake.expect()
    fake.send("MSG id=1 from=2 ts=3 seq=1 text=a", "GMSG id=2 group=1 from=2 ts=3 seq=2 text=b")
    fake.send("+OK pull_done")
    reply = await task
    assert reply.lines == [
        "MSG id=1 from=2 ts=3 seq=1 text=a",
        "GMSG id=2 group=1 from=2 ts=3 seq=2 text=b",
    ]
    assert reply.status == "+OK pull_done"


async def test_err_ends_a_multiline_reply(fake: FakeServer, conn: MpimConnection) -> None:
    task = asyncio.create_task(conn.command("history 5"))
    await fake.expect()
    fake.send("-ERR not login")
    reply = await task
    assert not reply.ok and reply.lines == []


async def test_push_between_replies_goes_to_on_push(
    fake: FakeServer, conn: MpimConnection, pushes: Pushes
) -> None:
    fake.send("MSG id=1 from=2 ts=3 seq=1 text=pushed")
    task = asyncio.create_task(conn.command("PING"))
    await fake.expect()
    fake.send("MSG id=2 from=2 ts=3 seq=2 text=also pushed", "+OK pong")
    assert (await task).lines == []
    assert pushes == [
        "MSG id=1 from=2 ts=3 seq=1 text=pushed",
        "MSG id=2 from=2 ts=3 seq=2 text=also pushed",
    ]


async def test_push_racing_a_pull_reply_is_taken_as_part_of_it(
    fake: FakeServer, conn: MpimConnection, pushes: Pushes
) -> None:
    # Documented ambiguity: the protocol cannot tell these apart.
    task = asyncio.create_task(conn.command("PULL"))
    await fake.expect()
    fake.send("MSG id=9 from=2 ts=3 seq=9 text=raced", "+OK pull_done")
    assert (await task).lines == ["MSG id=9 from=2 ts=3 seq=9 text=raced"]
    assert pushes == []


async def test_single_line_command_does_not_swallow_pushes(
    fake: FakeServer, conn: MpimConnection, pushes: Pushes
) -> None:
    pull = asyncio.create_task(conn.command("PING"))
    sync = asyncio.create_task(conn.command("SYNC 0"))
    await fake.expect()
    await fake.expect()
    fake.send("MSG id=1 from=2 ts=3 seq=1 text=push", "+OK pong")
    fake.send("MSG id=2 from=2 ts=3 seq=2 text=synced", "+OK sync_done seq=2")
    assert (await pull).lines == []
    assert (await sync).lines == ["MSG id=2 from=2 ts=3 seq=2 text=synced"]
    assert pushes == ["MSG id=1 from=2 ts=3 seq=1 text=push"]


async def test_status_line_with_nothing_pending_is_handed_to_on_push(
    fake: FakeServer, conn: MpimConnection, pushes: Pushes
) -> None:
    fake.send("-ERR server shutting down")
    await pushes.wait_for(1)
    task = asyncio.create_task(conn.command("PING"))
    await fake.expect()
    fake.send("+OK pong")
    assert (await task).status == "+OK pong"
    assert pushes == ["-ERR server shutting down"]


async def test_crlf_and_invalid_utf8_are_tolerated(fake: FakeServer, conn: MpimConnection) -> None:
    task = asyncio.create_task(conn.command("PING"))
    await fake.expect()
    fake.send(b"+OK p\xffng\r\n")
    assert (await task).status == "+OK p\ufffdng"


async def test_cancelled_command_still_consumes_its_reply(
    fake: FakeServer, conn: MpimConnection
) -> None:
    first = asyncio.create_task(conn.command("PULL"))
    await fake.expect()
    first.cancel()
    second = asyncio.create_task(conn.command("PING"))
    await fake.expect()
    fake.send("MSG id=1 from=2 ts=3 seq=1 text=a", "+OK pull_done", "+OK pong")
    assert (await second).status == "+OK pong"
    assert first.cancelled()


async def test_timeout_around_command_keeps_replies_aligned(
    fake: FakeServer, conn: MpimConnection
) -> None:
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.01):
            await conn.command("PING")
    await fake.expect()
    task = asyncio.create_task(conn.command("GROUPS"))
    await fake.expect()
    fake.send("+OK pong", "+OK groups: 1")
    assert (await task).status == "+OK groups: 1"


async def test_server_close_fails_pending_commands(fake: FakeServer, conn: MpimConnection) -> None:
    task = asyncio.create_task(conn.command("PULL"))
    await fake.expect()
    fake.send("MSG id=1 from=2 ts=3 seq=1 text=a", b"+OK pull_do")  # cut mid-line
    await fake.drop()
    with pytest.raises(ConnectionError, match="closed by server"):
        await task
    async with asyncio.timeout(STEP):
        await conn.wait_closed()
    assert conn.closed
    with pytest.raises(ConnectionError):
        await conn.command("PING")


async def test_close_fails_pending_and_refuses_new_commands(
    fake: FakeServer, conn: MpimConnection
) -> None:
    task = asyncio.create_task(conn.command("PING"))
    await fake.expect()
    await conn.close()
    with pytest.raises(ConnectionError, match="closed by client"):
        await task
    assert conn.closed
    with pytest.raises(ConnectionError):
        await conn.command("PING")
    await conn.close()  # idempotent


async def test_over_long_server_line_is_a_protocol_error(
    fake: FakeServer, conn: MpimConnection
) -> None:
    task = asyncio.create_task(conn.command("PING"))
    await fake.expect()
    fake.send(b"+OK " + b"x" * (MAX_LINE_BYTES + 10) + b"\n")
    with pytest.raises(ProtocolError, match="longer than"):
        await task
    assert conn.closed


async def test_line_just_under_the_limit_is_accepted(
    fake: FakeServer, conn: MpimConnection
) -> None:
    task = asyncio.create_task(conn.command("PULL"))
    await fake.expect()
    body = "MSG id=1 from=2 ts=3 seq=1 text=" + "y" * (64 * 1024)
    fake.send(body, "+OK pull_done")
    assert (await task).lines == [body]


async def test_reply_line_count_is_bounded(fake: FakeServer, pushes: Pushes) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", fake.port)
    await reader.readline()
    async with asyncio.timeout(STEP):
        await fake.accepted.wait()
    conn = MpimConnection(reader, writer, "+OK", on_push=pushes, max_reply_lines=2)
    try:
        task = asyncio.create_task(conn.command("SYNC 0"))
        await fake.expect()
        fake.send(*(f"MSG id={i} from=2 ts=3 seq={i} text=a" for i in range(1, 4)))
        with pytest.raises(ProtocolError, match="reply longer than 2 lines"):
            await task
    finally:
        await conn.close()


async def test_failing_push_handler_does_not_break_the_connection(fake: FakeServer) -> None:
    def explode(line: str) -> None:
        raise RuntimeError("handler bug")

    conn = await MpimConnection.open("127.0.0.1", fake.port, on_push=explode)
    try:
        async with asyncio.timeout(STEP):
            await fake.accepted.wait()
        fake.send("MSG id=1 from=2 ts=3 seq=1 text=a")
        task = asyncio.create_task(conn.command("PING"))
        await fake.expect()
        fake.send("+OK pong")
        assert (await task).ok
    finally:
        await conn.close()


@pytest.mark.parametrize("line", ["", "   ", "PING\nPING", "PING\r"])
async def test_lines_the_server_would_not_answer_once_are_refused(
    conn: MpimConnection, line: str
) -> None:
    with pytest.raises(ValueError):
        await conn.command(line)
    assert conn.pending == 0


async def test_greeting_must_be_ok() -> None:
    server = FakeServer(greeting=b"-ERR too many connections\n")
    await server.start()
    try:
        with pytest.raises(ProtocolError, match="refused"):
            await MpimConnection.open("127.0.0.1", server.port)
    finally:
        await server.stop()


async def test_unreachable_server_is_a_connection_error() -> None:
    server = FakeServer()
    await server.start()
    port = server.port
    await server.stop()
    with pytest.raises(ConnectionError):
        await MpimConnection.open("127.0.0.1", port, timeout=STEP)


@pytest.mark.parametrize(
    ("line", "word"),
    [("pull", "PULL"), ("@cid=abc SEND 5 hi", "SEND"), ("  sync 3", "SYNC"), ("", "")],
)
def test_command_word(line: str, word: str) -> None:
    assert command_word(line) == word


@pytest.mark.parametrize(
    ("line", "logged"),
    [
        ("LOGIN alice secret1", "LOGIN <redacted>"),
        ("register alice secret1", "REGISTER <redacted>"),
        ("AUTH abcdefghijklmnop", "AUTH <redacted>"),
        ("+OK uid=5 token=abc123", "+OK uid=5 token=<redacted>"),
        ("SEND 5 hi", "SEND 5 hi"),
    ],
)
def test_secrets_are_redacted_from_logs(line: str, logged: str) -> None:
    assert redact(line) == logged
