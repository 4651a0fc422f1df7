"""What every cache adapter offers, and the cache-aside read built on it."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Protocol, TypeVar

from mpim.metrics.families import CacheMetrics

T = TypeVar("T")


class Cache(Protocol):
    """Bytes in, bytes out, so memory and Redis behave the same."""

    metrics: CacheMetrics

    async def get(self, key: str) -> bytes | None: ...

    async def set(self, key: str, value: bytes, ttl_seconds: float) -> None: ...

    async def add(self, key: str, value: bytes, ttl_seconds: float) -> None:
        """``set`` only if the key holds nothing: a fill from the Store must
        not overwrite what a writer stored meanwhile (a revocation's tombstone)."""
        ...

    async def delete(self, *keys: str) -> None: ...


async def cache_aside(
    cache: Cache,
    key: str,
    ttl_seconds: float,
    load: Callable[[], Awaitable[T | None]],
    encode: Callable[[T], bytes],
    decode: Callable[[bytes], T],
) -> T | None:
    """Read through the cache; the Store stays the truth. None is not cached.

    Counted by key kind: ``user:friends:5`` is a ``user:friends`` lookup.
    """
    raw = await cache.get(key)
    kind = key.rpartition(":")[0]
    if raw is not None:
        cache.metrics.lookup(kind, hit=True)
        return decode(raw)
    cache.metrics.lookup(kind, hit=False)
    value = await load()
    if value is not None:
        await cache.set(key, encode(value), ttl_seconds)
    return value
