"""The composition root: builds the embedded topology from Settings.

Everything gets its dependencies here through ``__init__``; nothing connects
at import time. Distributed mode will build the same services behind gRPC.
"""

from __future__ import annotations

import logging

from mpim.bus.local import LocalBus
from mpim.cache.memory import MemoryCache
from mpim.config import Settings
from mpim.gateway.server import Gateway
from mpim.services.bundle import Services
from mpim.services.group import GroupServiceImpl
from mpim.services.message import MessageServiceImpl
from mpim.services.passwords import PasswordHasher
from mpim.services.presence import MemoryPresenceService
from mpim.services.throttle import LoginThrottle
from mpim.services.user import UserServiceImpl
from mpim.store.database import Database
from mpim.store.groups import GroupStore
from mpim.store.messages import MessageStore
from mpim.store.users import UserStore

logger = logging.getLogger(__name__)


class EmbeddedRuntime:
    """Every service and the gateway in one process, on SQLite by default."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        self.database = Database(
            settings.store_url(),
            sqlite_synchronous=settings.store.sqlite_synchronous,
            max_batch=settings.store.max_batch,
        )
        self.cache = MemoryCache(settings.cache.max_entries)
        self.bus = LocalBus()
        sec = settings.security
        self.hasher = PasswordHasher(
            memory_kib=sec.argon2_memory_kib,
            time_cost=sec.argon2_time_cost,
            parallelism=sec.argon2_parallelism,
            threads=sec.hash_threads,
        )
        self.user = UserServiceImpl(
            UserStore(self.database),
            self.cache,
            self.hasher,
            LoginThrottle(
                allowed=sec.login_failures_allowed,
                lockout=sec.login_lockout_seconds,
                max_lockout=sec.login_lockout_max_seconds,
                max_entries=sec.login_throttle_entries,
            ),
            token_ttl_seconds=sec.token_ttl_seconds,
            cache_ttl_seconds=settings.cache.ttl_seconds,
        )
        self.presence = MemoryPresenceService()
        self.group = GroupServiceImpl(
            GroupStore(self.database), self.cache, cache_ttl_seconds=settings.cache.ttl_seconds
        )
        self.message = MessageServiceImpl(
            MessageStore(self.database),
            self.user,
            self.group,
            self.presence,
            self.bus,
            max_batch=settings.store.max_batch,
            max_text_bytes=settings.gateway.max_text_bytes,
        )
        self.services = Services(self.user, self.presence, self.message, self.group)
        self.gateway = Gateway(settings.gateway, self.services, self.bus)

    @property
    def port(self) -> int:
        return self.gateway.port

    async def start(self) -> None:
        await self.database.start()
        await self.message.start()
        await self.gateway.start()

    async def stop(self) -> None:
        """Gateway first (in-flight sends finish), then the writer, then the store."""
        try:
            await self.gateway.stop()
        finally:
            await self.message.stop()
            await self.database.stop()
            self.hasher.close()
