"""The client against a real server: ClientSession over TCP, reconnects, the real program.

Three kinds of server are used: the in-process ``server`` fixture (fast, and it
can restart on the same port and data), a real ``mpim up`` subprocess (killed
with SIGKILL to test recovery from a crash), and the real ``mpim client``
program driven through a pseudo-terminal, as a person would use it.
Every wait is for a marker in the output, bounded by a deadline; no sleeps.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import pty
import re
import select
import signal
import socket
import struct
import subprocess
import sys
import termios
import time
from collections.abc import AsyncIterator, Iterator
from datetime import UTC
from pathlib import Path
from typing import Final

import pytest

from mpim.client.connection import MpimConnection
from mpim.client.session import ClientSession, backoff_wait
from tests.conftest import RunningServer, ServerFactory

STEP: Final = 15.0  # deadline for any single expected event
MPIM: Final = str(Path(sys.executable).with_name("mpim"))
FAST_HASH_ENV: Final = {
    "MPIM_SECURITY__ARGON2_MEMORY_KIB": "256",
    "MPIM_SECURITY__ARGON2_TIME_COST": "1",
}
SENT: Final = re.compile(r"^sent \(msg_id=\d+\)$")


# --- helpers: a screen for emitted lines, a gate for reconnects ---


class Screen:
    """Everything a session emitted (pushes, notices), with waits on a pattern."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self._changed = asyncio.Event()

    def __call__(self, line: str) -> None:
        self.lines.append(line)
        self._changed.set()

    def count(self, pattern: str) -> int:
        return sum(1 for line in self.lines if re.search(pattern, line))

    async def wait_for(self, pattern: str, count: int = 1) -> str:
        try:
            async with asyncio.timeout(STEP):
                while self.count(pattern) < count:
                    self._changed.clear()
                    await self._changed.wait()
        except TimeoutError:
            raise AssertionError(f"no {pattern!r} (x{count}) in {self.lines}") from None
        return [line for line in self.lines if re.search(pattern, line)][count - 1]


class Gate:
    """A reconnect policy the test controls: attempts wait until the gate opens."""

    def __init__(self) -> None:
        self.opened = asyncio.Event()
        self.waiting = asyncio.Event()

    async def __call__(self, attempt: int) -> None:
        self.waiting.set()
        await self.opened.wait()
        if attempt > 1:
            await asyncio.sleep(0.05)  # backoff while the server is still down

    async def wait_until_waiting(self) -> None:
        async with asyncio.timeout(STEP):
            await self.waiting.wait()


@contextlib.asynccontextmanager
async def session(
    host: str, port: int, screen: Screen, gate: Gate | None = None
) -> AsyncIterator[ClientSession]:
    retry_wait = gate if gate is not None else backoff_wait
    client = ClientSession(host, port, emit=screen, retry_wait=retry_wait, tz=UTC)
    greeting = await client.connect()
    assert greeting.startswith(f"connected to {host}:{port}")
    try:
        yield client
    finally:
        await client.close()


async def run(client: ClientSession, text: str) -> list[str]:
    async with asyncio.timeout(STEP):
        return await client.handle_input(text)


async def one(client: ClientSession, text: str, pattern: str | re.Pattern[str]) -> re.Match[str]:
    """Run a command that answers with one line matching ``pattern``."""
    out = await run(client, text)
    assert len(out) == 1, (text, out)
    match = re.fullmatch(pattern, out[0])
    assert match is not None, (text, out)
    return match


async def register(client: ClientSession, name: str) -> int:
    await one(client, f"register:{name}:secret1", r"registered and logged in as uid \d+")
    assert client.uid is not None and client.token is not None
    return client.uid


def direct_from(uid: int, text: str) -> str:
    return rf"^\[\d\d:\d\d:\d\d\] {uid} → me: {re.escape(text)}$"


# --- ClientSession end to end ---


