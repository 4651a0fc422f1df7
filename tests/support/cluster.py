"""A whole distributed MPIM inside the test's event loop, on real infrastructure.

Every role runs as it does under ``mpim serve`` (``mpim.node.start_node``):
gRPC between roles on real sockets, ZooKeeper discovery, Redis cache, bus
and presence, MariaDB as the store. Two gateways, two message services, one
of each other service. Clients alternate between the gateways, so every
protocol test also crosses gateways.
"""

from __future__ import annotations

import itertools
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from mpim.config import Settings
from mpim.node import Node, start_node
from tests.support.lineclient import LineClient
from tests.support.ports import restartable_port

SERVICE_NODES = (
    ("user", "user-1"),
    ("presence", "presence-1"),
    ("group", "group-1"),
    ("message", "message-1"),
    ("message", "message-2"),
)
GATEWAY_NODES = ("gateway-1", "gateway-2")


class InProcessCluster:
    """The same surface as the embedded RunningServer, for topology-parametrised tests."""

    def __init__(
        self, settings: Settings, on_stop: Callable[[], Awaitable[None]] | None = None
    ) -> None:
        self.settings = settings
        self._on_stop = on_stop
        self.services: list[Node] = []
        self.gateways: list[Node] = []
        # Fixed at start, so a restart finds them again.
        self.gateway_ports: list[int] = [restartable_port() for _ in GATEWAY_NODES]
        self.clients: list[LineClient] = []
        self._turn = itertools.count()

    @property
    def host(self) -> str:
        return "127.0.0.1"

    @property
    def port(self) -> int:
        return self.gateway_ports[0]

    @property
    def data_dir(self) -> Path:
        return self.settings.data_dir

    def _node_settings(self, instance_id: str, **update: Any) -> Settings:
        return self.settings.model_copy(update={"instance_id": instance_id, **update})

    async def start(self) -> None:
        for role, instance_id in SERVICE_NODES:
            self.services.append(await start_node(role, self._node_settings(instance_id)))
        for index, instance_id in enumerate(GATEWAY_NODES):
            gateway = self.settings.gateway.model_copy(update={"port": self.gateway_ports[index]})
            node = await start_node("gateway", self._node_settings(instance_id, gateway=gateway))
            self.gateway_ports[index] = int(node.address.rsplit(":", 1)[1])
            self.gateways.append(node)

    def ops_urls(self) -> dict[str, str]:
        """Instance id -> base URL of its /metrics, /healthz and /readyz."""
        return {n.instance_id: f"http://{n.ops_address}" for n in [*self.gateways, *self.services]}

    def gateway_ops_urls(self) -> list[str]:
        return [f"http://{n.ops_address}" for n in self.gateways]

    async def client(self, gateway: int | None = None) -> LineClient:
        """A connection to the given gateway, or to each gateway in turn."""
        index = next(self._turn) % len(self.gateway_ports) if gateway is None else gateway
        client = await LineClient.connect(self.host, self.gateway_ports[index])
        self.clients.append(client)
        return client

    async def user(self, username: str | None = None, password: str = "secret1") -> LineClient:
        client = await self.client()
        await client.register(username, password)
        return client

    async def stored_bytes(self) -> bytes:
        """Every row in the store and every value under this cluster's Redis prefix."""
        import asyncio

        from sqlalchemy import create_engine, select

        from mpim.redisconn import redis_client
        from mpim.store.schema import metadata

        def rows() -> bytes:
            engine = create_engine(self.settings.store_url())
            try:
                with engine.connect() as conn:
                    return b"".join(
                        repr(tuple(row)).encode()
                        for table in metadata.sorted_tables
                        for row in conn.execute(select(table))
                    )
            finally:
                engine.dispose()

        blob = await asyncio.to_thread(rows)
        client = redis_client(self.settings.redis)
        try:
            async for key in client.scan_iter(match=f"{self.settings.redis.key_prefix}*"):
                blob += key + repr(await client.dump(key)).encode()
        finally:
            await client.aclose()
        return blob

    async def stop(self) -> None:
        for client in self.clients:
            await client.close()
        self.clients.clear()
        for node in [*self.gateways, *reversed(self.services)]:
            await node.stop()
        self.gateways.clear()
        self.services.clear()

    async def close(self) -> None:
        """Stop for good: also forget this cluster's Redis keys."""
        await self.stop()
        if self._on_stop is not None:
            await self._on_stop()
            self._on_stop = None

    async def restart(self) -> None:
        """Stop every role gracefully and start them again (gateways on their ports)."""
        await self.stop()
        await self.start()
