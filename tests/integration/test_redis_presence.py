"""RedisPresenceService against a real Redis: devices, gateways, crashes, outages."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable

import pytest
from redis.asyncio import Redis

from mpim.config import RedisSettings
from mpim.proto import presence_pb2
from mpim.redisconn import redis_client
from mpim.services.presence_heartbeat import PresenceHeartbeat
from mpim.services.presence_redis import RedisPresenceService
from tests.support.redis_server import ThrowawayRedis, connected, records, wait_until

pytest_plugins = ["tests.support.redis"]

LOGGER = "mpim.services.presence_redis"
TTL = 30.0  # nothing expires unless a test asks for it
SHORT_TTL = 0.5

PresenceFactory = Callable[..., RedisPresenceService]


@pytest.fixture
async def presence_factory() -> AsyncIterator[PresenceFactory]:
    """Presence services on any Redis (one per process); clients closed afterwards."""
    clients: list[Redis] = []

    def make(settings: RedisSettings, ttl: float = TTL) -> RedisPresenceService:
        client = redis_client(settings)
        clients.append(client)
        return RedisPresenceService(
            client, settings.key_prefix, gateway_ttl_seconds=ttl, retry_interval_seconds=0.2
        )

    yield make
    for client in clients:
        await client.aclose()


class Gateway:
    """What a gateway knows: its sessions. Logs them in through presence."""

    def __init__(
        self, presence: RedisPresenceService, gateway_id: str, beat_every: float = 0.1
    ) -> None:
        self.presence = presence
        self.gateway_id = gateway_id
        self.sessions: set[tuple[int, str]] = set()
        self.heartbeat = PresenceHeartbeat(
            presence, gateway_id, lambda: self.sessions, interval_seconds=beat_every
        )

    def ref(self, uid: int, conn_id: str) -> presence_pb2.ConnectionRef:
        return presence_pb2.ConnectionRef(uid=uid, gateway_id=self.gateway_id, conn_id=conn_id)

    async def login(self, uid: int, conn_id: str) -> None:
        self.sessions.add((uid, conn_id))  # the hub first, then presence
        await self.presence.Connect(self.ref(uid, conn_id))

    async def logout(self, uid: int, conn_id: str) -> None:
        self.sessions.discard((uid, conn_id))
        await self.presence.Disconnect(self.ref(uid, conn_id))


async def routes(presence: RedisPresenceService, *uids: int) -> set[tuple[int, str, str]]:
    reply = await presence.GetRoutes(presence_pb2.GetRoutesRequest(uids=list(uids)))
    return {(r.uid, r.gateway_id, r.conn_id) for r in reply.routes}


async def test_every_device_of_a_user_is_routed_across_gateways(
    redis_settings: RedisSettings, presence_factory: PresenceFactory
) -> None:
    gw1 = Gateway(presence_factory(redis_settings), "gw1")
    gw2 = Gateway(presence_factory(redis_settings), "gw2")
    reader = presence_factory(redis_settings)  # e.g. a message service
    await gw1.heartbeat.beat()
    await gw2.heartbeat.beat()

    await gw1.login(1, "gw1-1")
    await gw1.login(1, "gw1-2")  # two devices on one gateway
    await gw2.login(1, "gw2-1")  # and a third on another
    await gw2.login(2, "gw2-2")

    assert await routes(reader, 1, 2, 3) == {
        (1, "gw1", "gw1-1"),
        (1, "gw1", "gw1-2"),
        (1, "gw2", "gw2-1"),
        (2, "gw2", "gw2-2"),
    }
    # The push path's lookup: the same answer, as gateway sets.
    assert await reader.gateways_of([1, 2, 3, 2]) == {1: {"gw1", "gw2"}, 2: {"gw2"}}
    await gw1.logout(1, "gw1-1")
    assert await routes(reader, 1) == {(1, "gw1", "gw1-2"), (1, "gw2", "gw2-1")}
    await gw2.logout(2, "gw2-2")
    assert await routes(reader, 2) == set()


async def test_routes_for_many_users_come_back_in_one_call(
    redis_settings: RedisSettings, presence_factory: PresenceFactory
) -> None:
    gateway = Gateway(presence_factory(redis_settings), "gw1")
    await gateway.heartbeat.beat()
    for uid in range(1, 501):
        await gateway.login(uid, f"gw1-{uid}")

    reply = await gateway.presence.GetRoutes(
        presence_pb2.GetRoutesRequest(uids=[*range(1, 1001), 7, 7])
    )

    assert [r.uid for r in reply.routes] == list(range(1, 501))


async def test_a_crashed_gateways_routes_vanish_and_are_swept(
    redis_settings: RedisSettings, redis: Redis, presence_factory: PresenceFactory
) -> None:
    crashed = Gateway(presence_factory(redis_settings, ttl=SHORT_TTL), "gw1")
    alive = Gateway(presence_factory(redis_settings, ttl=SHORT_TTL), "gw2")
    await crashed.heartbeat.beat()
    await alive.heartbeat.beat()
    await crashed.login(1, "gw1-1")
    await alive.login(1, "gw2-1")
    assert len(await routes(alive.presence, 1)) == 2

    # gw1 stops beating (it crashed); gw2 keeps beating.
    async def only_the_live_gateway_left() -> bool:
        await alive.heartbeat.beat()
        return await routes(alive.presence, 1) == {(1, "gw2", "gw2-1")}

    await wait_until(only_the_live_gateway_left, timeout=10 * SHORT_TTL)
    # gw1 has expired and is not swept yet: the push path skips it too.
    assert await alive.presence.gateways_of([1]) == {1: {"gw2"}}

    await alive.heartbeat.beat()  # its sweep removes gw1's leftovers
    presence = alive.presence
    assert await redis.hgetall(presence.route_key(1)) == {b"gw2-1": b"gw2"}
    assert await redis.exists(presence.gateway_key("gw1")) == 0
    gateways = await redis.zrange(f"{redis_settings.key_prefix}presence:gateways", 0, -1)
    assert gateways == [b"gw2"]


async def test_a_gateway_that_beats_again_before_the_sweep_keeps_its_routes(
    redis_settings: RedisSettings, presence_factory: PresenceFactory
) -> None:
    slow = Gateway(presence_factory(redis_settings, ttl=SHORT_TTL), "gw1")
    other = Gateway(presence_factory(redis_settings, ttl=SHORT_TTL), "gw2")
    await slow.heartbeat.beat()
    await slow.login(1, "gw1-1")

    async def expired() -> bool:
        return await routes(other.presence, 1) == set()

    await wait_until(expired, timeout=10 * SHORT_TTL)
    await slow.heartbeat.beat()  # back before anyone swept it
    await other.heartbeat.beat()  # sweeps nothing: gw1's deadline was renewed

    assert await routes(other.presence, 1) == {(1, "gw1", "gw1-1")}


async def test_drop_gateway_removes_only_that_gateways_routes(
    redis_settings: RedisSettings, presence_factory: PresenceFactory
) -> None:
    gw1 = Gateway(presence_factory(redis_settings), "gw1")
    gw2 = Gateway(presence_factory(redis_settings), "gw2")
    await gw1.heartbeat.beat()
    await gw2.heartbeat.beat()
    await gw1.login(1, "gw1-1")
    await gw2.login(1, "gw2-1")

    await gw2.presence.DropGateway(presence_pb2.DropGatewayRequest(gateway_id="gw1"))

    assert await routes(gw2.presence, 1) == {(1, "gw2", "gw2-1")}


async def test_heartbeat_start_registers_and_stop_drops_the_gateway(
    redis_settings: RedisSettings, presence_factory: PresenceFactory
) -> None:
    gateway = Gateway(presence_factory(redis_settings, ttl=SHORT_TTL), "gw1")
    await gateway.heartbeat.start()
    await gateway.login(1, "gw1-1")
    started = time.monotonic()

    async def beaten_for_longer_than_the_ttl() -> bool:
        return time.monotonic() - started > 2 * SHORT_TTL

    await wait_until(beaten_for_longer_than_the_ttl)
    assert await routes(gateway.presence, 1) == {(1, "gw1", "gw1-1")}

    await gateway.heartbeat.stop(drop=True)
    assert await routes(gateway.presence, 1) == set()


async def test_heartbeat_repairs_a_lost_disconnect_and_a_lost_connect(
    redis_settings: RedisSettings, presence_factory: PresenceFactory
) -> None:
    gateway = Gateway(presence_factory(redis_settings), "gw1")
    await gateway.heartbeat.beat()
    await gateway.login(1, "gw1-1")
    await gateway.login(2, "gw1-2")
    gateway.sessions.discard((1, "gw1-1"))  # closed, but its Disconnect was lost
    gateway.sessions.add((3, "gw1-3"))  # logged in, but its Connect was lost
    gateway.sessions.add((4, "gw1-4"))

    await gateway.heartbeat.beat()

    assert gateway.heartbeat.resyncs == 1
    assert await routes(gateway.presence, 1, 2, 3, 4) == {
        (2, "gw1", "gw1-2"),
        (3, "gw1", "gw1-3"),
        (4, "gw1", "gw1-4"),
    }


async def test_unreachable_redis_never_fails_a_call_and_warns_once(
    dead_redis_settings: RedisSettings,
    presence_factory: PresenceFactory,
    mpim_logs: pytest.LogCaptureFixture,
) -> None:
    gateway = Gateway(presence_factory(dead_redis_settings), "gw1")
    await gateway.heartbeat.start()  # logs, does not raise

    for uid in range(20):
        await gateway.login(uid, f"gw1-{uid}")
        assert await routes(gateway.presence, uid) == set()  # "offline": push skipped
        await gateway.logout(uid, f"gw1-{uid}")
    await gateway.heartbeat.stop(drop=True)

    assert len(records(mpim_logs, LOGGER, "WARNING")) == 1


async def test_routes_come_back_after_redis_restarts_empty(
    throwaway_redis: ThrowawayRedis,
    redis_prefix: str,
    presence_factory: PresenceFactory,
    mpim_logs: pytest.LogCaptureFixture,
) -> None:
    settings = throwaway_redis.settings(redis_prefix)
    gateway = Gateway(presence_factory(settings), "gw1")
    reader = presence_factory(settings)
    await gateway.heartbeat.beat()
    await gateway.login(1, "gw1-1")

    await throwaway_redis.kill()
    await gateway.login(2, "gw1-2")  # Connect lost in the outage
    await gateway.heartbeat.beat()  # fails: the next good beat resyncs
    await throwaway_redis.start()  # no persistence: every route is gone

    async def repaired() -> bool:
        await gateway.heartbeat.beat()
        return await routes(reader, 1, 2) == {(1, "gw1", "gw1-1"), (2, "gw1", "gw1-2")}

    await wait_until(repaired)
    assert gateway.heartbeat.resyncs >= 1
    async with connected(settings) as raw:
        assert await raw.hgetall(gateway.presence.gateway_key("gw1")) == {
            b"gw1-1": b"1",
            b"gw1-2": b"2",
        }


async def test_a_burst_of_logins_beyond_the_pool_waits_and_loses_no_route(
    redis_settings: RedisSettings, presence_factory: PresenceFactory
) -> None:
    # 300 concurrent logins through a pool of 8: each waits for a connection.
    # redis-py's own pool raised MaxConnectionsError past its limit, which
    # the breaker took for an outage: those routes were never written.
    small_pool = redis_settings.model_copy(update={"max_connections": 8})
    gateway = Gateway(presence_factory(small_pool), "gw-burst")
    await gateway.heartbeat.beat()
    uids = range(1, 301)
    await asyncio.gather(*(gateway.login(uid, f"c{uid}") for uid in uids))
    found = await routes(gateway.presence, *uids)
    assert found == {(uid, "gw-burst", f"c{uid}") for uid in uids}
