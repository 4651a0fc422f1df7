"""Presence in Redis: which gateway connections hold each user, for every process.

Keys (all under the deployment's ``key_prefix``):

- ``presence:route:{uid}`` - hash conn_id -> gateway_id: every device of the
  user, on any gateway. ``GetRoutes`` reads these.
- ``presence:gateway:{gateway_id}`` - hash conn_id -> uid: the same routes
  indexed by gateway, so a gateway's routes can be dropped or checked without
  scanning the keyspace.
- ``presence:gateways`` - sorted set gateway_id -> heartbeat deadline (ms of
  Redis' own clock, so the processes' clocks never have to agree). A gateway
  is live while its deadline is after Redis' now, expired from then on.

Why a heartbeat per gateway rather than a TTL per route: a gateway that
crashes must lose its routes, but a live one holds thousands of long-lived
connections. Refreshing a deadline per gateway costs one command per beat;
refreshing every route would cost one per connection per beat. ``GetRoutes``
reads the routes in a script that drops those of gateways whose deadline
has passed - one round trip for any number of uids, and one command: a
pipeline of one HGETALL per uid cost redis-py about 35 µs of the caller's
CPU per uid, the script about 6 µs, and a message service looks routes up
for every batch of messages it pushes. Each beat also sweeps the routes of
expired gateways (atomically, in a script that re-checks the deadline, so a
gateway that came back in the meantime keeps its new routes).

Redis is a mirror of the truth the gateways hold, kept honest by
``PresenceHeartbeat``: if Redis lost this gateway's entry (restart, flush,
or an outage that outlived the deadline) or its route count disagrees with
the gateway's sessions, the beat rewrites the gateway's routes. So calls
here never fail a login or a send: during an outage ``Connect`` and
``Disconnect`` are skipped (logged once), ``GetRoutes`` answers "nobody
online" (pushes are lost; the inbox is durable and SYNC repairs), and the
next successful beat repairs the routes.

A conn_id must be unique across gateways (the gateway makes it
``{gateway_id}-{n}``).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Collection, Iterable
from typing import Any

from redis.asyncio import Redis

from mpim.metrics.families import CacheMetrics, count_route_lookups
from mpim.proto import common_pb2, presence_pb2
from mpim.redisconn import REDIS_ERRORS, Breaker, as_text, drop_idle_connections

logger = logging.getLogger(__name__)

_EMPTY = common_pb2.Empty()

Connections = Callable[[], Collection[tuple[int, str]]]
"""The (uid, conn_id) of every logged-in session on one gateway, right now."""

# The scripts' clock: ms of Redis' own time, as the gateways' deadlines are.
_NOW_MS = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
"""

# KEYS: gateways zset, gateway index. ARGV: gateway id, ttl ms.
# Returns {1 if the gateway was not registered, routes in its index, expired gateways}.
_BEAT = (
    _NOW_MS
    + """
local added = redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
local count = redis.call('HLEN', KEYS[2])
local expired = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now)
return {added, count, expired}
"""
)

# KEYS: gateways zset, gateway index. ARGV: gateway id, route key prefix,
# '1' to drop only if the gateway's deadline has passed.
# Returns the number of routes dropped, or -1 if the gateway is alive.
_DROP = (
    _NOW_MS
    + """
if ARGV[3] == '1' then
  local score = redis.call('ZSCORE', KEYS[1], ARGV[1])
  if not score then return -1 end
  if tonumber(score) > now then return -1 end
end
local index = redis.call('HGETALL', KEYS[2])
for i = 1, #index, 2 do
  local route = ARGV[2] .. index[i + 1]
  if redis.call('HGET', route, index[i]) == ARGV[1] then
    redis.call('HDEL', route, index[i])
  end
end
redis.call('DEL', KEYS[2])
redis.call('ZREM', KEYS[1], ARGV[1])
return #index / 2
"""
)


# KEYS: gateways zset, then one route hash per uid.
# Returns, per route hash, its routes on live gateways: {conn_id, gateway_id, ...}.
_LIVE_ROUTES = (
    _NOW_MS
    + """
local live = {}
for _, gw in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. now, '+inf')) do
  live[gw] = true
end
local out = {}
for i = 2, #KEYS do
  local routes = redis.call('HGETALL', KEYS[i])
  local kept = {}
  for j = 1, #routes, 2 do
    if live[routes[j + 1]] then
      kept[#kept + 1] = routes[j]
      kept[#kept + 1] = routes[j + 1]
    end
  end
  out[i - 1] = kept
end
return out
"""
)

