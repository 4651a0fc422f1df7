"""The protocol over real WebSocket connections, and the HTTP side of the same port."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed
from websockets.frames import CloseCode
from websockets.http11 import Request

from mpim.gateway.http import CSP, HttpReply, HttpServer
from mpim.gateway.session import Session
from mpim.gateway.transport import Transport
from mpim.protocol.messages import MessageLine
from tests.conftest import RunningServer, ServerFactory
from tests.support.lineclient import Account, unique_name

TIMEOUT = 10.0
SMALL_LINE = 1024  # max_line_bytes for the limit tests, so frames stay small


class WsClient:
    """Speaks the line protocol over a real WebSocket: one line per text frame."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.greeting = ""
        self.account: Account | None = None
        self.close_reason: str | None = None

    @classmethod
    async def connect(cls, port: int) -> WsClient:
        ws = await connect(f"ws://127.0.0.1:{port}/ws", max_size=None, open_timeout=TIMEOUT)
        client = cls(ws)
        client.greeting = await client.read_line()
        return client

    async def send(self, data: str | bytes) -> None:
        await self.ws.send(data)

    async def read_line(self, timeout: float = TIMEOUT) -> str:
        message = await asyncio.wait_for(self.ws.recv(), timeout)
        assert isinstance(message, str), f"server sent a binary frame: {message!r}"
        assert "\n" not in message, "one line per frame"
        return message

    async def cmd(self, line: str) -> str:
        await self.send(line)
        return await self.read_line()

    async def cmd_multi(self, line: str) -> tuple[list[str], str]:
        await self.send(line)
        lines: list[str] = []
        while True:
            reply = await self.read_line()
            if reply[0] in "+-":
                return lines, reply
            lines.append(reply)

    async def register(self, username: str | None = None, password: str = "secret1") -> Account:
        username = username or unique_name("w")
        reply = await self.cmd(f"REGISTER {username} {password}")
        assert reply.startswith("+OK uid="), reply
        fields = dict(part.split("=", 1) for part in reply[4:].split())
        self.account = Account(int(fields["uid"]), fields["token"], username, password)
        return self.account

    async def expect_closed(self, timeout: float = TIMEOUT) -> tuple[list[str], int | None]:
        """Read until the server closes; (lines that came first, close code)."""
        lines: list[str] = []
        try:
            while True:
                message = await asyncio.wait_for(self.ws.recv(), timeout)
                lines.append(message if isinstance(message, str) else repr(message))
        except ConnectionClosed as exc:
            self.close_reason = exc.rcvd.reason if exc.rcvd is not None else None
            return lines, exc.rcvd.code if exc.rcvd is not None else None

    async def close(self) -> None:
        with contextlib.suppress(ConnectionClosed, OSError):
            await self.ws.close()


@dataclass
class WsEnv:
    """A running server with its HTTP port, and a way to open WebSocket clients."""

    server: RunningServer
    clients: list[WsClient]

    @property
    def http_port(self) -> int:
        return self.server.runtime.gateway.http_port

    async def client(self) -> WsClient:
        client = await WsClient.connect(self.http_port)
        self.clients.append(client)
        return client

    async def user(self) -> WsClient:
        client = await self.client()
        await client.register()
        return client


async def _env(server_factory: ServerFactory, **gateway: Any) -> AsyncIterator[WsEnv]:
    server = await server_factory(gateway={"http_port": 0, **gateway})
    env = WsEnv(server, [])
    yield env
    for client in env.clients:
        await client.close()


@pytest.fixture
async def env(server_factory: ServerFactory) -> AsyncIterator[WsEnv]:
    async for value in _env(server_factory):
        yield value


@pytest.fixture
async def small_env(server_factory: ServerFactory) -> AsyncIterator[WsEnv]:
    async for value in _env(server_factory, max_line_bytes=SMALL_LINE):
        yield value


def _fields(reply: str) -> dict[str, str]:
    return dict(part.split("=", 1) for part in reply[4:].split() if "=" in part)


# -- the protocol over WebSocket ---------------------------------------------------


