"""Token AUTH through the cache, and the purge of expired tokens.

The user service on a real Store (SQLite; the purge on every backend) and a
real cache (in-process, and Redis where two instances share one): a revoked
token is refused at once even while cached, also when the revoke races a
cache fill; no cache entry outlives its token; the purge deletes exactly the
expired rows.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis

from mpim.cache import keys
from mpim.cache.base import Cache
from mpim.cache.memory import MemoryCache
from mpim.cache.redis import RedisCache
from mpim.config import RedisSettings
from mpim.errors import ErrorCode, MpimError
from mpim.proto import user_pb2
from mpim.redisconn import redis_client
from mpim.services.clock import now_ms
from mpim.services.passwords import PasswordHasher
from mpim.services.throttle import LoginThrottle
from mpim.services.user import TOKEN_REVOKED, UserServiceImpl, hash_token
from mpim.store.database import Database
from mpim.store.users import TokenRow, UserStore
from tests.support.databases import mysql_url, postgres_url  # noqa: F401 (fixtures)

pytest_plugins = ["tests.support.redis"]


class PausingUserStore(UserStore):
    """The real Store, except that ``get_token`` can hold its (real) answer
    until released: the window in which a revoke races a cache fill."""

    def __init__(self, db: Database) -> None:
        super().__init__(db)
        self.pause = False
        self.read_done = asyncio.Event()
        self.release = asyncio.Event()

    async def get_token(self, token_hash: str) -> TokenRow | None:
        row = await super().get_token(token_hash)
        if self.pause:
            self.read_done.set()
            await self.release.wait()
        return row


class PausingFills:
    """Mixed into a real cache: its fills (``add``) can be held, like a Redis
    SET NX still in flight while another request's commands overtake it."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.pause = False
        self.fill_started = asyncio.Event()
        self.release = asyncio.Event()

    async def add(self, key: str, value: bytes, ttl_seconds: float) -> None:
        if self.pause:
            self.fill_started.set()
            await self.release.wait()
        await super().add(key, value, ttl_seconds)  # type: ignore[misc]


class PausingMemoryCache(PausingFills, MemoryCache):
    pass


class PausingRedisCache(PausingFills, RedisCache):
    pass


@pytest.fixture
def hasher() -> Iterator[PasswordHasher]:
    fast = PasswordHasher(memory_kib=256, time_cost=1, parallelism=1, threads=1)
    yield fast
    fast.close()


@pytest.fixture
async def redis_cache(redis_settings: RedisSettings) -> AsyncIterator[RedisCache]:
    client = redis_client(redis_settings)
    yield RedisCache(client, redis_settings.key_prefix)
    await client.aclose()


def service(
    store: UserStore,
    cache: Cache,
    hasher: PasswordHasher,
    *,
    token_ttl_seconds: int = 3600,
    cache_ttl_seconds: float = 300.0,
    **options: Any,
) -> UserServiceImpl:
    throttle = LoginThrottle(allowed=5, lockout=1.0, max_lockout=60.0, max_entries=1000)
    return UserServiceImpl(
        store,
        cache,
        hasher,
        throttle,
        token_ttl_seconds=token_ttl_seconds,
        cache_ttl_seconds=cache_ttl_seconds,
        **options,
    )


async def register(users: UserServiceImpl, name: str) -> user_pb2.LoginReply:
    return await users.Register(user_pb2.RegisterRequest(username=name, password="secret1"))


async def auth(users: UserServiceImpl, token: str) -> int | None:
    """The uid AUTH answers, or None for ``-ERR auth failed``."""
    try:
        reply = await users.Authenticate(user_pb2.AuthenticateRequest(token=token))
    except MpimError as exc:
        assert exc.code is ErrorCode.AUTH_FAILED
        return None
    return reply.uid


async def logout(users: UserServiceImpl, token: str) -> None:
    await users.Logout(user_pb2.LogoutRequest(token=token))


def token_key(token: str) -> str:
    return keys.user_token(hash_token(token))