async def test_two_users_chat_with_live_push_pull_friends_and_groups(server: RunningServer) -> None:
    alice_screen, bob_screen = Screen(), Screen()
    async with (
        session(server.host, server.port, alice_screen) as alice,
        session(server.host, server.port, bob_screen) as bob,
    ):
        a = await register(alice, "alice")
        b = await register(bob, "bob")

        await one(alice, f"chat:{b}:Hello World: colons: kept", SENT)
        await bob_screen.wait_for(direct_from(a, "Hello World: colons: kept"))
        assert bob.last_seq == 1
        await one(alice, f"chat {b} space form  works", SENT)
        await bob_screen.wait_for(direct_from(a, "space form  works"))
        assert bob.last_seq == 2

        synced = await run(bob, "sync:0")
        assert synced[-1] == "synced up to seq 2 (2 messages)"
        assert re.fullmatch(direct_from(a, "Hello World: colons: kept"), synced[0])

        await one(bob, f"status:{a}", f"user {a} is online")
        await one(alice, f"addfriend:{b}", "friend added")
        await one(bob, "getfriends", f"friends: {a}")

        gid = int((await one(alice, "creategroup:team:our team: room", r"group #(\d+) created"))[1])
        await one(bob, f"joingroup:{gid}", "joined group")
        await one(bob, f"members:{gid}", f"members: {a}, {b}")
        await one(bob, "groups", f"your groups: #{gid}")
        await one(alice, f"sendgroup:{gid}:hi team", r"sent to group \(msg_id=\d+\)")
        await bob_screen.wait_for(rf"\] #{gid} {a}: hi team$")

        history = await run(alice, f"history:{b}")
        assert [line.split("] ", 1)[-1] for line in history] == [
            f"me → {b}: Hello World: colons: kept",
            f"me → {b}: space form  works",
            "end of history (2 messages)",
        ]
        group_history = await run(bob, f"history:g{gid}")
        assert group_history[0].endswith(f"#{gid} {a}: hi team")

        assert (await run(bob, "chat:x:hi"))[0].startswith("error: uid must be")
        await one(bob, "chat:999999:hi", "error: no such user")
        await one(alice, "logout", "logged out")
        assert alice.token is None
        assert (await run(alice, "pull"))[0].startswith("error: not login")
        assert await run(bob, "quit") == ["bye"]
        assert bob.finished


async def test_messages_sent_while_offline_arrive_by_pull_once(server: RunningServer) -> None:
    screen = Screen()
    async with session(server.host, server.port, screen) as alice:
        async with session(server.host, server.port, Screen()) as bob:
            b = await register(bob, "bob")
            await run(bob, "quit")
        a = await register(alice, "alice")
        await one(alice, f"chat:{b}:while you were away", SENT)
    async with session(server.host, server.port, screen) as bob:
        await one(bob, "login:bob:secret1", f"logged in as uid {b}")
        pulled = await run(bob, "pull")
        assert len(pulled) == 2 and re.fullmatch(direct_from(a, "while you were away"), pulled[0])
        assert pulled[1] == "1 new message"
        assert await run(bob, "pull") == ["no new messages"]


# --- reconnects ---


async def test_reconnect_after_server_drops_connection_recovers_missed_message_once(
    server: RunningServer,
) -> None:
    gate = Gate()
    alice_screen, bob_screen = Screen(), Screen()
    async with (
        session(server.host, server.port, alice_screen) as alice,
        session(server.host, server.port, bob_screen, gate) as bob,
    ):
        a = await register(alice, "alice")
        b = await register(bob, "bob")
        await one(alice, f"chat:{b}:before the drop", SENT)
        await bob_screen.wait_for(direct_from(a, "before the drop"))

        # The server closes bob's socket (QUIT sent behind the session's back).
        dropped = bob.connection
        assert dropped is not None
        assert (await dropped.command("QUIT")).status == "+OK bye"
        await bob_screen.wait_for(r"^connection lost .*reconnecting")
        await gate.wait_until_waiting()
        assert not bob.connected

        await one(alice, f"chat:{b}:while disconnected", SENT)
        typed = asyncio.create_task(bob.handle_input(f"chat:{a}:typed during the outage"))
        gate.opened.set()

        await bob_screen.wait_for(rf"^reconnected to .*; session resumed as uid {b}$")
        await bob_screen.wait_for(direct_from(a, "while disconnected"))
        async with asyncio.timeout(STEP):
            assert SENT.fullmatch((await typed)[-1])
        await alice_screen.wait_for(direct_from(b, "typed during the outage"))
        await one(alice, f"chat:{b}:after the reconnect", SENT)
        await bob_screen.wait_for(direct_from(a, "after the reconnect"))

        for text in ("before the drop", "while disconnected", "after the reconnect"):
            assert bob_screen.count(direct_from(a, text)) == 1, bob_screen.lines
        assert alice_screen.count(direct_from(b, "typed during the outage")) == 1
        assert bob.last_seq == 3
        # The synced message is still undelivered for PULL; it is not shown twice.
        assert await run(bob, "pull") == ["no new messages"]