async def test_greets_and_answers_ping_like_tcp(env: WsEnv) -> None:
    ws = await env.client()
    tcp = await env.server.client()
    assert ws.greeting == tcp.greeting
    assert ws.greeting.startswith("+OK welcome mpim")
    assert await ws.cmd("PING") == "+OK pong"
    assert await ws.cmd("ping") == "+OK pong"


async def test_every_command_works_over_websocket(env: WsEnv) -> None:
    alice = await env.client()
    bob = await env.client()
    assert await alice.cmd("GETFRIENDS") == "-ERR not login"
    a = await alice.register()
    b = await bob.register()

    # LOGIN and AUTH on fresh connections; LOGOUT revokes that token only.
    other = await env.client()
    login = await other.cmd(f"LOGIN {a.username} {a.password}")
    assert login.startswith(f"+OK uid={a.uid} token=")
    assert await other.cmd("LOGOUT") == "+OK logout success"
    assert await other.cmd(f"AUTH {_fields(login)['token']}") == "-ERR auth failed"
    assert await other.cmd(f"AUTH {a.token}") == f"+OK uid={a.uid}"
    assert await other.cmd(f"LOGIN {a.username} wrongpass") == "-ERR auth failed"

    # Friends.
    assert await alice.cmd(f"ADDFRIEND {b.uid}") == "+OK friend added"
    assert await bob.cmd("GETFRIENDS") == f"+OK friends: {a.uid}"
    assert await alice.cmd(f"STATUS {b.uid}") == f"+OK uid={b.uid} online=1"
    assert await alice.cmd(f"REMOVEFRIEND {b.uid}") == "+OK friend removed"
    assert await alice.cmd(f"REMOVEFRIEND {b.uid}") == "-ERR not friends"
    assert await alice.cmd("GETFRIENDS") == "+OK friends: "

    # One-to-one messages: push, idempotent retry, PULL, SYNC, HISTORY.
    sent = await alice.cmd(f"@cid=c-1 SEND {b.uid}   hello  there ")
    assert sent.startswith("+OK msg_id=")
    assert await alice.cmd(f"@cid=c-1 SEND {b.uid} hello again") == sent
    push = MessageLine.parse(await bob.read_line())
    assert (push.sender, push.seq, push.text) == (a.uid, 1, "hello  there ")
    assert push.id == int(_fields(sent)["msg_id"])
    assert await bob.cmd_multi("PULL") == ([], "+OK pull_done")
    lines, done = await bob.cmd_multi("SYNC 0")
    assert done == "+OK sync_done seq=1"
    assert [MessageLine.parse(line).text for line in lines] == ["hello  there "]
    lines, done = await alice.cmd_multi(f"HISTORY {b.uid} 10")
    assert done == "+OK history_done"
    assert [MessageLine.parse(line).seq for line in lines] == [0]  # my own message

    # Groups.
    created = await alice.cmd("CREATEGROUP weekend a trip  plan ")
    gid = int(_fields(created)["group_id"])
    assert await bob.cmd(f"JOINGROUP {gid}") == "+OK joined group"
    assert await bob.cmd(f"JOINGROUP {gid}") == "-ERR already member"
    assert await bob.cmd("GROUPS") == f"+OK groups: {gid}"
    assert await alice.cmd(f"MEMBERS {gid}") == f"+OK members: {a.uid},{b.uid}"
    assert (await bob.cmd(f"SENDGROUP {gid} hi all")).startswith("+OK group_msg_id=")
    gpush = MessageLine.parse(await alice.read_line())
    assert (gpush.group_id, gpush.sender, gpush.text) == (gid, b.uid, "hi all")
    lines, done = await alice.cmd_multi(f"HISTORY g{gid}")
    assert done == "+OK history_done" and len(lines) == 1
    assert await bob.cmd(f"LEAVEGROUP {gid}") == "+OK left group"
    assert await bob.cmd(f"SENDGROUP {gid} still here?") == "-ERR not member"

    # Errors are specific, and QUIT answers then closes.
    assert await alice.cmd("SEND x hi") == "-ERR bad uid"
    assert await alice.cmd("FROB") == "-ERR unknown command"
    await alice.send("QUIT")
    lines_, code = await alice.expect_closed()
    assert lines_ == ["+OK bye"]
    assert code == CloseCode.NORMAL_CLOSURE


