"""An in-process LRU cache with TTLs: the embedded Cache adapter."""

from __future__ import annotations

import time
from collections import OrderedDict

from mpim.metrics.families import CacheMetrics


class MemoryCache:
    """Bounded by entry count; expired entries are dropped when read."""

    def __init__(self, max_entries: int = 200_000, metrics: CacheMetrics | None = None) -> None:
        self._max = max_entries
        self._data: OrderedDict[str, tuple[float, bytes]] = OrderedDict()
        self.metrics = metrics if metrics is not None else CacheMetrics()

    async def get(self, key: str) -> bytes | None:
        value = self._live(key)
        if value is not None:
            self._data.move_to_end(key)
        return value

    async def set(self, key: str, value: bytes, ttl_seconds: float) -> None:
        self._put(key, value, ttl_seconds)

    async def add(self, key: str, value: bytes, ttl_seconds: float) -> None:
        # No await between the check and the write: atomic on the event loop.
        if self._live(key) is None:
            self._put(key, value, ttl_seconds)

    def _live(self, key: str) -> bytes | None:
        """The key's value unless missing or expired (an expired entry is dropped)."""
        entry = self._data.get(key)
        if entry is None:
            return None
        expires, value = entry
        if expires < time.monotonic():
            del self._data[key]
            return None
        return value

    def _put(self, key: str, value: bytes, ttl_seconds: float) -> None:
        if self._max <= 0:
            return
        self._data[key] = (time.monotonic() + ttl_seconds, value)
        self._data.move_to_end(key)
        while len(self._data) > self._max:
            self._data.popitem(last=False)

    async def delete(self, *keys: str) -> None:
        for key in keys:
            self._data.pop(key, None)

    def __len__(self) -> int:
        return len(self._data)