# -- served from the cache ----------------------------------------------------------


async def test_auth_is_served_from_the_cache_keyed_by_the_token_hash(
    db: Database, hasher: PasswordHasher
) -> None:
    cache = MemoryCache()
    users = service(UserStore(db), cache, hasher)
    reply = await register(users, "alice")
    # Filled at issue, under the sha256 only: the raw token is no key.
    assert await cache.get(token_key(reply.token)) is not None
    assert not any(reply.token in key for key in cache._data)

    # Proof that AUTH no longer reads the Store: a row changed behind the
    # cache's back (never done by the service) goes unnoticed until the
    # entry is dropped, then the Store answers again.
    await db.write(lambda conn: conn.exec_driver_sql("UPDATE tokens SET uid = 999"))
    assert await auth(users, reply.token) == reply.uid
    await cache.delete(token_key(reply.token))
    assert await auth(users, reply.token) is None  # uid 999 does not exist


async def test_a_cache_miss_reads_the_store_and_fills_the_cache(
    db: Database, hasher: PasswordHasher
) -> None:
    cache = MemoryCache()
    users = service(UserStore(db), cache, hasher)
    reply = await register(users, "bob")
    await cache.delete(token_key(reply.token))  # as after a restart or an eviction
    assert await auth(users, reply.token) == reply.uid
    assert await cache.get(token_key(reply.token)) is not None
    assert await auth(users, reply.token) == reply.uid


async def test_unknown_tokens_are_refused_and_not_cached(
    db: Database, hasher: PasswordHasher
) -> None:
    cache = MemoryCache()
    users = service(UserStore(db), cache, hasher)
    await register(users, "carol")
    entries = len(cache)
    for token in ("x", "0" * 43, "a" * 1000):
        assert await auth(users, token) is None
    assert len(cache) == entries


# -- revocation wins at once ----------------------------------------------------------


async def test_a_cached_token_is_refused_right_after_logout(
    db: Database, hasher: PasswordHasher
) -> None:
    cache = MemoryCache()
    users = service(UserStore(db), cache, hasher)
    reply = await register(users, "dave")
    assert await auth(users, reply.token) == reply.uid
    await logout(users, reply.token)
    assert await auth(users, reply.token) is None
    assert await cache.get(token_key(reply.token)) == TOKEN_REVOKED


async def test_a_logout_committed_during_a_cache_fill_wins(
    db: Database, hasher: PasswordHasher
) -> None:
    """The AUTH read the row before the revoke; it must not cache it afterwards."""
    cache = MemoryCache()
    store = PausingUserStore(db)
    users = service(store, cache, hasher)
    reply = await register(users, "erin")
    await cache.delete(token_key(reply.token))
    store.pause = True
    racing = asyncio.create_task(auth(users, reply.token))
    await store.read_done.wait()  # it has read "valid" from the Store
    await logout(users, reply.token)
    store.release.set()
    assert await racing is None
    store.pause = False
    assert await cache.get(token_key(reply.token)) == TOKEN_REVOKED
    assert await auth(users, reply.token) is None


async def _fill_overtaken_by_logout(
    db: Database, cache: PausingMemoryCache | PausingRedisCache, hasher: PasswordHasher
) -> None:
    """The fill's write overtaken by the whole LOGOUT (possible with Redis:
    two commands on two pooled connections) must not replace the tombstone,
    or every other instance would accept the token until the entry expires."""
    users = service(UserStore(db), cache, hasher)
    other_instance = service(UserStore(db), cache, hasher)
    reply = await register(users, "fiona")
    await cache.delete(token_key(reply.token))
    cache.pause = True
    racing = asyncio.create_task(auth(users, reply.token))
    await cache.fill_started.wait()  # checked for a tombstone: none yet
    await logout(users, reply.token)
    cache.release.set()
    await racing  # concurrent with the LOGOUT: either answer is right
    cache.pause = False
    assert await cache.get(token_key(reply.token)) == TOKEN_REVOKED
    for instance in (users, other_instance):
        assert await auth(instance, reply.token) is None


