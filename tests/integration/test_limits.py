"""Gateway-wide limits: connection count and the login deadline."""

from __future__ import annotations

import asyncio
import contextlib
import re

from tests.conftest import TOPOLOGIES, ServerFactory

pytestmark = TOPOLOGIES


async def test_connections_beyond_the_maximum_are_told_server_busy(
    server_factory: ServerFactory,
) -> None:
    server = await server_factory(gateway={"max_connections": 2})
    first = await server.client(gateway=0)
    second = await server.client(gateway=0)
    third = await server.client(gateway=0)
    assert third.greeting.startswith("+OK")
    assert await third.expect_closed() == ["-ERR server busy"]
    assert await first.cmd("PING") == "+OK pong"
    assert await second.cmd("PING") == "+OK pong"
    await first.close()
    # A place freed is a place for the next client.
    for _ in range(100):
        fourth = await server.client(gateway=0)
        try:
            if await fourth.cmd("PING") == "+OK pong":
                break
        except ConnectionError:
            continue
    else:
        raise AssertionError("a freed place was never reused")


async def test_a_connection_that_never_logs_in_is_closed_after_the_timeout(
    server_factory: ServerFactory,
) -> None:
    server = await server_factory(gateway={"login_timeout_seconds": 0.5})
    idle = await server.client()
    user = await server.user()
    assert await idle.expect_closed(timeout=10) == ["-ERR login timeout"]
    assert await user.cmd("PING") == "+OK pong"  # logged in: kept


async def test_a_silent_logged_in_connection_is_closed_after_the_idle_timeout(
    server_factory: ServerFactory,
) -> None:
    server = await server_factory(gateway={"idle_timeout_seconds": 1.0})
    silent = await server.user()
    chatty = await server.user()

    async def keep_pinging() -> None:
        while True:
            assert await chatty.cmd("PING") == "+OK pong"
            await asyncio.sleep(0.2)

    pinger = asyncio.create_task(keep_pinging())
    try:
        assert await silent.expect_closed(timeout=10) == ["-ERR idle timeout"]
        assert not pinger.done()  # PINGs kept the other one open throughout
    finally:
        pinger.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await pinger
    assert await chatty.cmd("PING") == "+OK pong"


def _ss_seconds(duration: str) -> int:
    """Whole seconds of an ``ss`` timer such as "1min12sec", "1min", "44sec" or "950ms"."""
    parts = {unit: int(n) for n, unit in re.findall(r"(\d+)(min|sec|ms)", duration)}
    return parts.get("min", 0) * 60 + parts.get("sec", 0)


async def test_client_sockets_have_tcp_keepalive_for_dead_peers_spread_over_time(
    server_factory: ServerFactory,
) -> None:
    """Clients that connect together are probed at different times, so a
    burst of probes cannot overflow the receive backlog (see stagger_keepalive)."""
    server = await server_factory(gateway={"tcp_keepalive_seconds": 45})
    clients = [await server.user() for _ in range(30)]
    for client in clients:
        assert await client.cmd("PING") == "+OK pong"
    ports = getattr(server, "gateway_ports", None) or [server.port]
    where = " or ".join(f"sport = :{port}" for port in ports)
    idle: list[int] = []
    for _ in range(50):  # until the replies' ACKs are in and the keepalive timers run
        ss = await asyncio.create_subprocess_exec(
            "ss",
            "-tnoH",
            "state",
            "established",
            f"( {where} )",
            stdout=asyncio.subprocess.PIPE,
        )
        out = (await ss.communicate())[0].decode()
        # e.g. "timer:(keepalive,44sec,0)", "(keepalive,1min12sec,0)", "(keepalive,1min,0)"
        idle = [_ss_seconds(t) for t in re.findall(r"timer:\(keepalive,([^,]+),", out)]
        if len(idle) >= len(clients):
            break
        await asyncio.sleep(0.1)
    else:
        raise AssertionError(f"no keepalive timer on the clients' sockets: {out!r}")
    # Each within [45, 90) s of its last traffic (less what the test took
    # since), and not all at once.
    assert all(30 <= t < 90 for t in idle), idle
    assert len(set(idle)) >= 8, idle
