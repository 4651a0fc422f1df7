"""The status probes against real servers: a real gateway, a real gRPC health service."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator

import grpc
import pytest
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from mpim.cluster import probe
from tests.conftest import RunningServer


async def test_gateway_ping_gets_pong_from_a_real_gateway(server: RunningServer) -> None:
    answer = await asyncio.to_thread(probe.gateway_ping, server.host, server.port)
    assert answer == probe.Health(True, "pong")


def test_gateway_ping_reports_a_closed_port() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # bound, not listening: connections are refused
        answer = probe.gateway_ping("127.0.0.1", port, timeout=1.0)
    assert not answer.ok
    assert answer.text == "connection refused"


@pytest.fixture
async def health_server() -> AsyncIterator[tuple[str, health.aio.HealthServicer]]:
    server = grpc.aio.server()
    servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    yield f"127.0.0.1:{port}", servicer
    await server.stop(None)


async def test_grpc_health_follows_the_servers_serving_status(
    health_server: tuple[str, health.aio.HealthServicer],
) -> None:
    address, servicer = health_server
    await servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    assert await asyncio.to_thread(probe.grpc_health, address) == probe.Health(True, "SERVING")
    await servicer.enter_graceful_shutdown()
    answer = await asyncio.to_thread(probe.grpc_health, address)
    assert answer == probe.Health(False, "NOT_SERVING")


def test_grpc_health_reports_an_unreachable_server() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        answer = probe.grpc_health(f"127.0.0.1:{port}", timeout=1.0)
    assert answer == probe.Health(False, "unavailable")