async def test_reconnect_across_server_restart_on_same_port_and_data(
    server: RunningServer,
) -> None:
    gate = Gate()
    alice_screen, bob_screen = Screen(), Screen()
    async with (
        session(server.host, server.port, alice_screen) as alice,
        session(server.host, server.port, bob_screen, gate) as bob,
    ):
        a = await register(alice, "alice")
        b = await register(bob, "bob")
        await one(alice, f"chat:{b}:before restart", SENT)
        await bob_screen.wait_for(direct_from(a, "before restart"))

        await server.restart()
        await bob_screen.wait_for(r"^connection lost")
        await gate.wait_until_waiting()
        # Alice's session reconnects with its own backoff; the send waits for it.
        await one(alice, f"chat:{b}:while bob is away", SENT)
        await alice_screen.wait_for(rf"session resumed as uid {a}")

        gate.opened.set()
        await bob_screen.wait_for(rf"session resumed as uid {b}")
        await bob_screen.wait_for(direct_from(a, "while bob is away"))
        await one(alice, f"chat:{b}:live again", SENT)
        await bob_screen.wait_for(direct_from(a, "live again"))
        for text in ("before restart", "while bob is away", "live again"):
            assert bob_screen.count(direct_from(a, text)) == 1, bob_screen.lines


async def test_sync_follows_more_pages_on_reconnect_and_on_request(
    server_factory: ServerFactory,
) -> None:
    server = await server_factory(gateway={"sync_page_size": 2})
    gate = Gate()
    alice_screen, bob_screen = Screen(), Screen()
    async with (
        session(server.host, server.port, alice_screen) as alice,
        session(server.host, server.port, bob_screen, gate) as bob,
    ):
        a = await register(alice, "alice")
        b = await register(bob, "bob")
        await one(alice, f"chat:{b}:m0", SENT)
        await bob_screen.wait_for(direct_from(a, "m0"))
        connection = bob.connection
        assert connection is not None
        await connection.command("QUIT")
        await gate.wait_until_waiting()
        for i in range(1, 6):
            await one(alice, f"chat:{b}:m{i}", SENT)
        gate.opened.set()
        await bob_screen.wait_for(direct_from(a, "m5"))
        shown = [line.rsplit(": ", 1)[-1] for line in bob_screen.lines if "→ me:" in line]
        assert shown == ["m0", "m1", "m2", "m3", "m4", "m5"]
        assert bob.last_seq == 6

        synced = await run(bob, "sync:1")
        assert [line.rsplit(": ", 1)[-1] for line in synced[:-1]] == ["m1", "m2", "m3", "m4", "m5"]
        assert synced[-1] == "synced up to seq 6 (5 messages)"


async def test_expired_session_after_reconnect_asks_to_log_in_again(
    server: RunningServer,
) -> None:
    gate = Gate()
    screen = Screen()
    async with session(server.host, server.port, screen, gate) as bob:
        await register(bob, "bob")
        token = bob.token
        # Revoke bob's token from another connection, then drop bob's connection.
        other = await MpimConnection.open(server.host, server.port)
        try:
            assert (await other.command(f"AUTH {token}")).ok
            assert (await other.command("LOGOUT")).ok
        finally:
            await other.close()
        connection = bob.connection
        assert connection is not None
        await connection.command("QUIT")
        gate.opened.set()
        await screen.wait_for(r"could not resume the session \(auth failed\); please log in again")
        assert bob.token is None
        await one(bob, "login:bob:secret1", r"logged in as uid \d+")


# --- a real `mpim up` subprocess: crash and restart ---


