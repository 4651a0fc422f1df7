"""Gateway-wide limits: connection count and the login deadline."""

from __future__ import annotations

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
