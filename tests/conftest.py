"""Fixtures: a real embedded MPIM on a free port, and real TCP clients."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from mpim.config import Settings, load_settings
from mpim.runtime import EmbeddedRuntime
from tests.support.lineclient import Account, LineClient

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")

# argon2id with a small memory cost keeps hundreds of test registrations fast;
# the production defaults are covered by their own test.
FAST_HASH: dict[str, Any] = {"argon2_memory_kib": 256, "argon2_time_cost": 1}


def make_settings(data_dir: Path, **overrides: Any) -> Settings:
    gateway = {
        "host": "127.0.0.1",
        "port": 0,
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

    async def client(self) -> LineClient:
        client = await LineClient.connect(self.host, self.port)
        self.clients.append(client)
        return client

    async def user(self, username: str | None = None, password: str = "secret1") -> LineClient:
        """A connected client, registered and logged in as a fresh user."""
        client = await self.client()
        await client.register(username, password)
        return client

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


ServerFactory = Callable[..., Awaitable[RunningServer]]


@pytest.fixture
async def server_factory(tmp_path: Path) -> AsyncIterator[ServerFactory]:
    """Start embedded servers with custom settings; all stopped at teardown."""
    started: list[RunningServer] = []

    async def start(**overrides: Any) -> RunningServer:
        data_dir = tmp_path / f"data{len(started)}"
        settings = make_settings(data_dir, **overrides)
        runtime = EmbeddedRuntime(settings)
        await runtime.start()
        running = RunningServer(settings, runtime)
        started.append(running)
        return running

    yield start
    for running in started:
        await running.stop()


@pytest.fixture
async def server(server_factory: ServerFactory) -> RunningServer:
    return await server_factory()


__all__ = ["IN_CI", "Account", "RunningServer", "make_settings"]
