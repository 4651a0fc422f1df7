"""Distributed mode: one role per process, built from Settings.

``mpim serve <role>`` runs the gateway or one service. Services are served
over gRPC and registered in ZooKeeper; every caller reaches them through the
generated clients, balanced across live instances. The service objects are
the very ones embedded mode calls directly.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final

from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from prometheus_client import CollectorRegistry
from redis.asyncio import Redis

from mpim import assembly
from mpim.bus.base import Bus
from mpim.cache.base import Cache
from mpim.config import Settings
from mpim.discovery.base import Instance
from mpim.discovery.zookeeper import ZooKeeperRegistry
from mpim.gateway.repair import InboxRepair
from mpim.gateway.server import Gateway
from mpim.metrics.endpoints import OpsEndpoints, OpsHttpServer
from mpim.metrics.families import (
    CacheMetrics,
    GatewayMetrics,
    MessageMetrics,
    RpcMetrics,
    StoreMetrics,
    new_registry,
)
from mpim.metrics.grpc_health import HealthMonitor
from mpim.metrics.health import CHECK_TIMEOUT_SECONDS, Check, Readiness
from mpim.proto import (
    clients,
    group_pb2,
    message_pb2,
    presence_pb2,
    user_pb2,
)
from mpim.redisconn import redis_client
from mpim.rpc.pool import ChannelPool
from mpim.rpc.send_batcher import BatchingMessageClient
from mpim.rpc.server import RpcServer
from mpim.services.bundle import Services
from mpim.services.clock import now_ms
from mpim.services.presence_heartbeat import PresenceHeartbeat
from mpim.services.presence_redis import RedisPresenceService
from mpim.store.database import Database
from mpim.store.messages import MessageStore

logger = logging.getLogger(__name__)

SERVICE_ROLES: Final = ("user", "presence", "message", "group")
ROLES: Final = ("gateway", *SERVICE_ROLES)

_DESCRIPTORS: Final = {
    "user": user_pb2.DESCRIPTOR.services_by_name["UserService"],
    "presence": presence_pb2.DESCRIPTOR.services_by_name["PresenceService"],
    "message": message_pb2.DESCRIPTOR.services_by_name["MessageService"],
    "group": group_pb2.DESCRIPTOR.services_by_name["GroupService"],
}


def default_instance_id(role: str) -> str:
    return f"{role}-{socket.gethostname()}-{os.getpid()}"


@dataclass
class Node:
    """One running role: what to start, what to stop, in order."""

    role: str
    settings: Settings
    instance_id: str
    registry: ZooKeeperRegistry
    address: str = ""
    # host:port of /metrics, /healthz and /readyz ("" if not served).
    ops_address: str = ""
    # This process's Prometheus registry, and what /readyz checks.
    metrics: CollectorRegistry = field(default_factory=new_registry)
    readiness: Readiness = field(default_factory=Readiness)
    rpc_metrics: RpcMetrics = field(init=False)
    _closers: list[Callable[[], Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.rpc_metrics = RpcMetrics(self.metrics)

    def on_stop(self, closer: Callable[[], Any]) -> None:
        """Run ``closer`` at stop, in reverse order of registration."""
        self._closers.append(closer)

    async def stop(self) -> None:
        for closer in reversed(self._closers):
            try:
                result = closer()
                if asyncio.iscoroutine(result):
                    await result
            except Exception:
                logger.exception("%s: error while stopping", self.instance_id)
        self._closers.clear()


def _client_services(node: Node, *, batch_sends: bool = False) -> Services:
    """gRPC clients for the four services, balanced over live instances."""
    deadline = node.settings.rpc.deadline_seconds
    pools = {role: ChannelPool(role, node.registry, node.rpc_metrics) for role in SERVICE_ROLES}
    for pool in pools.values():
        node.on_stop(pool.close)
    message: clients.MessageServiceClient
    if batch_sends:
        batcher = BatchingMessageClient(pools["message"], deadline)
        node.on_stop(batcher.close)
        message = batcher
    else:
        message = clients.MessageServiceClient(pools["message"], deadline)
    for role, pool in pools.items():
        if role != node.role:  # two instances must not make each other unready
            node.readiness.add(role, _serving_check(pool, _DESCRIPTORS[role].full_name))
    return Services(
        user=clients.UserServiceClient(pools["user"], deadline),
        presence=clients.PresenceServiceClient(pools["presence"], deadline),
        message=message,
        group=clients.GroupServiceClient(pools["group"], deadline),
    )


async def start_node(role: str, settings: Settings) -> Node:
    """Start ``role``; returns once it serves and is registered."""
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}; expected one of {', '.join(ROLES)}")
    instance_id = settings.instance_id or default_instance_id(role)
    registry = ZooKeeperRegistry.from_settings(settings.zookeeper)
    node = Node(role, settings, instance_id, registry)
    await registry.start()
    node.on_stop(registry.stop)
    for service in SERVICE_ROLES:
        await registry.watch(service)
    try:
        if role == "gateway":
            await _start_gateway(node)
        else:
            await _start_service(node)
    except BaseException:
        await node.stop()
        raise
    return node


async def _start_service(node: Node) -> None:
    settings = node.settings
    impl = await _build_service(node.role, settings, node)
    server = RpcServer(node.rpc_metrics)
    server.add(impl, _DESCRIPTORS[node.role])
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server.grpc_server)
    port = await server.start(settings.rpc.host, settings.rpc.port)
    host = settings.rpc.advertise_host or settings.rpc.host
    node.address = f"{host}:{port}"
    full_name = _DESCRIPTORS[node.role].full_name
    await health_servicer.set(full_name, health_pb2.HealthCheckResponse.SERVING)
    await health_servicer.set("", health_pb2.HealthCheckResponse.SERVING)

    async def drain() -> None:
        # Deregistered already (registered later, so stopped first): callers
        # have moved on; let in-flight calls finish.
        await health_servicer.enter_graceful_shutdown()
        await server.stop(grace=3.0)

    node.on_stop(drain)
    ops = OpsHttpServer(OpsEndpoints(node.metrics, node.readiness))
    await ops.start(settings.rpc.host, settings.rpc.metrics_port)
    node.on_stop(ops.stop)
    node.ops_address = f"{host}:{ops.port}"
    instance = Instance(
        service=node.role,
        instance_id=node.instance_id,
        address=node.address,
        metadata={
            "pid": str(os.getpid()),
            "started_ms": str(now_ms()),
            "metrics": node.ops_address,
        },
    )
    node.readiness.add("registered", _registered_check(node))
    await node.registry.register(instance)
    node.on_stop(lambda: node.registry.deregister(instance))
    # The gRPC status reflects this instance's own state, not its callees'.
    monitor = HealthMonitor(
        node.readiness, health_servicer, (full_name, ""), only=("store", "redis", "registered")
    )
    monitor.start()
    node.on_stop(monitor.stop)


async def _start_gateway(node: Node) -> None:
    settings = node.settings
    services = _client_services(node, batch_sends=True)
    redis = _redis(settings, node)
    # Pushes lost while the subscription was down: PULL them for online users.
    repair = InboxRepair(
        services.message,
        lambda: gateway.hub.online_uids(),
        lambda uid, seq, line: gateway.hub.deliver_ordered(uid, seq, line),
        page_size=settings.gateway.pull_page_size,
        settle_marks=lambda: gateway.settle_marks(),
    )
    node.on_stop(repair.stop)
    bus = _build_bus(settings, node, redis, on_resubscribed=lambda _: repair.trigger())
    gateway_settings = settings.gateway.model_copy(update={"gateway_id": node.instance_id})
    # Sends travel in SendBatch calls, one in flight, so a connection's
    # pipelined sends still commit in order.
    gateway = Gateway(
        gateway_settings,
        services,
        bus,
        pipeline_sends=True,
        several_gateways=True,
        metrics=GatewayMetrics(node.metrics),
    )
    node.readiness.add("redis", lambda: _ping_redis(redis))
    heartbeat = PresenceHeartbeat(
        _presence(settings, node, redis),
        node.instance_id,
        lambda: [(s.uid, s.conn_id) for s in list(gateway.sessions) if s.uid is not None],
    )
    # A previous process with this id may have crashed holding routes.
    with contextlib.suppress(Exception):
        await services.presence.DropGateway(
            presence_pb2.DropGatewayRequest(gateway_id=node.instance_id)
        )
    await heartbeat.start()
    node.on_stop(heartbeat.stop)
    await gateway.start()
    if gateway.http is not None:
        OpsEndpoints(node.metrics, node.readiness).mount(gateway.http)
    node.address = f"{gateway_settings.host}:{gateway.port}"
    node.on_stop(gateway.stop)
    metadata = {"pid": str(os.getpid()), "started_ms": str(now_ms())}
    if gateway.http is not None:
        node.ops_address = f"{gateway_settings.http_host}:{gateway.http_port}"
        metadata["http"] = node.ops_address
    instance = Instance(
        service="gateway",
        instance_id=node.instance_id,
        address=node.address,
        metadata=metadata,
    )
    await node.registry.register(instance)
    node.on_stop(lambda: node.registry.deregister(instance))
    missing = [s for s in SERVICE_ROLES if not node.registry.instances(s)]
    if missing:
        logger.warning("gateway %s: no live instance yet of %s", node.instance_id, missing)


def _redis(settings: Settings, node: Node) -> Redis:
    """One Redis client per process, shared by its adapters, closed last."""
    client = redis_client(settings.redis)
    node.on_stop(client.aclose)
    return client


def _redis_cache(settings: Settings, node: Node, redis: Redis) -> Cache:
    from mpim.cache.redis import RedisCache

    cache = RedisCache(redis, settings.redis.key_prefix, metrics=CacheMetrics(node.metrics))
    node.on_stop(cache.close)
    return cache


def _build_bus(
    settings: Settings,
    node: Node,
    redis: Redis,
    on_resubscribed: Callable[[str], None] | None = None,
) -> Bus:
    from mpim.bus.redis import RedisBus

    bus = RedisBus(redis, settings.redis.key_prefix, on_resubscribed=on_resubscribed)
    node.on_stop(bus.close)
    return bus


def _presence(
    settings: Settings, node: Node, redis: Redis, metrics: CacheMetrics | None = None
) -> RedisPresenceService:
    presence = RedisPresenceService(redis, settings.redis.key_prefix, metrics=metrics)
    node.on_stop(presence.close)
    return presence


async def _started_database(settings: Settings, node: Node) -> Database:
    # Only a message service writes enough to pay for a writer process.
    db = assembly.database(
        settings, StoreMetrics(node.metrics), writer_process=node.role == "message"
    )
    await db.start()
    node.on_stop(db.stop)
    return db


async def _build_service(role: str, settings: Settings, node: Node) -> object:
    """The implementation object a service role serves over gRPC."""
    redis = _redis(settings, node)
    if role == "presence":
        node.readiness.add("redis", lambda: _ping_redis(redis))
        return _presence(settings, node, redis, CacheMetrics(node.metrics))
    db = await _started_database(settings, node)
    node.readiness.add("store", db.ping)
    if role == "user":
        hasher = assembly.password_hasher(settings)
        node.on_stop(hasher.close)
        user = assembly.user_service(settings, db, _redis_cache(settings, node, redis), hasher)
        await user.start()
        node.on_stop(user.stop)  # before db.stop: closers run in reverse
        return user
    if role == "group":
        return assembly.group_service(settings, db, _redis_cache(settings, node, redis))
    if role == "message":
        remote = _client_services(node)
        worker_id = await MessageStore(db).claim_worker_id(node.instance_id, now_ms())
        logger.info("message service %s uses worker id %d", node.instance_id, worker_id)
        # Routes are read from Redis directly, as gateways write them: a push
        # batch then costs one Redis round trip, not a gRPC call and one.
        impl = assembly.message_service(
            settings,
            db,
            remote.user,
            remote.group,
            _presence(settings, node, redis, CacheMetrics(node.metrics)),
            _build_bus(settings, node, redis),
            worker_id=worker_id,
            metrics=MessageMetrics(node.metrics),
        )
        await impl.start()
        node.on_stop(impl.stop)
        return impl
    raise ValueError(f"unknown service role {role!r}")


async def _ping_redis(redis: Redis) -> None:
    await redis.ping()


def _registered_check(node: Node) -> Check:
    async def registered() -> None:
        if not any(i.instance_id == node.instance_id for i in node.registry.instances(node.role)):
            raise RuntimeError(f"not registered in ZooKeeper ({node.registry.state})")

    return registered


def _serving_check(pool: ChannelPool, service_name: str) -> Check:
    """Some live instance of the service says SERVING to the standard health check."""

    async def serving() -> None:
        endpoint = pool.pick()
        if endpoint is None:
            raise RuntimeError("no live instance in ZooKeeper")
        stub = health_pb2_grpc.HealthStub(endpoint.channel)
        reply = await stub.Check(
            health_pb2.HealthCheckRequest(service=service_name), timeout=CHECK_TIMEOUT_SECONDS
        )
        if reply.status != health_pb2.HealthCheckResponse.SERVING:
            status = health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)
            raise RuntimeError(f"{endpoint.instance_id} is {status}")

    return serving


async def serve(role: str, settings: Settings, ready: Callable[[Node], None]) -> int:
    """Run ``role`` until SIGINT/SIGTERM; ``ready`` is called once it serves."""
    import signal

    node = await start_node(role, settings)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    ready(node)
    await stop.wait()
    started = time.monotonic()
    await node.stop()
    logger.info("%s stopped in %.2fs", node.instance_id, time.monotonic() - started)
    return 0