class ServerProcess:
    """``mpim up`` in a subprocess, started again on the same port and data dir."""

    def __init__(self, data_dir: Path, log: Path) -> None:
        self.data_dir = data_dir
        self.log = log
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        """Start and return once the server prints that it is listening."""
        env = {**os.environ, **FAST_HASH_ENV}
        cmd = [MPIM, "up", "--port", str(self.port), "--data-dir", str(self.data_dir)]
        cmd += ["--http-port", "0"]
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=log, env=env)
        assert self.proc.stdout is not None
        line = _read_line_until(self.proc.stdout.fileno(), b"listening", STEP)
        match = re.search(rb":(\d+)", line)
        assert match is not None, line
        self.port = int(match[1])

    def kill(self) -> None:
        """SIGKILL: a crash, no graceful shutdown."""
        self._end(signal.SIGKILL)

    def stop(self) -> None:
        self._end(signal.SIGTERM)

    def _end(self, sig: signal.Signals) -> None:
        proc, self.proc = self.proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(sig)
            try:
                proc.wait(STEP)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(STEP)
        if proc.stdout is not None:
            proc.stdout.close()


def _read_line_until(fd: int, marker: bytes, timeout: float) -> bytes:
    """Read ``fd`` until a line containing ``marker``; that line."""
    deadline = time.monotonic() + timeout
    buf = b""
    while True:
        for line in buf.split(b"\n")[:-1]:
            if marker in line:
                return line
        remaining = deadline - time.monotonic()
        ready, _, _ = select.select([fd], [], [], max(0.0, remaining))
        chunk = os.read(fd, 4096) if ready else b""
        if not chunk:
            raise AssertionError(f"no {marker!r} before timeout or exit; got {buf!r}")
        buf += chunk


@pytest.fixture
def mpim_up(tmp_path: Path) -> Iterator[ServerProcess]:
    server = ServerProcess(tmp_path / "data", tmp_path / "server.log")
    server.start()
    try:
        yield server
    finally:
        server.stop()


async def test_reconnect_after_server_process_is_killed(mpim_up: ServerProcess) -> None:
    gate = Gate()
    alice_screen, bob_screen = Screen(), Screen()
    host = "127.0.0.1"
    async with (
        session(host, mpim_up.port, alice_screen) as alice,
        session(host, mpim_up.port, bob_screen, gate) as bob,
    ):
        a = await register(alice, "alice")
        b = await register(bob, "bob")
        await one(alice, f"chat:{b}:before the crash", SENT)
        await bob_screen.wait_for(direct_from(a, "before the crash"))

        mpim_up.kill()
        await bob_screen.wait_for(r"^connection lost")
        await gate.wait_until_waiting()
        await asyncio.to_thread(mpim_up.start)

        await one(alice, f"chat:{b}:after the crash", SENT)
        gate.opened.set()
        await bob_screen.wait_for(direct_from(a, "after the crash"))
        for text in ("before the crash", "after the crash"):
            assert bob_screen.count(direct_from(a, text)) == 1, bob_screen.lines


# --- the real program, through a pseudo-terminal and through a pipe ---

ANSI: Final = re.compile(rb"\x1b(\[[0-?]*[ -/]*[@-~]|\][^\x07]*\x07|[@-Z\\-_])")
CPR_REQUEST: Final = b"\x1b[6n"
ROWS: Final = 40
#: The prompt; escape sequences are stripped, so the space after it (often a
#: cursor move) may be missing.
PROMPT: Final = r"mpim> ?"


