"""/metrics, /healthz and /readyz of every process, read over real HTTP.

Each test drives the gateway through the protocol and checks the figures it
scrapes moved by exactly what was done (differences, so earlier traffic of
the same server does not matter).
"""

from __future__ import annotations

import asyncio
from typing import Any

from mpim.metrics.scrape import Scrape, fetch
from tests.conftest import TOPOLOGIES, ServerFactory
from tests.support.checks import uid_of

pytestmark = TOPOLOGIES


async def scrape(urls: list[str]) -> Scrape:
    pages = await asyncio.gather(*(asyncio.to_thread(fetch, url) for url in urls))
    for status, _ in pages:
        assert status == 200
    return Scrape.merge(Scrape.parse(body) for _, body in pages)


async def gateways(server: Any) -> Scrape:
    return await scrape(server.gateway_ops_urls())


async def everything(server: Any) -> Scrape:
    return await scrape(list(server.ops_urls().values()))


async def test_gateway_counts_commands_logins_and_messages(server: Any) -> None:
    before = await gateways(server)
    alice = await server.user()
    bob = await server.user()
    for i in range(5):
        assert (await alice.cmd(f"SEND {uid_of(bob)} hello {i}")).startswith("+OK msg_id=")
    for _ in range(5):
        assert (await bob.read_line()).startswith("MSG ")
    assert await alice.cmd("SEND 999999 nobody") == "-ERR no such user"
    assert await alice.cmd("FROBNICATE") == "-ERR unknown command"
    await bob.cmd_multi("SYNC 0")
    after = await gateways(server)

    def delta(name: str, **labels: str) -> float:
        return after.value(name, **labels) - before.value(name, **labels)

    assert delta("mpim_gateway_logins_total", method="REGISTER", outcome="ok") == 2
    assert delta("mpim_gateway_commands_total", command="SEND", outcome="ok") == 5
    assert delta("mpim_gateway_commands_total", command="SEND", outcome="no such user") == 1
    assert delta("mpim_gateway_commands_total", command="-", outcome="unknown command") == 1
    assert delta("mpim_gateway_messages_total", event="sent") == 5
    assert delta("mpim_gateway_messages_total", event="delivered") == 5
    assert delta("mpim_gateway_messages_total", event="pulled") == 5  # the SYNC
    assert delta("mpim_gateway_push_latency_seconds_count") == 5
    assert after.value("mpim_gateway_connections_open") == 2
    assert delta("mpim_gateway_connections_total", transport="tcp") == 2


async def test_rate_limit_rejections_are_counted(server_factory: ServerFactory) -> None:
    server = await server_factory(gateway={"rate_limit_per_second": 1, "rate_limit_burst": 3})
    client = await server.user()  # REGISTER takes one token
    replies = [await client.cmd("PING") for _ in range(4)]
    assert replies.count("-ERR rate limited") >= 2
    after = await gateways(server)
    assert after.value("mpim_gateway_rate_limited_total") == replies.count("-ERR rate limited")


async def test_store_cache_and_route_figures_move_with_traffic(server: Any) -> None:
    alice = await server.user()
    bob = await server.user()
    await alice.cmd(f"ADDFRIEND {uid_of(bob)}")
    for _ in range(3):
        assert (await alice.cmd("GETFRIENDS")).startswith("+OK friends:")
    assert (await alice.cmd(f"SEND {uid_of(bob)} hi")).startswith("+OK")
    assert (await bob.read_line()).startswith("MSG ")
    figures = await everything(server)
    assert figures.value("mpim_store_batch_size_count") > 0
    assert figures.value("mpim_store_commit_seconds_count") > 0
    # First GETFRIENDS misses the cache, the next two hit it.
    assert figures.value("mpim_cache_lookups_total", kind="user:friends", result="hit") >= 2
    assert figures.value("mpim_cache_lookups_total", kind="user:friends", result="miss") >= 1
    assert figures.value("mpim_cache_lookups_total", kind="presence:route", result="hit") >= 1


async def test_health_and_readiness_answer(server: Any) -> None:
    for name, url in server.ops_urls().items():
        status, body = await asyncio.to_thread(fetch, url, "/healthz")
        assert (status, body) == (200, "ok\n"), name
        status, body = await asyncio.to_thread(fetch, url, "/readyz")
        assert status == 200, f"{name}: {body}"
        assert body.endswith("ready\n") and "fail" not in body, name
        status, _ = await asyncio.to_thread(fetch, url, "/nothing-here")
        assert status == 404, name
