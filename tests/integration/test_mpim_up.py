"""``mpim up`` as a user runs it: a real process, signals, restarts."""

from __future__ import annotations

import asyncio
import signal
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from mpim.protocol.messages import MessageLine
from tests.support.lineclient import Account, LineClient
from tests.support.process import MpimProcess


@pytest.fixture
async def connect() -> AsyncIterator[Callable[[MpimProcess], Awaitable[LineClient]]]:
    """Open clients to a process; all closed at teardown."""
    opened: list[LineClient] = []

    async def open_client(proc: MpimProcess) -> LineClient:
        client = await LineClient.connect(proc.host, proc.port)
        opened.append(client)
        return client

    yield open_client
    for client in opened:
        await client.close()


Connect = Callable[[MpimProcess], Awaitable[LineClient]]


async def test_prints_where_it_listens_and_serves(process: MpimProcess, connect: Connect) -> None:
    client = await connect(process)
    assert client.greeting.startswith("+OK welcome mpim")
    assert await client.cmd("PING") == "+OK pong"
    await client.close()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
async def test_signal_stops_within_five_seconds_losing_no_acknowledged_message(
    tmp_path: Path, sig: int, connect: Connect
) -> None:
    data = tmp_path / "data"
    proc = await MpimProcess.start(data)
    try:
        bob, acked = await _flood_then_stop(proc, sig, connect)
    finally:
        await proc.kill()
    proc = await MpimProcess.start(data)
    try:
        stored, last_seq = await _sync_all(await connect(proc), bob)
    finally:
        await proc.kill()
    missing = set(acked) - stored
    assert not missing, f"{len(missing)} acknowledged messages lost"
    assert last_seq == len(stored)  # seqs are gap-free


async def _flood_then_stop(
    proc: MpimProcess, sig: int, connect: Connect
) -> tuple[Account, list[int]]:
    """Four senders pipeline sends to an offline user; signal mid-flight."""
    receiver = await connect(proc)
    bob = await receiver.register()
    await receiver.cmd("LOGOUT")
    senders = [await connect(proc) for _ in range(4)]
    for sender in senders:
        await sender.register()
    acked: list[int] = []
    enough = asyncio.Event()

    async def flood(client: LineClient, n: int) -> None:
        await client.send_raw(b"".join(f"SEND {bob.uid} m{i}\n".encode() for i in range(n)))
        try:
            while True:
                line = await client.read_line(timeout=15)
                if line.startswith("+OK msg_id="):
                    acked.append(int(line.split("=", 1)[1]))
                    if len(acked) >= 200:
                        enough.set()
        except ConnectionError:
            return

    tasks = [asyncio.create_task(flood(s, 3000)) for s in senders]
    await asyncio.wait_for(enough.wait(), 30)  # signal while sends are in flight
    started = time.monotonic()
    code = await proc.stop(sig)
    elapsed = time.monotonic() - started
    await asyncio.gather(*tasks)
    assert code == 0
    assert elapsed < 5.0, f"shutdown took {elapsed:.1f}s"
    assert len(acked) >= 200
    return bob, acked


async def _sync_all(client: LineClient, account: Account) -> tuple[set[int], int]:
    """Log in and SYNC from 0 to the end; (message ids, last seq)."""
    assert (await client.login(account.username, account.password)).startswith("+OK uid=")
    stored: set[int] = set()
    after = 0
    while True:
        lines, done = await client.cmd_multi(f"SYNC {after}")
        stored.update(MessageLine.parse(line).id for line in lines)
        after = int(done.split("seq=")[1].split()[0])
        if "more=1" not in done:
            return stored, after


async def test_restart_keeps_users_and_offline_messages(tmp_path: Path, connect: Connect) -> None:
    data = tmp_path / "data"
    proc = await MpimProcess.start(data)
    try:
        alice = await connect(proc)
        a = await alice.register()
        bob = await connect(proc)
        b = await bob.register()
        await bob.close()
        for text in ("one", "two  spaced ", "three"):
            assert (await alice.cmd(f"SEND {b.uid} {text}")).startswith("+OK msg_id=")
        assert await alice.cmd(f"ADDFRIEND {b.uid}") == "+OK friend added"
        await alice.close()
        assert await proc.stop() == 0
    finally:
        await proc.kill()

    proc = await MpimProcess.start(data, proc.port)
    try:
        bob = await connect(proc)
        assert (await bob.login(b.username.upper(), b.password)).startswith(f"+OK uid={b.uid} ")
        lines, done = await bob.cmd_multi("PULL")
        assert done == "+OK pull_done"
        assert [line.split(" text=", 1)[1] for line in lines] == ["one", "two  spaced ", "three"]
        assert all(f"from={a.uid}" in line for line in lines)
        assert await bob.cmd("GETFRIENDS") == f"+OK friends: {a.uid}"
        # The token issued before the restart still works on a new connection.
        other = await connect(proc)
        assert await other.cmd(f"AUTH {a.token}") == f"+OK uid={a.uid}"
    finally:
        await proc.kill()


async def test_bad_setting_names_the_key(tmp_path: Path) -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "mpim", "up", "--port", "70000", "--data-dir", str(tmp_path),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    _, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 2
    assert b"gateway.port" in err
    assert b"Traceback" not in err