async def test_a_fill_landing_after_the_logout_leaves_the_tombstone_in_memory(
    db: Database, hasher: PasswordHasher
) -> None:
    await _fill_overtaken_by_logout(db, PausingMemoryCache(), hasher)


async def test_a_fill_landing_after_the_logout_leaves_the_tombstone_in_redis(
    db: Database, hasher: PasswordHasher, redis_settings: RedisSettings
) -> None:
    client = redis_client(redis_settings)
    try:
        await _fill_overtaken_by_logout(
            db, PausingRedisCache(client, redis_settings.key_prefix), hasher
        )
    finally:
        await client.aclose()


async def test_a_fill_does_not_replace_a_value_but_does_fill_an_expired_one() -> None:
    cache = MemoryCache()
    await cache.set("k", b"tombstone", 60)
    await cache.add("k", b"fill", 60)
    assert await cache.get("k") == b"tombstone"
    await cache.set("e", b"old", 0.001)
    await asyncio.sleep(0.01)
    await cache.add("e", b"fill", 60)
    assert await cache.get("e") == b"fill"


async def _revoke_on_another_instance(db: Database, cache: Cache, hasher: PasswordHasher) -> None:
    """Two user-service instances share the Store and the cache; one revokes
    while the other is filling the cache from a read made before the revoke."""
    store = PausingUserStore(db)
    first = service(store, cache, hasher)
    second = service(UserStore(db), cache, hasher)
    reply = await register(first, "frank")
    assert await auth(first, reply.token) == reply.uid
    assert await auth(second, reply.token) == reply.uid

    # Cached on both: the other instance's logout is seen at once.
    await logout(second, reply.token)
    assert await auth(first, reply.token) is None

    # The race: the first instance read the Store before the revoke.
    other = await first.Login(user_pb2.LoginRequest(username="frank", password="secret1"))
    await cache.delete(token_key(other.token))
    store.pause = True
    racing = asyncio.create_task(auth(first, other.token))
    await store.read_done.wait()
    await logout(second, other.token)
    store.release.set()
    assert await racing is None
    store.pause = False
    assert await cache.get(token_key(other.token)) == TOKEN_REVOKED
    for instance in (first, second):
        assert await auth(instance, other.token) is None


async def test_a_logout_on_another_instance_wins_in_memory(
    db: Database, hasher: PasswordHasher
) -> None:
    await _revoke_on_another_instance(db, MemoryCache(), hasher)


async def test_a_logout_on_another_instance_wins_in_redis(
    db: Database, hasher: PasswordHasher, redis_cache: RedisCache
) -> None:
    await _revoke_on_another_instance(db, redis_cache, hasher)


# -- no entry outlives its token ----------------------------------------------------


async def test_an_expired_token_is_refused_at_once_and_its_entry_is_gone(
    db: Database, hasher: PasswordHasher
) -> None:
    cache = MemoryCache()
    store = UserStore(db)
    users = service(store, cache, hasher, token_ttl_seconds=1)
    reply = await register(users, "gina")
    assert await auth(users, reply.token) == reply.uid
    row = await store.get_token(hash_token(reply.token))
    assert row is not None
    await asyncio.sleep((row.expires_at_ms - now_ms()) / 1000 + 0.05)
    assert await cache.get(token_key(reply.token)) is None
    assert await auth(users, reply.token) is None


async def test_a_cached_entry_is_checked_against_the_expiry_it_carries(
    db: Database, hasher: PasswordHasher
) -> None:
    """Belt and braces: even an entry that outlived its TTL is not accepted."""
    cache = MemoryCache()
    users = service(UserStore(db), cache, hasher)
    reply = await register(users, "hank")
    await cache.set(token_key(reply.token), b"%d:%d" % (reply.uid, now_ms() - 1), 300)
    assert await auth(users, reply.token) is None


