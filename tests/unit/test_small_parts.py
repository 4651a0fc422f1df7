"""Ids, throttling, rate limiting, cache: pure parts without sockets."""

from __future__ import annotations

import time

import pytest

from mpim.cache.memory import MemoryCache
from mpim.gateway import ratelimit
from mpim.gateway.ratelimit import TokenBucket
from mpim.ids import SnowflakeIds, timestamp_ms
from mpim.services.throttle import LoginThrottle


def test_snowflake_ids_increase_and_carry_their_time() -> None:
    ids = SnowflakeIds(worker_id=7)
    values = [ids.next_id() for _ in range(20000)]
    assert values == sorted(values)
    assert len(set(values)) == len(values)
    assert abs(timestamp_ms(values[0]) - time.time() * 1000) < 5000
    assert all(0 < v < 2**63 for v in values)


def test_snowflake_workers_never_collide() -> None:
    a, b = SnowflakeIds(1), SnowflakeIds(2)
    assert not {a.next_id() for _ in range(1000)} & {b.next_id() for _ in range(1000)}


def test_login_throttle_locks_after_allowed_failures_and_doubles() -> None:
    throttle = LoginThrottle(allowed=3, lockout=10, max_lockout=25, max_entries=100)
    now = 1000.0
    for _ in range(2):
        throttle.failed("alice", now)
    assert not throttle.is_locked("alice", now)
    throttle.failed("alice", now)
    assert throttle.is_locked("alice", now + 9)
    assert not throttle.is_locked("alice", now + 11)
    throttle.failed("alice", now + 11)  # second lockout: 20 s
    assert throttle.is_locked("alice", now + 30)
    throttle.failed("alice", now + 40)  # capped at 25 s
    assert not throttle.is_locked("alice", now + 66)
    assert not throttle.is_locked("bob", now)
    throttle.succeeded("alice")
    assert not throttle.is_locked("alice", now + 41)


def test_login_throttle_memory_is_bounded() -> None:
    throttle = LoginThrottle(allowed=1, lockout=100, max_lockout=100, max_entries=100)
    for i in range(10000):
        throttle.failed(f"user{i}", 0.0)
    assert len(throttle._entries) == 100
    assert throttle.is_locked("user9999", 1.0)


def test_token_bucket_allows_burst_then_refuses() -> None:
    bucket = TokenBucket(rate=1, burst=5)
    assert [bucket.take() for _ in range(6)] == [True] * 5 + [False]
    assert all(TokenBucket(rate=0, burst=1).take() for _ in range(100))


def test_token_bucket_refills_at_its_rate_up_to_the_burst(monkeypatch: pytest.MonkeyPatch) -> None:
    now = [1000.0]
    monkeypatch.setattr(ratelimit.time, "monotonic", lambda: now[0])
    bucket = TokenBucket(rate=4, burst=3)
    assert [bucket.take() for _ in range(4)] == [True] * 3 + [False]
    now[0] += 0.25  # one token back
    assert [bucket.take() for _ in range(2)] == [True, False]
    now[0] += 0.125  # half a token is not one
    assert not bucket.take()
    now[0] += 60  # a long pause refills only up to the burst
    assert [bucket.take() for _ in range(4)] == [True] * 3 + [False]


async def test_memory_cache_expires_and_evicts_lru() -> None:
    cache = MemoryCache(max_entries=2)
    await cache.set("a", b"1", 60)
    await cache.set("b", b"2", 60)
    assert await cache.get("a") == b"1"
    await cache.set("c", b"3", 60)  # evicts b, the least recently used
    assert await cache.get("b") is None
    assert await cache.get("a") == b"1"
    await cache.set("d", b"4", -1)
    assert await cache.get("d") is None
    await cache.delete("a", "missing")
    assert await cache.get("a") is None
