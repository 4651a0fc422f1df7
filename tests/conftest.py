"""Fixtures: a real embedded MPIM on a free port, and real TCP clients."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis

from mpim.config import RedisSettings, Settings, load_settings
from mpim.redisconn import REDIS_ERRORS, redis_client
from mpim.runtime import EmbeddedRuntime
from mpim.store.database import Database
from tests.support.lineclient import Account, LineClient
from tests.support.ports import restartable_port
from tests.support.redis_server import REDIS_URL, delete_prefix, unavailable

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")

pytest_plugins = [
    "tests.support.zookeeper",
    "tests.support.redis",
    "tests.support.databases",
    "tests.support.process_cluster",
    "tests.support.process",
]

# argon2id with a small memory cost keeps hundreds of test registrations fast;
# the production defaults are covered by their own test.
FAST_HASH: dict[str, Any] = {"argon2_memory_kib": 256, "argon2_time_cost": 1}


def make_settings(data_dir: Path, **overrides: Any) -> Settings:
    gateway = {
        "host": "127.0.0.1",
        "port": restartable_port(),  # a restart reuses it
        "http_host": "127.0.0.1",
        "http_port": 0,
        **overrides.pop("gateway", {}),
    }
    security = {**FAST_HASH, **overrides.pop("security", {})}
    return load_settings(
        data_dir=data_dir, gateway=gateway, security=security, use_uvloop=False, **overrides
    )


@dataclass
class RunningServer:
    """An embedded MPIM in this test's event loop, on a free port."""

    settings: Settings
    runtime: EmbeddedRuntime
    clients: list[LineClient] = field(default_factory=list)

    @property
    def host(self) -> str:
        return "127.0.0.1"

    @property
    def port(self) -> int:
        return self.runtime.port

    @property
    def data_dir(self) -> Path:
        return self.settings.data_dir

    def ops_urls(self) -> dict[str, str]:
        """Base URL of /metrics, /healthz and /readyz: the gateway's HTTP port."""
        return {"embedded": f"http://127.0.0.1:{self.runtime.gateway.http_port}"}

    def gateway_ops_urls(self) -> list[str]:
        return list(self.ops_urls().values())

    async def client(self, gateway: int = 0) -> LineClient:
        """A connection to the (only) gateway; ``gateway`` mirrors the cluster's."""
        client = await LineClient.connect(self.host, self.port)
        self.clients.append(client)
        return client

    async def user(self, username: str | None = None, password: str = "secret1") -> LineClient:
        """A connected client, registered and logged in as a fresh user."""
        client = await self.client()
        await client.register(username, password)
        return client

    async def stored_bytes(self) -> bytes:
        """Everything the server has written to disk (database and WAL files)."""
        return b"".join(p.read_bytes() for p in self.data_dir.rglob("*") if p.is_file())

    async def stop(self) -> None:
        for client in self.clients:
            await client.close()
        self.clients.clear()
        await self.runtime.stop()

    async def restart(self) -> None:
        """Stop gracefully and start again on the same data (and port)."""
        port = self.port
        await self.stop()
        self.settings = self.settings.model_copy(
            update={"gateway": self.settings.gateway.model_copy(update={"port": port})}
        )
        self.runtime = EmbeddedRuntime(self.settings)
        await self.runtime.start()


ServerFactory = Callable[..., Awaitable[Any]]

# Protocol test modules run against both: `pytestmark = TOPOLOGIES`.
TOPOLOGIES = pytest.mark.parametrize("topology", ["embedded", "cluster"], indirect=True)


@pytest.fixture
def topology(request: pytest.FixtureRequest) -> str:
    """embedded (one process, SQLite) unless a module parametrises it."""
    return str(getattr(request, "param", "embedded"))


@pytest.fixture
async def server_factory(
    tmp_path: Path, topology: str, request: pytest.FixtureRequest
) -> AsyncIterator[ServerFactory]:
    """Start servers with custom settings; all stopped at teardown.

    ``cluster`` starts the distributed roles in this event loop against the
    real ZooKeeper (own chroot), Redis (own key prefix) and MariaDB (fresh
    database); ``embedded`` starts ``mpim up``'s runtime.
    """
    started: list[Any] = []

    async def start(**overrides: Any) -> Any:
        data_dir = tmp_path / f"data{len(started)}"
        if topology == "cluster":
            running: Any = await _start_cluster(request, data_dir, overrides)
        else:
            settings = make_settings(data_dir, **overrides)
            runtime = EmbeddedRuntime(settings)
            await runtime.start()
            running = RunningServer(settings, runtime)
        started.append(running)
        return running

    yield start
    for running in started:
        await (running.close() if topology == "cluster" else running.stop())


async def _start_cluster(
    request: pytest.FixtureRequest, data_dir: Path, overrides: dict[str, Any]
) -> Any:
    from tests.support.cluster import InProcessCluster

    # Only synchronous fixtures can be fetched here; Redis is checked inline.
    zookeeper = request.getfixturevalue("zookeeper")
    store_url = request.getfixturevalue("shared_mysql_url")
    from tests.support.databases import empty_database

    await asyncio.to_thread(empty_database, store_url)
    redis_settings = RedisSettings(
        **{
            "url": REDIS_URL,
            "key_prefix": f"mpimtest:{uuid.uuid4().hex}:",
            "socket_timeout_seconds": 1.0,
            **overrides.pop("redis", {}),
        }
    )
    client = redis_client(redis_settings)
    try:
        await client.ping()
    except REDIS_ERRORS as exc:
        await client.aclose()
        unavailable(f"Redis at {REDIS_URL} is unreachable: {exc}")
    settings = make_settings(
        data_dir,
        store={"url": store_url, **overrides.pop("store", {})},
        redis=redis_settings.model_dump(),
        zookeeper=zookeeper.settings().model_dump(),
        **overrides,
    )
    cluster = InProcessCluster(settings, on_stop=lambda: _forget_redis(client, redis_settings))
    try:
        await cluster.start()
    except BaseException:
        await cluster.stop()
        raise
    return cluster


async def _forget_redis(client: Redis, settings: RedisSettings) -> None:
    try:
        await delete_prefix(client, settings.key_prefix)
    except REDIS_ERRORS:
        pass  # a test's own Redis may be gone; its keys went with it
    finally:
        await client.aclose()


@pytest.fixture
async def server(server_factory: ServerFactory) -> Any:
    return await server_factory()


__all__ = ["IN_CI", "TOPOLOGIES", "Account", "RunningServer", "make_settings"]


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    """A started SQLite store in tmp_path, for tests of the parts above it."""
    database = Database(f"sqlite:///{tmp_path / 'store.sqlite3'}")
    await database.start()
    yield database
    await database.stop()
