"""Builders shared by both topologies: one place that turns Settings into services.

Embedded mode (runtime.py) passes in-process adapters; distributed mode
(node.py) passes Redis adapters and gRPC clients. The services themselves
are built the same way either way.
"""

from __future__ import annotations

import logging

from mpim.bus.base import Bus
from mpim.cache.base import Cache
from mpim.config import Settings
from mpim.metrics.families import MessageMetrics, StoreMetrics
from mpim.proto.interfaces import GroupService, PresenceService, UserService
from mpim.services.group import GroupServiceImpl
from mpim.services.message import MessageServiceImpl
from mpim.services.passwords import PasswordHasher
from mpim.services.throttle import LoginThrottle
from mpim.services.user import UserServiceImpl
from mpim.store.database import Database
from mpim.store.groups import GroupStore
from mpim.store.messages import MessageStore
from mpim.store.users import UserStore

logger = logging.getLogger(__name__)


def database(
    settings: Settings, metrics: StoreMetrics | None = None, *, writer_process: bool = True
) -> Database:
    """``writer_process``: False keeps writes on a thread even where settings allow a process."""
    return Database(
        settings.store_url(),
        sqlite_synchronous=settings.store.sqlite_synchronous,
        max_batch=settings.store.max_batch,
        server_timeout_seconds=settings.store.server_timeout_seconds,
        writer_process=settings.store.writer_process and writer_process,
        metrics=metrics,
    )


def password_hasher(settings: Settings) -> PasswordHasher:
    sec = settings.security
    return PasswordHasher(
        memory_kib=sec.argon2_memory_kib,
        time_cost=sec.argon2_time_cost,
        parallelism=sec.argon2_parallelism,
        threads=sec.hash_threads,
    )


def user_service(
    settings: Settings, db: Database, cache: Cache, hasher: PasswordHasher
) -> UserServiceImpl:
    sec = settings.security
    return UserServiceImpl(
        UserStore(db),
        cache,
        hasher,
        LoginThrottle(
            allowed=sec.login_failures_allowed,
            lockout=sec.login_lockout_seconds,
            max_lockout=sec.login_lockout_max_seconds,
            max_entries=sec.login_throttle_entries,
        ),
        token_ttl_seconds=sec.token_ttl_seconds,
        cache_ttl_seconds=settings.cache.ttl_seconds,
    )


def group_service(settings: Settings, db: Database, cache: Cache) -> GroupServiceImpl:
    return GroupServiceImpl(GroupStore(db), cache, cache_ttl_seconds=settings.cache.ttl_seconds)


def message_service(
    settings: Settings,
    db: Database,
    users: UserService,
    groups: GroupService,
    presence: PresenceService,
    bus: Bus,
    *,
    worker_id: int = 0,
    metrics: MessageMetrics | None = None,
) -> MessageServiceImpl:
    return MessageServiceImpl(
        MessageStore(db),
        users,
        groups,
        presence,
        bus,
        worker_id=worker_id,
        max_batch=settings.store.max_batch,
        fold_marks_seconds=settings.store.fold_marks_seconds,
        max_text_bytes=settings.gateway.max_text_bytes,
        metrics=metrics,
    )