# Uids per _LIVE_ROUTES call: a script holds Redis for its whole run.
_ROUTES_PER_CALL = 500


class RedisPresenceService:
    """Implements mpim.proto.interfaces.PresenceService on Redis.

    ``gateway_ttl_seconds`` is how long a gateway's routes outlive its last
    heartbeat; beat at a third of it (``PresenceHeartbeat``'s default). With
    ``owns_client``, ``close()`` closes ``redis``.
    """

    def __init__(
        self,
        redis: Redis,
        key_prefix: str,
        *,
        owns_client: bool = False,
        gateway_ttl_seconds: float = 15.0,
        retry_interval_seconds: float = 1.0,
        metrics: CacheMetrics | None = None,
    ) -> None:
        self._redis = redis
        self._owns_client = owns_client
        self.metrics = metrics if metrics is not None else CacheMetrics()
        self._route_prefix = f"{key_prefix}presence:route:"
        self._index_prefix = f"{key_prefix}presence:gateway:"
        self._gateways = f"{key_prefix}presence:gateways"
        self._ttl_ms = max(1, round(gateway_ttl_seconds * 1000))
        self._beat = redis.register_script(_BEAT)
        self._drop = redis.register_script(_DROP)
        self._live_routes_script = redis.register_script(_LIVE_ROUTES)
        self.breaker = Breaker("presence", logger, retry_interval_seconds)

    async def close(self) -> None:
        if self._owns_client:
            await self._redis.aclose()

    @property
    def redis(self) -> Redis:
        return self._redis

    def route_key(self, uid: int) -> str:
        return f"{self._route_prefix}{uid}"

    def gateway_key(self, gateway_id: str) -> str:
        return f"{self._index_prefix}{gateway_id}"

    # -- the PresenceService interface ------------------------------------------

    async def Connect(self, request: presence_pb2.ConnectionRef) -> common_pb2.Empty:
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.hset(self.route_key(request.uid), request.conn_id, request.gateway_id)
            pipe.hset(self.gateway_key(request.gateway_id), request.conn_id, str(request.uid))
            await self._guarded(pipe.execute, "connect")
        return _EMPTY

    async def Disconnect(self, request: presence_pb2.ConnectionRef) -> common_pb2.Empty:
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.hdel(self.route_key(request.uid), request.conn_id)
            pipe.hdel(self.gateway_key(request.gateway_id), request.conn_id)
            await self._guarded(pipe.execute, "disconnect")
        return _EMPTY

    async def GetRoutes(
        self, request: presence_pb2.GetRoutesRequest
    ) -> presence_pb2.GetRoutesReply:
        reply = presence_pb2.GetRoutesReply()
        for uid, pairs in await self._live_routes(request.uids):
            for gateway_id, conn_id in sorted(pairs):
                reply.routes.add(uid=uid, gateway_id=gateway_id, conn_id=conn_id)
        return reply

    async def gateways_of(self, uids: Collection[int]) -> dict[int, set[str]]:
        """See mpim.services.routing: GetRoutes without a protobuf per route."""
        return {
            uid: {gateway_id for gateway_id, _ in pairs}
            for uid, pairs in await self._live_routes(uids)
        }

    async def _live_routes(self, uids: Iterable[int]) -> list[tuple[int, list[tuple[str, str]]]]:
        """(uid, its (gateway_id, conn_id) pairs on live gateways), for each
        connected uid; none while Redis is out."""
        wanted = list(dict.fromkeys(uids))
        if not wanted:
            return []
        found: list[tuple[int, list[tuple[str, str]]]] = []
        for start in range(0, len(wanted), _ROUTES_PER_CALL):
            chunk = wanted[start : start + _ROUTES_PER_CALL]
            keys = [self._gateways, *map(self.route_key, chunk)]
            results = await self._guarded(
                functools.partial(self._live_routes_script, keys=keys), "get routes"
            )
            if results is None:
                count_route_lookups(self.metrics, 0, len(wanted))
                return []
            for uid, flat in zip(chunk, results, strict=True):
                if flat:
                    texts = [as_text(item) for item in flat]
                    found.append((uid, list(zip(texts[1::2], texts[::2], strict=True))))
        count_route_lookups(self.metrics, len(found), len(wanted) - len(found))
        return found

    async def DropGateway(self, request: presence_pb2.DropGatewayRequest) -> common_pb2.Empty:
        token = self.breaker.attempt()
        if token is None:
            return _EMPTY
        try:
            dropped = await self._drop_gateway(request.gateway_id, only_if_expired=False)
        except REDIS_ERRORS as exc:
            await self._failed(exc)
            return _EMPTY
        self.breaker.succeeded(token)
        logger.info("presence: dropped gateway %s (%d routes)", request.gateway_id, dropped)
        return _EMPTY

    # -- heartbeat, sweep and repair (raise on Redis errors) ---------------------

    async def refresh_gateway(
        self,
        gateway_id: str,
        connections: Connections | None = None,
        *,
        force_resync: bool = False,
    ) -> bool:
        """Extend ``gateway_id``'s deadline and sweep expired gateways.

        With ``connections``, also rewrite this gateway's routes from them when
        Redis disagrees (gateway unknown to Redis, route count differs, or
        ``force_resync``). Returns True if routes had to be repaired.
        """
        keys = [self._gateways, self.gateway_key(gateway_id)]
        added, count, expired = await self._beat(keys=keys, args=[gateway_id, self._ttl_ms])
        for other in map(as_text, expired):
            if other != gateway_id:
                await self._sweep(other)
        if connections is None:
            return False
        if not (force_resync or added or count != len(connections())):
            return False
        return await self._resync(gateway_id, connections)

    async def _sweep(self, gateway_id: str) -> None:
        dropped = await self._drop_gateway(gateway_id, only_if_expired=True)
        if dropped >= 0:
            logger.warning(
                "presence: gateway %s missed its heartbeats; dropped its %d routes",
                gateway_id,
                dropped,
            )

    async def _drop_gateway(self, gateway_id: str, *, only_if_expired: bool) -> int:
        keys = [self._gateways, self.gateway_key(gateway_id)]
        args = [gateway_id, self._route_prefix, "1" if only_if_expired else "0"]
        return int(await self._drop(keys=keys, args=args))

    async def _resync(self, gateway_id: str, connections: Connections) -> bool:
        """Make Redis hold exactly the routes ``connections`` lists; True if it did not.

        The snapshot is taken after reading Redis: the gateway registers a
        session before it calls Connect, so any route already in Redis that the
        snapshot lacks really is gone.
        """
        index_key = self.gateway_key(gateway_id)
        raw: dict[Any, Any] = await self._redis.hgetall(index_key)
        current = {as_text(conn): int(uid) for conn, uid in raw.items()}
        wanted = {conn: uid for uid, conn in connections()}
        stale = [(conn, uid) for conn, uid in current.items() if wanted.get(conn) != uid]
        missing = [(conn, uid) for conn, uid in wanted.items() if current.get(conn) != uid]
        if not stale and not missing:
            return False
        async with self._redis.pipeline(transaction=True) as pipe:
            for conn, uid in stale:
                pipe.hdel(self.route_key(uid), conn)
                pipe.hdel(index_key, conn)
            for conn, uid in missing:
                pipe.hset(self.route_key(uid), conn, gateway_id)
                pipe.hset(index_key, conn, str(uid))
            await pipe.execute()
        logger.info(
            "presence: resynced gateway %s: %d routes restored, %d stale removed",
            gateway_id,
            len(missing),
            len(stale),
        )
        return True

    async def _failed(self, exc: Exception) -> None:
        if self.breaker.failed(exc):
            await drop_idle_connections(self._redis)

    async def _guarded(self, execute: Callable[[], Any], what: str) -> list[Any] | None:
        """Run a pipeline or script call unless Redis is known to be down; None if
        skipped or failed."""
        token = self.breaker.attempt()
        if token is None:
            logger.debug("presence: redis down, skipped %s", what)
            return None
        try:
            results: list[Any] = await execute()
        except REDIS_ERRORS as exc:
            await self._failed(exc)
            return None
        self.breaker.succeeded(token)
        return results
