"""Metrics and readiness that exist only when roles are separate processes."""

from __future__ import annotations

import asyncio

import pytest

from mpim.metrics.scrape import Scrape, fetch
from tests.support.checks import uid_of
from tests.support.cluster import InProcessCluster

pytestmark = pytest.mark.parametrize("topology", ["cluster"], indirect=True)


async def test_rpc_latency_is_recorded_by_caller_and_server(server: InProcessCluster) -> None:
    alice = await server.user()
    bob = await server.user()
    assert (await alice.cmd(f"SEND {uid_of(bob)} over grpc")).startswith("+OK")
    pages = await asyncio.gather(
        *(asyncio.to_thread(fetch, url) for url in server.ops_urls().values())
    )
    figures = Scrape.merge(Scrape.parse(body) for _, body in pages)
    sent = {"service": "message", "method": "SendBatch", "outcome": "ok"}
    assert figures.value("mpim_rpc_client_latency_seconds_count", **sent) >= 1
    assert figures.value("mpim_rpc_server_latency_seconds_count", **sent) >= 1


async def test_service_metrics_address_is_published_in_zookeeper(server: InProcessCluster) -> None:
    gateway = server.gateways[0]
    for node in server.services:
        published = [
            i for i in gateway.registry.instances(node.role) if i.instance_id == node.instance_id
        ]
        assert [i.metadata.get("metrics") for i in published] == [node.ops_address]


async def test_gateway_is_not_ready_while_a_service_it_needs_is_gone(
    server: InProcessCluster,
) -> None:
    gateway_url = server.gateway_ops_urls()[0]
    group = next(n for n in server.services if n.role == "group")
    await group.stop()
    server.services.remove(group)
    for _ in range(100):
        status, body = await asyncio.to_thread(fetch, gateway_url, "/readyz")
        if status == 503:
            break
        await asyncio.sleep(0.1)
    assert status == 503, body
    assert "group fail" in body and body.endswith("not ready\n")
    assert "user ok" in body and "message ok" in body
    status, _ = await asyncio.to_thread(fetch, gateway_url, "/healthz")
    assert status == 200  # alive, just not ready