async def test_user_on_tcp_and_websocket_gets_pushes_on_both(env: WsEnv) -> None:
    sender = await env.user()
    assert sender.account is not None
    tcp = await env.server.user()
    assert tcp.account is not None
    ws = await env.client()
    assert await ws.cmd(f"AUTH {tcp.account.token}") == f"+OK uid={tcp.account.uid}"

    await sender.cmd(f"SEND {tcp.account.uid} to both devices")
    ws_line = await ws.read_line()
    tcp_line = await tcp.read_line()
    assert ws_line == tcp_line
    assert MessageLine.parse(ws_line).text == "to both devices"

    # And the other way: a TCP sender reaches a WebSocket reader, in order.
    for i in range(20):
        assert (await tcp.cmd(f"SEND {sender.account.uid} m{i}")).startswith("+OK msg_id=")
    got = [MessageLine.parse(await sender.read_line()).text for _ in range(20)]
    assert got == [f"m{i}" for i in range(20)]


async def test_pipelined_commands_are_answered_in_order(env: WsEnv) -> None:
    alice = await env.user()
    bob = await env.user()
    assert bob.account is not None
    for i in range(50):
        await alice.send(f"SEND {bob.account.uid} n{i}" if i % 2 else "PING")
    replies = [await alice.read_line() for _ in range(50)]
    assert all(r == "+OK pong" for r in replies[::2])
    assert all(r.startswith("+OK msg_id=") for r in replies[1::2])
    lines, done = await bob.cmd_multi("SYNC 0")
    # Live pushes may come before the SYNC reply; the reply itself has all 25.
    assert done == "+OK sync_done seq=25"
    texts = {MessageLine.parse(line).text for line in lines}
    assert texts == {f"n{i}" for i in range(1, 50, 2)}


async def test_frame_holding_several_lines_is_split_like_a_tcp_stream(env: WsEnv) -> None:
    ws = await env.client()
    await ws.send("PING\nPING\r\n")
    assert [await ws.read_line(), await ws.read_line()] == ["+OK pong", "+OK pong"]
    await ws.send("PING\r")
    assert await ws.read_line() == "+OK pong"
    await ws.send("")  # an empty frame is an empty line: ignored
    await ws.send("   ")
    assert await ws.cmd("PING") == "+OK pong"


async def test_nul_and_junk_get_one_err_each_and_the_connection_lives(env: WsEnv) -> None:
    ws = await env.client()
    assert await ws.cmd("PI\x00NG") == "-ERR invalid character"
    assert await ws.cmd("HELLO") == "-ERR unknown command"
    assert await ws.cmd("PING extra") == "-ERR too many arguments"
    assert await ws.cmd("\u00e9\u00e8 \U0001f600") == "-ERR unknown command"
    assert await ws.cmd("PING") == "+OK pong"


async def test_overlong_line_gets_err_line_too_long_then_close(small_env: WsEnv) -> None:
    ws = await small_env.client()
    await ws.send("PING")
    await ws.send("PING " + "x" * SMALL_LINE)
    await ws.send("PING")  # after the bad line: never executed
    lines, code = await ws.expect_closed()
    assert lines == ["+OK pong", "-ERR line too long"]
    assert code == CloseCode.MESSAGE_TOO_BIG
    assert ws.close_reason == "line too long"


async def test_line_at_the_limit_is_accepted(small_env: WsEnv) -> None:
    ws = await small_env.user()
    line = "SEND 999999 " + "y" * (SMALL_LINE - len("SEND 999999 "))
    assert len(line.encode()) == SMALL_LINE
    assert await ws.cmd(line) == "-ERR no such user"


async def test_oversized_frame_is_refused_by_the_websocket_layer(small_env: WsEnv) -> None:
    ws = await small_env.client()
    assert await ws.cmd("PING") == "+OK pong"
    await ws.send("x" * (4 * SMALL_LINE))
    lines, code = await ws.expect_closed()
    assert lines == []
    assert code == CloseCode.MESSAGE_TOO_BIG
    # The server is fine.
    other = await small_env.client()
    assert await other.cmd("PING") == "+OK pong"


