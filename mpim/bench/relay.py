"""The baseline: a minimal uvloop relay speaking the benchmarked subset of the protocol.

No storage, no services, no password hashing, no durability: a ``SEND`` is
pushed to the recipient's connections and acknowledged at once. It answers
REGISTER, LOGIN, AUTH, LOGOUT, SEND, SENDGROUP, CREATEGROUP, JOINGROUP, SYNC
and PULL (both return nothing — there is no inbox), PING and QUIT, with the
same reply and message-line shapes as protocol.md. Whatever MPIM does beyond
this is the price of its promises; the gap between the two is what the
benchmark tables show.

Output is coalesced per connection per event-loop iteration (one ``write`` for
all replies and pushes queued meanwhile), as any serious Python server would.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import re
import secrets
import signal
import socket
import time
from dataclasses import dataclass, field
from typing import Final, cast

from mpim.bench.addr import is_loopback
from mpim.bench.limits import raise_nofile_limit

logger = logging.getLogger(__name__)

MAX_LINE: Final = 64 * 1024
_USERNAME: Final = re.compile(rb"^[A-Za-z0-9_.-]{1,32}$")


@dataclass(eq=False)
class _User:
    uid: int
    name: bytes
    password: bytes
    seq: int = 0
    conns: set[RelayConnection] = field(default_factory=set)


class RelayState:
    """Users, tokens and groups, in memory only."""

    def __init__(self) -> None:
        self.by_key: dict[bytes, _User] = {}
        self.by_uid: dict[int, _User] = {}
        self.tokens: dict[bytes, _User] = {}
        self.groups: dict[int, set[int]] = {}
        self.connections: set[RelayConnection] = set()
        self._uids = itertools.count(1)
        self._gids = itertools.count(1)
        self._msg_ids = itertools.count(1)

    def new_user(self, name: bytes, password: bytes) -> _User:
        user = _User(next(self._uids), name, password)
        self.by_key[name.lower()] = user
        self.by_uid[user.uid] = user
        return user

    def new_token(self, user: _User) -> bytes:
        token = secrets.token_urlsafe(24).encode()
        self.tokens[token] = user
        return token

    def new_group(self, owner: int) -> int:
        gid = next(self._gids)
        self.groups[gid] = {owner}
        return gid

    def msg_id(self) -> int:
        return next(self._msg_ids)


class RelayConnection(asyncio.Protocol):
    """One client: split lines, answer each, push to recipients' connections."""

    def __init__(self, state: RelayState) -> None:
        self.state = state
        self.user: _User | None = None
        self.token: bytes | None = None
        self.transport: asyncio.Transport | None = None
        self._buf = b""
        self._out: list[bytes] = []
        self._flush_scheduled = False
        self._loop = asyncio.get_running_loop()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        self.state.connections.add(self)
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.queue(b"+OK welcome mpim-relay\n")

    def connection_lost(self, exc: Exception | None) -> None:
        self._logout()
        self.state.connections.discard(self)
        self.transport = None

    def data_received(self, data: bytes) -> None:
        buf = self._buf + data if self._buf else data
        lines = buf.split(b"\n")
        self._buf = lines.pop()
        if len(self._buf) > MAX_LINE:
            self.queue(b"-ERR line too long\n")
            self._close_after_flush()
            return
        for line in lines:
            if line[-1:] == b"\r":
                line = line[:-1]
            if not line.strip(b" "):
                continue
            reply = self.handle(line)
            self.queue(reply + b"\n")
            if reply == b"+OK bye":
                self._close_after_flush()
                return

    def queue(self, data: bytes) -> None:
        """Buffer output; one write per connection per loop iteration."""
        self._out.append(data)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self._loop.call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_scheduled = False
        if self.transport is not None and self._out:
            self.transport.write(b"".join(self._out))
        self._out.clear()

    def _close_after_flush(self) -> None:
        self._loop.call_soon(lambda: self.transport.close() if self.transport else None)

    # -- commands ----------------------------------------------------------------

    def handle(self, line: bytes) -> bytes:
        line = line.lstrip(b" ")
        if line.startswith(b"@cid="):  # nothing is stored, so nothing to keep unique
            line = line.partition(b" ")[2]
        word, _, rest = line.partition(b" ")
        cmd = word.upper()
        rest = rest.lstrip(b" ")
        if cmd == b"SEND":
            return self._send(rest)
        if cmd == b"SENDGROUP":
            return self._send_group(rest)
        if cmd == b"PING":
            return b"+OK pong"
        if cmd == b"REGISTER":
            return self._register(rest.split())
        if cmd == b"LOGIN":
            return self._login(rest.split())
        if cmd == b"AUTH":
            return self._auth(rest.strip(b" "))
        if cmd == b"QUIT":
            return b"+OK bye"
        if self.user is None:
            return b"-ERR not login" if cmd in _KNOWN else b"-ERR unknown command"
        if cmd == b"SYNC":
            return b"+OK sync_done seq=%d" % self.user.seq
        if cmd == b"PULL":
            return b"+OK pull_done"
        if cmd == b"LOGOUT":
            if self.token is not None:
                self.state.tokens.pop(self.token, None)
            self._logout()
            return b"+OK logout success"
        if cmd == b"CREATEGROUP":
            if not rest:
                return b"-ERR missing argument"
            return b"+OK group_id=%d" % self.state.new_group(self.user.uid)
        if cmd == b"JOINGROUP":
            members = self.state.groups.get(_int(rest.strip(b" ")))
            if members is None:
                return b"-ERR no such group"
            if self.user.uid in members:
                return b"-ERR already member"
            members.add(self.user.uid)
            return b"+OK joined group"
        return b"-ERR unknown command"

    def _register(self, args: list[bytes]) -> bytes:
        if len(args) != 2:
            return b"-ERR missing argument" if len(args) < 2 else b"-ERR too many arguments"
        name, password = args
        if not _USERNAME.match(name):
            return b"-ERR bad username"
        if not 6 <= len(password) <= 128:
            return b"-ERR bad password"
        if name.lower() in self.state.by_key:
            return b"-ERR user exists"
        return self._attach(self.state.new_user(name, password))

    def _login(self, args: list[bytes]) -> bytes:
        user = self.state.by_key.get(args[0].lower()) if len(args) == 2 else None
        if user is None or not secrets.compare_digest(user.password, args[1]):
            return b"-ERR auth failed"
        return self._attach(user)

    def _auth(self, token: bytes) -> bytes:
        user = self.state.tokens.get(token)
        if user is None:
            return b"-ERR auth failed"
        self._logout()
        self.user, self.token = user, token
        user.conns.add(self)
        return b"+OK uid=%d" % user.uid

    def _attach(self, user: _User) -> bytes:
        self._logout()
        self.user = user
        self.token = self.state.new_token(user)
        user.conns.add(self)
        return b"+OK uid=%d token=%s" % (user.uid, self.token)

    def _logout(self) -> None:
        if self.user is not None:
            self.user.conns.discard(self)
        self.user = self.token = None

    def _send(self, rest: bytes) -> bytes:
        user = self.user
        if user is None:
            return b"-ERR not login"
        to, _, text = rest.partition(b" ")
        text = text.lstrip(b" ")
        if not text:
            return b"-ERR missing argument"
        target = self.state.by_uid.get(_int(to))
        if target is None:
            return b"-ERR no such user"
        msg_id = self.state.msg_id()
        target.seq += 1
        line = b"MSG id=%d from=%d ts=%d seq=%d text=%s\n" % (
            msg_id,
            user.uid,
            time.time_ns() // 1_000_000,
            target.seq,
            text,
        )
        for conn in target.conns:
            conn.queue(line)
        return b"+OK msg_id=%d" % msg_id

    def _send_group(self, rest: bytes) -> bytes:
        user = self.user
        if user is None:
            return b"-ERR not login"
        gid_text, _, text = rest.partition(b" ")
        text = text.lstrip(b" ")
        if not text:
            return b"-ERR missing argument"
        gid = _int(gid_text)
        members = self.state.groups.get(gid)
        if members is None:
            return b"-ERR no such group"
        if user.uid not in members:
            return b"-ERR not member"
        msg_id = self.state.msg_id()
        head = b"GMSG id=%d group=%d from=%d ts=%d seq=" % (
            msg_id,
            gid,
            user.uid,
            time.time_ns() // 1_000_000,
        )
        tail = b" text=" + text + b"\n"
        by_uid = self.state.by_uid
        for uid in members:
            if uid == user.uid:
                continue
            member = by_uid[uid]
            member.seq += 1
            if member.conns:
                line = head + b"%d" % member.seq + tail
                for conn in member.conns:
                    conn.queue(line)
        return b"+OK group_msg_id=%d" % msg_id