class Terminal:
    """``mpim client`` on a pseudo-terminal: type keys, wait for text on the screen."""

    def __init__(self, port: int) -> None:
        master, slave = pty.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", ROWS, 120, 0, 0))
        self.fd = master
        self.proc = subprocess.Popen(
            [MPIM, "client", "--addr", f"127.0.0.1:{port}"],
            stdin=slave,
            stdout=slave,
            stderr=slave,
            start_new_session=True,
            env={**os.environ, "TERM": "xterm"},
        )
        os.close(slave)
        self.screen = b""  # everything shown so far, escape sequences removed
        self._seen = 0  # how much of the screen earlier expects consumed

    def type(self, keys: str) -> None:
        os.write(self.fd, keys.encode())

    def expect(self, pattern: str) -> re.Match[bytes]:
        """Wait for ``pattern`` in output not yet matched by an earlier expect."""
        deadline = time.monotonic() + STEP
        regex = re.compile(pattern.encode())
        while True:
            match = regex.search(self.screen, self._seen)
            if match is not None:
                self._seen = match.end()
                return match
            remaining = deadline - time.monotonic()
            ready, _, _ = select.select([self.fd], [], [], max(0.0, remaining))
            if not ready or not self._read():
                raise AssertionError(f"no {pattern!r} on screen: {self.screen[self._seen :]!r}")

    def _read(self) -> bool:
        try:
            chunk = os.read(self.fd, 65536)
        except OSError:  # EIO: the program exited and the pty closed
            return False
        if CPR_REQUEST in chunk:
            # Answer like a real terminal whose cursor is on its last row.
            os.write(self.fd, b"\x1b[%d;1R" % ROWS)
        self.screen += ANSI.sub(b"", chunk).replace(b"\r", b"")
        return bool(chunk)

    def wait_exit(self) -> int:
        code = self.proc.wait(STEP)
        while self._read():
            pass
        return code

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(STEP)
        os.close(self.fd)


@pytest.fixture
def terminals(mpim_up: ServerProcess) -> Iterator[list[Terminal]]:
    opened: list[Terminal] = []
    yield opened
    for terminal in opened:
        terminal.close()


def test_interactive_client_in_a_terminal(
    mpim_up: ServerProcess, terminals: list[Terminal]
) -> None:
    alice, bob = Terminal(mpim_up.port), Terminal(mpim_up.port)
    terminals += [alice, bob]
    for term in (alice, bob):
        term.expect(r"connected to 127\.0\.0\.1:\d+")
        term.expect(PROMPT)

    alice.type("register:alice:secret1\r")
    a = int(alice.expect(r"registered and logged in as uid (\d+)")[1])
    bob.type("register:bob:secret1\r")
    b = int(bob.expect(r"registered and logged in as uid (\d+)")[1])
    bob.expect(PROMPT)

    # Bob is half-way through typing when alice's message arrives.
    bob.type("chat:1:half")
    bob.expect("chat:1:half")  # echoed
    alice.type(f"chat:{b}:hello bob: how are you?\r")
    alice.expect(r"sent \(msg_id=\d+\)")
    bob.expect(rf"\] {a} → me: hello bob: how are you\?")
    bob.expect(PROMPT + "chat:1:half")  # the prompt is redrawn with the typed text
    bob.type(" typed\r")
    bob.expect(r"sent \(msg_id=\d+\)")
    alice.expect(rf"\] {b} → me: half typed")

    alice.type("help\r")
    alice.expect(r"sendgroup:<gid>:<text>")
    alice.type("frobnicate\r")
    alice.expect(r"error: unknown command 'frobnicate'")
    for term in (alice, bob):
        term.type("quit\r")
        term.expect(r"bye")
        assert term.wait_exit() == 0


def test_piped_commands_run_to_their_replies_and_exit_at_eof(mpim_up: ServerProcess) -> None:
    commands = "register:carol:secret1\nping\nchat:999:anyone there?\nsync\nbogus\n"
    result = subprocess.run(
        [MPIM, "client", "--addr", f"127.0.0.1:{mpim_up.port}"],
        input=commands.encode(),
        capture_output=True,
        timeout=STEP,
        check=False,
    )
    out = result.stdout.decode().splitlines()
    assert result.returncode == 0, result.stderr
    assert out[0].startswith("connected to 127.0.0.1:")
    assert re.fullmatch(r"registered and logged in as uid \d+", out[1])
    assert out[2] == "pong"
    assert out[3] == "error: no such user"
    assert out[4].startswith("synced up to seq 0")
    assert out[5] == "error: unknown command 'bogus'; type 'help' for the list"
    assert len(out) == 6


def test_client_exits_nonzero_when_the_server_is_unreachable() -> None:
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    result = subprocess.run(
        [MPIM, "client", "--addr", f"127.0.0.1:{port}"],
        input=b"ping\n",
        capture_output=True,
        timeout=STEP,
        check=False,
    )
    assert result.returncode == 1
    assert b"cannot connect" in result.stderr