async def test_binary_frame_gets_err_after_earlier_replies_then_close_1003(env: WsEnv) -> None:
    ws = await env.client()
    await ws.send("PING")
    await ws.send(b"PING")
    await ws.send("PING")
    lines, code = await ws.expect_closed()
    assert lines == ["+OK pong", "-ERR binary frames not supported"]
    assert code == CloseCode.UNSUPPORTED_DATA
    assert ws.close_reason == "binary frames not supported"


async def test_client_ping_gets_a_pong(env: WsEnv) -> None:
    ws = await env.client()
    pong = await ws.ws.ping(b"are you there")
    latency = await asyncio.wait_for(pong, TIMEOUT)
    assert latency >= 0
    assert await ws.cmd("PING") == "+OK pong"


async def test_abrupt_close_logs_the_user_out(env: WsEnv) -> None:
    watcher = await env.server.user()
    ws = await env.client()
    account = await ws.register()
    assert await watcher.cmd(f"STATUS {account.uid}") == f"+OK uid={account.uid} online=1"
    await ws.send(f"SEND {account.uid} half")  # in flight while the socket dies
    ws.ws.transport.abort()
    status = ""
    for _ in range(200):  # until the server has seen the drop
        status = await watcher.cmd(f"STATUS {account.uid}")
        if status.endswith("online=0"):
            break
        await asyncio.sleep(0.02)
    assert status == f"+OK uid={account.uid} online=0"
    # Messages sent meanwhile wait in the inbox.
    await watcher.cmd(f"SEND {account.uid} while away")
    back = await env.client()
    assert await back.cmd(f"AUTH {account.token}") == f"+OK uid={account.uid}"
    lines, _ = await back.cmd_multi("SYNC 0")
    assert "while away" in [MessageLine.parse(line).text for line in lines]


async def test_slow_websocket_reader_is_dropped_and_keeps_its_messages(
    server_factory: ServerFactory,
) -> None:
    server = await server_factory(gateway={"http_port": 0, "max_output_bytes": 64 * 1024})
    port = server.runtime.gateway.http_port
    slow = await WsClient.connect(port)
    account = await slow.register()
    # Stop reading at the socket, as a stuck browser tab would.
    slow.ws.transport.pause_reading()
    sender = await server.user()
    text = "z" * 8000
    sent = 0
    status = ""
    for _ in range(4000):
        assert (await sender.cmd(f"SEND {account.uid} {text}")).startswith("+OK")
        sent += 1
        if sent % 50 == 0:
            status = await sender.cmd(f"STATUS {account.uid}")
            if status.endswith("online=0"):
                break
    assert status.endswith("online=0"), "a reader that never reads must be disconnected"
    again = await WsClient.connect(port)
    assert await again.cmd(f"AUTH {account.token}") == f"+OK uid={account.uid}"
    _, done = await again.cmd_multi(f"SYNC {sent}")
    assert done == f"+OK sync_done seq={sent}"
    await again.close()
    with contextlib.suppress(Exception):
        slow.ws.transport.abort()


async def test_graceful_shutdown_tells_websocket_clients(server_factory: ServerFactory) -> None:
    server = await server_factory(gateway={"http_port": 0})
    ws = await WsClient.connect(server.runtime.gateway.http_port)
    await ws.register()
    await server.runtime.stop()
    lines, code = await ws.expect_closed()
    assert lines == ["-ERR server shutting down"]
    assert code == CloseCode.NORMAL_CLOSURE
    server.runtime = _Stopped()  # type: ignore[assignment]


class _Stopped:
    """Stands in for a runtime this test already stopped."""

    async def stop(self) -> None:
        return None