async def test_redis_ttl_is_bounded_by_the_token_lifetime_and_the_cache_ttl(
    db: Database, hasher: PasswordHasher, redis_cache: RedisCache, redis: Redis
) -> None:
    short_token = service(UserStore(db), redis_cache, hasher, token_ttl_seconds=5)
    short_cache = service(UserStore(db), redis_cache, hasher, cache_ttl_seconds=2.0)

    def name(token: str) -> str:
        return redis_cache.namespace + token_key(token)

    reply = await register(short_token, "ivy")
    assert 0 < await redis.pttl(name(reply.token)) <= 5000

    reply = await register(short_cache, "jack")
    assert 0 < await redis.pttl(name(reply.token)) <= 2000

    # A fill after a miss is bounded by what is left of the token's life.
    reply = await register(short_token, "kate")
    await asyncio.sleep(1.0)
    await redis_cache.delete(token_key(reply.token))
    assert await auth(short_token, reply.token) == reply.uid
    assert 0 < await redis.pttl(name(reply.token)) <= 4000


# -- purging expired tokens ------------------------------------------------------


@pytest.fixture(params=["sqlite", "mysql", "postgres"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'purge.sqlite3'}"
    return str(request.getfixturevalue(f"{request.param}_url"))


async def _add_tokens(store: UserStore, now: int) -> tuple[list[str], list[str]]:
    """Expired and live token rows (by hash); one expires exactly at ``now``."""
    expired = [f"expired{i:02d}" for i in range(7)]
    live = ["live-a", "live-b", "live-at-now"]
    for i, token_hash in enumerate(expired):
        await store.add_token(token_hash, 1, now - 10_000, now - 1 - i * 1000)
    await store.add_token("live-a", 1, now, now + 60_000)
    await store.add_token("live-b", 1, now, now + 1)
    await store.add_token("live-at-now", 1, now, now)
    return expired, live


async def test_purge_deletes_only_expired_rows_in_bounded_batches(store_url: str) -> None:
    db = Database(store_url)
    await db.start()
    try:
        store = UserStore(db)
        now = now_ms()
        expired, live = await _add_tokens(store, now)
        batches = []
        while deleted := await store.delete_expired_tokens(now, 3):
            batches.append(deleted)
        assert batches == [3, 3, 1]
        for token_hash in expired:
            assert await store.get_token(token_hash) is None
        for token_hash in live:
            assert await store.get_token(token_hash) is not None
    finally:
        await db.stop()


async def test_the_service_purges_every_expired_row_and_keeps_the_rest(
    db: Database, hasher: PasswordHasher
) -> None:
    store = UserStore(db)
    users = service(store, MemoryCache(), hasher, purge_batch=2)
    reply = await register(users, "liam")
    expired, _ = await _add_tokens(store, now_ms())
    await asyncio.sleep(0.01)  # live-b and live-at-now have expired too by then
    assert await users.purge_expired_tokens() == len(expired) + 2
    assert await store.get_token("live-a") is not None
    assert await auth(users, reply.token) == reply.uid
    assert await users.purge_expired_tokens() == 0


async def test_the_purge_runs_in_the_background_between_start_and_stop(
    db: Database, hasher: PasswordHasher
) -> None:
    store = UserStore(db)
    users = service(store, MemoryCache(), hasher, purge_interval_seconds=0.05)
    expired, _ = await _add_tokens(store, now_ms())
    await users.start()
    try:
        deadline = time.monotonic() + 5.0
        while await store.get_token(expired[-1]) is not None:
            assert time.monotonic() < deadline, "expired tokens not purged in 5 s"
            await asyncio.sleep(0.02)
        assert await store.get_token("live-a") is not None
    finally:
        await users.stop()
    await users.stop()  # idempotent
    # Stopped: nothing purges any more.
    await store.add_token("expired-after-stop", 1, 0, 1)
    await asyncio.sleep(0.2)
    assert await store.get_token("expired-after-stop") is not None
