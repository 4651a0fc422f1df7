"""RedisCache against a real Redis: cache-aside, TTLs, invalidation, outages."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from redis.asyncio import Redis

from mpim.cache.base import cache_aside
from mpim.cache.redis import RedisCache
from mpim.config import RedisSettings
from mpim.redisconn import redis_client
from tests.support.redis_server import (
    TEST_SOCKET_TIMEOUT,
    ThrowawayRedis,
    connected,
    records,
    wait_until,
)

pytest_plugins = ["tests.support.redis"]

LOGGER = "mpim.cache.redis"
RETRY = 0.2

CacheFactory = Callable[..., RedisCache]


@pytest.fixture
async def cache_factory() -> AsyncIterator[CacheFactory]:
    """RedisCaches on any Redis (by settings); their clients closed afterwards."""
    clients: list[Redis] = []

    def make(settings: RedisSettings, **options: Any) -> RedisCache:
        client = redis_client(settings)
        clients.append(client)
        return RedisCache(client, settings.key_prefix, retry_interval_seconds=RETRY, **options)

    yield make
    for client in clients:
        await client.aclose()


class Store:
    """Stands in for the database: counts loads, values can change."""

    def __init__(self) -> None:
        self.values: dict[str, bytes] = {}
        self.loads = 0

    async def read(self, cache: RedisCache, key: str) -> bytes | None:
        async def load() -> bytes | None:
            self.loads += 1
            return self.values.get(key)

        return await cache_aside(cache, key, 60.0, load, bytes, bytes)


async def test_cache_aside_counts_a_miss_then_hits(
    redis_settings: RedisSettings, redis: Redis, cache_factory: CacheFactory
) -> None:
    cache = cache_factory(redis_settings)
    store = Store()
    store.values["user:uid:1"] = b"alice"

    assert await store.read(cache, "user:uid:1") == b"alice"
    for _ in range(3):
        assert await store.read(cache, "user:uid:1") == b"alice"

    assert (*cache.metrics.totals(), store.loads) == (3, 1, 1)
    assert await redis.get(f"{redis_settings.key_prefix}cache:user:uid:1") == b"alice"


async def test_missing_values_are_not_cached(
    redis_settings: RedisSettings, cache_factory: CacheFactory
) -> None:
    cache = cache_factory(redis_settings)
    store = Store()
    assert await store.read(cache, "user:uid:404") is None
    assert await store.read(cache, "user:uid:404") is None
    assert (cache.metrics.totals()[1], store.loads) == (2, 2)


async def test_entries_expire_after_their_ttl(
    redis_settings: RedisSettings, redis: Redis, cache_factory: CacheFactory
) -> None:
    cache = cache_factory(redis_settings)
    await cache.set("group:info:1", b"g", ttl_seconds=0.2)
    ttl_ms = await redis.pttl(f"{cache.namespace}group:info:1")
    assert 0 < ttl_ms <= 200
    assert await cache.get("group:info:1") == b"g"

    async def expired() -> bool:
        return await cache.get("group:info:1") is None

    await wait_until(expired, timeout=5)


async def test_delete_invalidates_so_the_next_read_loads_the_new_value(
    redis_settings: RedisSettings, cache_factory: CacheFactory
) -> None:
    cache = cache_factory(redis_settings)
    store = Store()
    store.values = {"user:friends:1": b"2", "user:friends:2": b"1"}
    await store.read(cache, "user:friends:1")
    await store.read(cache, "user:friends:2")

    store.values = {"user:friends:1": b"", "user:friends:2": b""}  # the Store is written first
    await cache.delete("user:friends:1", "user:friends:2")

    assert await store.read(cache, "user:friends:1") == b""
    assert await store.read(cache, "user:friends:2") == b""
    assert store.loads == 4


async def test_two_processes_share_entries_and_invalidations(
    redis_settings: RedisSettings, cache_factory: CacheFactory
) -> None:
    writer, reader = cache_factory(redis_settings), cache_factory(redis_settings)
    await writer.set("group:members:5", b"1,2", 60)
    assert await reader.get("group:members:5") == b"1,2"
    await writer.delete("group:members:5")
    assert await reader.get("group:members:5") is None


async def test_unreachable_redis_falls_through_to_the_store_with_one_warning(
    dead_redis_settings: RedisSettings,
    cache_factory: CacheFactory,
    mpim_logs: pytest.LogCaptureFixture,
) -> None:
    cache = cache_factory(dead_redis_settings)
    store = Store()
    store.values["user:uid:1"] = b"alice"

    started = time.monotonic()
    for _ in range(50):
        assert await store.read(cache, "user:uid:1") == b"alice"
    await cache.delete("user:uid:1")  # a write's invalidation does not raise either
    elapsed = time.monotonic() - started

    assert store.loads == 50
    assert cache.metrics.totals()[1] == 50
    assert elapsed < 2.0
    assert len(records(mpim_logs, LOGGER, "WARNING")) == 1
    assert cache.breaker.outages == 1


async def test_frozen_redis_costs_one_timeout_per_probe_not_per_request(
    throwaway_redis: ThrowawayRedis,
    redis_prefix: str,
    cache_factory: CacheFactory,
    mpim_logs: pytest.LogCaptureFixture,
) -> None:
    cache = cache_factory(throwaway_redis.settings(redis_prefix))
    await cache.set("k", b"v", 60)
    throwaway_redis.freeze()

    started = time.monotonic()
    while not cache.breaker.in_outage:  # a timeout, then one immediate retry's timeout
        assert await cache.get("k") is None
    declared = time.monotonic() - started
    started = time.monotonic()
    for _ in range(200):
        assert await cache.get("k") is None
    rest = time.monotonic() - started

    assert declared < 1.5
    assert rest < TEST_SOCKET_TIMEOUT, "200 requests in an outage cost less than one timeout"
    assert cache.breaker.skipped >= 190

    throwaway_redis.thaw()

    async def back() -> bool:
        return await cache.get("k") == b"v"

    await wait_until(back)
    assert len(records(mpim_logs, LOGGER, "WARNING")) == 1
    assert len([m for m in records(mpim_logs, LOGGER, "INFO") if "again" in m]) == 1


async def test_caching_resumes_by_itself_after_redis_restarts(
    throwaway_redis: ThrowawayRedis,
    redis_prefix: str,
    cache_factory: CacheFactory,
    mpim_logs: pytest.LogCaptureFixture,
) -> None:
    cache = cache_factory(throwaway_redis.settings(redis_prefix))
    store = Store()
    store.values["user:uid:1"] = b"alice"
    await store.read(cache, "user:uid:1")

    await throwaway_redis.kill()
    for _ in range(20):
        assert await store.read(cache, "user:uid:1") == b"alice"
    await throwaway_redis.start()

    async def probed_back() -> bool:
        await store.read(cache, "user:uid:1")
        return cache.breaker.up

    await wait_until(probed_back)
    hits, loads = cache.metrics.totals()[0], store.loads
    assert await store.read(cache, "user:uid:1") == b"alice"
    assert (cache.metrics.totals()[0], store.loads) == (hits + 1, loads)
    assert len(records(mpim_logs, LOGGER, "WARNING")) == 1


async def test_delete_lost_in_an_outage_is_applied_before_reads_resume(
    throwaway_redis: ThrowawayRedis, redis_prefix: str, cache_factory: CacheFactory
) -> None:
    """Redis comes back with its old data; the stale value must never be served."""
    settings = throwaway_redis.settings(redis_prefix)
    cache = cache_factory(settings)
    await cache.set("user:friends:1", b"old", 60)
    await throwaway_redis.shutdown(save=True)

    await cache.delete("user:friends:1")  # the Store changed; Redis is unreachable
    assert cache.pending_deletes == 1
    await throwaway_redis.start()

    stale_key = f"{cache.namespace}user:friends:1"
    async with connected(settings) as raw:
        assert await raw.get(stale_key) == b"old", "Redis came back with the stale value"

        async def recovered() -> bool:
            assert await cache.get("user:friends:1") is None, "stale value served"
            return cache.breaker.up

        await wait_until(recovered)
        assert await raw.exists(stale_key) == 0
        assert cache.pending_deletes == 0


async def test_too_many_lost_deletes_flush_only_the_cache_namespace(
    throwaway_redis: ThrowawayRedis, redis_prefix: str, cache_factory: CacheFactory
) -> None:
    settings = throwaway_redis.settings(redis_prefix)
    cache = cache_factory(settings, max_pending_deletes=3)
    foreign_key = f"{redis_prefix}presence:route:1"
    for i in range(6):
        await cache.set(f"group:info:{i}", b"old", 60)
    async with connected(settings) as raw:
        await raw.set(foreign_key, b"not the cache's")
    await throwaway_redis.shutdown(save=True)

    await cache.delete(*(f"group:info:{i}" for i in range(5)))
    await throwaway_redis.start()

    async def recovered() -> bool:
        await cache.get("group:info:0")
        return cache.breaker.up

    await wait_until(recovered)
    for i in range(6):
        assert await cache.get(f"group:info:{i}") is None
    async with connected(settings) as raw:
        assert await raw.get(foreign_key) == b"not the cache's"


async def test_a_restart_between_requests_is_no_outage(
    throwaway_redis: ThrowawayRedis,
    redis_prefix: str,
    cache_factory: CacheFactory,
    mpim_logs: pytest.LogCaptureFixture,
) -> None:
    """Pooled connections all die with the server; that alone must not cost
    a retry interval of cache misses, nor a warning."""
    cache = cache_factory(throwaway_redis.settings(redis_prefix))
    store = Store()
    store.values["user:uid:1"] = b"alice"
    await store.read(cache, "user:uid:1")

    await throwaway_redis.kill()
    await throwaway_redis.start()

    await store.read(cache, "user:uid:1")  # a dead pooled connection: miss, reconnect
    hits = cache.metrics.totals()[0]
    assert await store.read(cache, "user:uid:1") == b"alice"

    assert cache.metrics.totals()[0] == hits + 1
    assert cache.breaker.up
    assert records(mpim_logs, LOGGER, "WARNING") == []
