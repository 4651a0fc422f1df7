"""The composition root: builds the embedded topology from Settings.

Everything gets its dependencies here through ``__init__``; nothing connects
at import time. Distributed mode will build the same services behind gRPC.
"""

from __future__ import annotations

import logging

from mpim import assembly
from mpim.bus.local import LocalBus
from mpim.cache.memory import MemoryCache
from mpim.config import Settings
from mpim.gateway.server import Gateway
from mpim.metrics.endpoints import OpsEndpoints
from mpim.metrics.families import (
    CacheMetrics,
    GatewayMetrics,
    MessageMetrics,
    StoreMetrics,
    new_registry,
)
from mpim.metrics.health import Readiness
from mpim.services.bundle import Services
from mpim.services.presence import MemoryPresenceService

logger = logging.getLogger(__name__)


class EmbeddedRuntime:
    """Every service and the gateway in one process, on SQLite by default."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        # One registry for the process: /metrics on the gateway's HTTP port.
        self.metrics = new_registry()
        cache_metrics = CacheMetrics(self.metrics)
        self.database = assembly.database(settings, StoreMetrics(self.metrics))
        self.cache = MemoryCache(settings.cache.max_entries, cache_metrics)
        self.bus = LocalBus()
        self.hasher = assembly.password_hasher(settings)
        self.user = assembly.user_service(settings, self.database, self.cache, self.hasher)
        self.presence = MemoryPresenceService(cache_metrics)
        self.group = assembly.group_service(settings, self.database, self.cache)
        self.message = assembly.message_service(
            settings,
            self.database,
            self.user,
            self.group,
            self.presence,
            self.bus,
            metrics=MessageMetrics(self.metrics),
        )
        self.services = Services(self.user, self.presence, self.message, self.group)
        self.gateway = Gateway(
            settings.gateway, self.services, self.bus, metrics=GatewayMetrics(self.metrics)
        )
        readiness = Readiness()
        readiness.add("store", self.database.ping)
        self.ops = OpsEndpoints(self.metrics, readiness)

    @property
    def port(self) -> int:
        return self.gateway.port

    async def start(self) -> None:
        await self.database.start()
        await self.user.start()
        await self.message.start()
        await self.gateway.start()
        if self.gateway.http is not None:
            self.ops.mount(self.gateway.http)

    async def stop(self) -> None:
        """Gateway first (in-flight sends finish), then the writer, then the store."""
        try:
            await self.gateway.stop()
        finally:
            await self.message.stop()
            await self.user.stop()
            await self.database.stop()
            self.hasher.close()