async def test_server_keepalive_closes_a_peer_that_never_answers_pings(env: WsEnv) -> None:
    gateway = env.server.runtime.gateway
    settings = gateway.settings.model_copy(update={"http_port": 0})

    async def closed(session: Session) -> None:
        return None

    def make_session(transport: Transport) -> Session:
        return Session("keepalive", transport, settings, gateway.dispatcher.begin, closed)

    http = HttpServer(settings, make_session, "+OK hi", ping_interval=0.1, ping_timeout=0.2)
    await http.start()
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", http.port)
        writer.write(
            b"GET /ws HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), TIMEOUT)
        assert head.startswith(b"HTTP/1.1 101")
        # Never answer the pings: the server gives up and closes the socket.
        rest = await asyncio.wait_for(reader.read(), TIMEOUT)
        assert b"+OK hi" in rest
        writer.close()
    finally:
        http.close()
        await http.wait_closed()


# -- HTTP on the same port -----------------------------------------------------------


async def http_request(
    port: int, path: str, method: str = "GET"
) -> tuple[int, dict[str, str], bytes]:
    """A raw HTTP/1.1 request: the path goes on the wire exactly as given."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"{method} {path} HTTP/1.1\r\nHost: localhost\r\n\r\n".encode())
    raw = await asyncio.wait_for(reader.read(), TIMEOUT)
    writer.close()
    head, _, body = raw.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode().split("\r\n")
    headers = {}
    for line in header_lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return int(status_line.split()[1]), headers, body


async def test_web_client_files_are_served_with_types_and_security_headers(env: WsEnv) -> None:
    status, headers, body = await http_request(env.http_port, "/")
    assert status == 200
    assert headers["content-type"] == "text/html; charset=utf-8"
    assert headers["content-security-policy"] == CSP
    assert headers["x-content-type-options"] == "nosniff"
    assert int(headers["content-length"]) == len(body)
    assert b"<html" in body
    for path, content_type in [
        ("/js/app.js", "text/javascript; charset=utf-8"),
        ("/style.css?v=2", "text/css; charset=utf-8"),
        ("/favicon.svg", "image/svg+xml"),
        ("/index.html", "text/html; charset=utf-8"),
    ]:
        status, headers, body = await http_request(env.http_port, path)
        assert (status, headers["content-type"]) == (200, content_type), path
        assert body
    status, headers, body = await http_request(env.http_port, "/js/app.js", "HEAD")
    assert status == 200 and int(headers["content-length"]) > 0 and body == b""
    status, _, _ = await http_request(env.http_port, "/", "POST")
    assert status == HTTPStatus.METHOD_NOT_ALLOWED
    status, _, _ = await http_request(env.http_port, "/no-such-file.js")
    assert status == HTTPStatus.NOT_FOUND


@pytest.mark.parametrize(
    "path",
    [
        "/../pyproject.toml",
        "/../../pyproject.toml",
        "/js/../../gateway/http.py",
        "/%2e%2e/config.py",
        "/%2E%2E%2Fconfig.py",
        "/..%2f..%2fpyproject.toml",
        "/js/%2e%2e/%2e%2e/__init__.py",
        "//etc/passwd",
        "/%2fetc%2fpasswd",
        "/..\\config.py",
        "/./index.html",
        "/.hidden",
        "/js/",
    ],
)
async def test_path_traversal_is_refused(env: WsEnv, path: str) -> None:
    status, _, body = await http_request(env.http_port, path)
    assert status in (HTTPStatus.BAD_REQUEST, HTTPStatus.NOT_FOUND), (path, status)
    assert b"import" not in body and b"root:" not in body and b"[project]" not in body


async def test_plain_http_get_of_ws_path_is_not_upgraded(env: WsEnv) -> None:
    status, _, _ = await http_request(env.http_port, "/ws")
    assert status == HTTPStatus.UPGRADE_REQUIRED


async def test_routes_plug_into_the_same_port(env: WsEnv) -> None:
    http = env.server.runtime.gateway.http
    assert http is not None

    def healthz(request: Request) -> HttpReply:
        return HttpReply.text(HTTPStatus.OK, "ok\n")

    async def readyz(request: Request) -> HttpReply:
        return HttpReply(HTTPStatus.SERVICE_UNAVAILABLE, b"{}", "application/json")

    http.add_route("/healthz", healthz)
    http.add_route("/readyz", readyz)
    assert (await http_request(env.http_port, "/healthz?verbose=1"))[::2] == (200, b"ok\n")
    status, headers, body = await http_request(env.http_port, "/readyz")
    assert (status, headers["content-type"], body) == (503, "application/json", b"{}")
    with pytest.raises(ValueError):
        http.add_route("/ws", healthz)


async def test_http_can_be_disabled(server_factory: ServerFactory) -> None:
    server = await server_factory(gateway={"http_enabled": False})
    assert server.runtime.gateway.http is None
    client = await server.client()
    assert await client.cmd("PING") == "+OK pong"
