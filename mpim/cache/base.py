"""What every cache adapter offers, and the cache-aside read built on it."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol, TypeVar

T = TypeVar("T")


@dataclass(slots=True)
class CacheStats:
    hits: int = 0
    misses: int = 0

    @property
    def hit_ratio(self) -> float:
        total = self.hits + self.misses
        return self.hits / total if total else 0.0


class Cache(Protocol):
    """Bytes in, bytes out, so memory and Redis behave the same."""

    stats: CacheStats

    async def get(self, key: str) -> bytes | None: ...

    async def set(self, key: str, value: bytes, ttl_seconds: float) -> None: ...

    async def delete(self, *keys: str) -> None: ...


async def cache_aside(
    cache: Cache,
    key: str,
    ttl_seconds: float,
    load: Callable[[], Awaitable[T | None]],
    encode: Callable[[T], bytes],
    decode: Callable[[bytes], T],
) -> T | None:
    """Read through the cache; the Store stays the truth. None is not cached."""
    raw = await cache.get(key)
    if raw is not None:
        cache.stats.hits += 1
        return decode(raw)
    cache.stats.misses += 1
    value = await load()
    if value is not None:
        await cache.set(key, encode(value), ttl_seconds)
    return value
