"""The distributed Cache adapter: Redis strings with TTLs, shared by every process.

Keys are ``{key_prefix}cache:{key}`` (for example ``mpim:cache:user:uid:7``).
The ``cache:`` segment gives the cache a namespace of its own, so that
flushing it (see below) can never touch presence routes or anything else
stored under the deployment's prefix.

Redis being down must never fail a request, and must not make every request
wait for a timeout: a ``Breaker`` skips Redis for the rest of an outage and
lets one request probe it again every ``retry_interval_seconds``. While it is
down ``get`` misses (the caller falls through to the Store), ``set`` is
dropped and ``delete`` is remembered.

Why remember deletes: cache-aside writes the Store first and then deletes
the key. If that delete is lost while Redis is unreachable, but Redis keeps
its data (a network cut, a frozen or persisted server), the old value would
be served again when Redis returns - until its TTL runs out. So a delete that
could not be applied is kept in ``_pending``, and the probe that ends an
outage applies every pending delete *before* this cache serves a read again;
if that fails, the outage goes on. When more than ``max_pending_deletes``
keys pile up, they are replaced by one flush of the whole cache namespace.

What this cannot cover (documented, bounded by the TTL): another process
that still reaches Redis while this one cannot will read the old value until
this process gets through, and a process that dies during an outage takes
its pending deletes with it.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Iterable

from redis.asyncio import Redis

from mpim.metrics.families import CacheMetrics
from mpim.redisconn import REDIS_ERRORS, Breaker, drop_idle_connections

logger = logging.getLogger(__name__)

_DELETE_CHUNK = 1000
_GLOB_SPECIAL = str.maketrans({c: "\\" + c for c in "*?[]\\"})


class RedisCache:
    """Implements the Cache protocol on Redis; hits and misses are counted by
    ``cache_aside`` in ``stats``, exactly as for ``MemoryCache``.

    ``redis`` comes from ``mpim.redisconn.redis_client``; with ``owns_client``
    ``close()`` closes it, otherwise its creator does.
    """

    def __init__(
        self,
        redis: Redis,
        key_prefix: str,
        *,
        owns_client: bool = False,
        retry_interval_seconds: float = 1.0,
        max_pending_deletes: int = 10_000,
        metrics: CacheMetrics | None = None,
    ) -> None:
        self._redis = redis
        self._owns_client = owns_client
        self._ns = f"{key_prefix}cache:"
        self._max_pending = max_pending_deletes
        # key -> stamp of the latest failed delete; a replay removes a key only
        # if no newer delete of it failed meanwhile.
        self._pending: dict[str, int] = {}
        self._stamps = itertools.count()
        self._flush_needed = False
        self.metrics = metrics if metrics is not None else CacheMetrics()
        self.breaker = Breaker("cache", logger, retry_interval_seconds)

    @property
    def namespace(self) -> str:
        """The prefix of every key this cache writes."""
        return self._ns

    @property
    def pending_deletes(self) -> int:
        return len(self._pending)

    async def close(self) -> None:
        if self._pending or self._flush_needed:
            logger.warning("cache closed with invalidations not applied (TTL bounds them)")
        if self._owns_client:
            await self._redis.aclose()

    async def get(self, key: str) -> bytes | None:
        if not await self._usable():
            return None
        try:
            value = await self._redis.get(self._ns + key)
        except REDIS_ERRORS as exc:
            await self._failed(exc)
            return None
        return value if isinstance(value, bytes) else None

    async def set(self, key: str, value: bytes, ttl_seconds: float) -> None:
        await self._write(key, value, ttl_seconds, only_if_absent=False)

    async def add(self, key: str, value: bytes, ttl_seconds: float) -> None:
        # SET NX: atomic in Redis, so a tombstone written by another process
        # between this process's Store read and this write is never replaced.
        await self._write(key, value, ttl_seconds, only_if_absent=True)

    async def _write(
        self, key: str, value: bytes, ttl_seconds: float, *, only_if_absent: bool
    ) -> None:
        if not await self._usable():
            return
        px = max(1, round(ttl_seconds * 1000))
        try:
            await self._redis.set(self._ns + key, value, px=px, nx=only_if_absent)
        except REDIS_ERRORS as exc:
            await self._failed(exc)

    async def delete(self, *keys: str) -> None:
        if not keys:
            return
        if await self._usable():
            try:
                await self._redis.delete(*(self._ns + k for k in keys))
                return
            except REDIS_ERRORS as exc:
                self._remember(keys)
                await self._failed(exc)
                return
        self._remember(keys)

    # -- outage handling ------------------------------------------------------

    async def _failed(self, exc: Exception) -> None:
        if self.breaker.failed(exc):
            await drop_idle_connections(self._redis)

    def _remember(self, keys: Iterable[str]) -> None:
        if self._flush_needed:
            return
        for key in keys:
            self._pending[key] = next(self._stamps)
        if len(self._pending) > self._max_pending:
            logger.warning(
                "more than %d cache invalidations failed during this outage; "
                "the whole cache namespace %s will be flushed when Redis returns",
                self._max_pending,
                self._ns,
            )
            self._pending.clear()
            self._flush_needed = True

    async def _usable(self) -> bool:
        """True when Redis may be used; a probe first applies lost deletes."""
        token = self.breaker.attempt()
        if token is None:
            return False
        if self.breaker.up:
            return True
        try:
            await self._apply_pending()
        except REDIS_ERRORS as exc:
            await self._failed(exc)
            return False
        self.breaker.succeeded(token)
        return self.breaker.up

    async def _apply_pending(self) -> None:
        """Apply the invalidations lost in the outage; PING if there are none."""
        if self._flush_needed:
            await self._flush_namespace()
            self._flush_needed = False
        if not self._pending:
            await self._redis.ping()
            return
        while self._pending:
            chunk = dict(itertools.islice(self._pending.items(), _DELETE_CHUNK))
            await self._redis.delete(*(self._ns + k for k in chunk))
            for key, stamp in chunk.items():
                if self._pending.get(key) == stamp:
                    del self._pending[key]
        logger.info("applied the cache invalidations that failed during the outage")

    async def _flush_namespace(self) -> None:
        pattern = self._ns.translate(_GLOB_SPECIAL) + "*"
        batch: list[bytes | str] = []
        async for name in self._redis.scan_iter(match=pattern, count=_DELETE_CHUNK):
            batch.append(name)
            if len(batch) >= _DELETE_CHUNK:
                await self._redis.unlink(*batch)
                batch.clear()
        if batch:
            await self._redis.unlink(*batch)
        logger.info("flushed cache namespace %s after an outage", self._ns)