_KNOWN: Final = frozenset(
    {b"SYNC", b"PULL", b"LOGOUT", b"CREATEGROUP", b"JOINGROUP", b"SEND", b"SENDGROUP"}
)


def _int(text: bytes) -> int:
    try:
        return int(text)
    except ValueError:
        return -1


class RelayServer:
    """``start`` binds, ``port`` tells where, ``stop`` closes everything."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, state: RelayState | None = None):
        """``state`` shared between two servers makes them two gateways of one relay."""
        if not is_loopback(host):
            raise ValueError(f"the relay only listens on loopback, not {host!r}")
        self.host = host
        self.requested_port = port
        self.state = state or RelayState()
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: RelayConnection(self.state), self.host, self.requested_port, backlog=4096
        )

    @property
    def port(self) -> int:
        assert self._server is not None, "start() first"
        return int(self._server.sockets[0].getsockname()[1])

    async def stop(self) -> None:
        if self._server is None:
            return
        self._server.close()
        for conn in list(self.state.connections):
            if conn.transport is not None:
                conn.transport.close()
        await self._server.wait_closed()
        self._server = None


async def serve_relay(host: str, port: int) -> int:
    relay = RelayServer(host, port)
    try:
        await relay.start()
    except OSError as exc:
        print(f"mpim bench relay: cannot listen on {host}:{port}: {exc.strerror}", flush=True)
        return 1
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    print(f"relay listening on {host}:{relay.port} (baseline: no storage, no services)", flush=True)
    await stop.wait()
    await relay.stop()
    return 0


def run_relay(host: str, port: int) -> int:
    """``mpim bench relay``: serve until SIGINT/SIGTERM."""
    from mpim.bench.worker import run_loop

    raise_nofile_limit()
    if not is_loopback(host):
        print(f"mpim bench relay: refusing to listen on non-loopback {host!r}")
        return 2
    code = 0

    async def main() -> None:
        nonlocal code
        code = await serve_relay(host, port)

    run_loop(main)
    return code
