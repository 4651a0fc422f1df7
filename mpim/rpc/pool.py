"""Channels to the live instances of one service, balanced round-robin.

The instance list comes from the registry's local view (kept current by
ZooKeeper watches), so a dead instance is dropped as soon as its node goes
and a new one is used without restart. Channels are reused across calls.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import grpc

from mpim.metrics.families import RpcMetrics

logger = logging.getLogger(__name__)


class InstanceLike(Protocol):
    @property
    def instance_id(self) -> str: ...

    @property
    def address(self) -> str: ...


class InstanceSource(Protocol):
    """What the pool needs from a registry: the live instances of a service."""

    def instances(self, service: str) -> Sequence[InstanceLike]: ...


_CHANNEL_OPTIONS = [
    ("grpc.max_receive_message_length", 16 * 1024 * 1024),
    ("grpc.keepalive_time_ms", 10_000),
    ("grpc.keepalive_timeout_ms", 5_000),
    ("grpc.initial_reconnect_backoff_ms", 200),
    ("grpc.max_reconnect_backoff_ms", 2_000),
]


class Endpoint:
    """A channel to one instance, with its per-method callables made once."""

    def __init__(self, instance_id: str, address: str) -> None:
        self.instance_id = instance_id
        self.address = address
        self.channel = grpc.aio.insecure_channel(address, options=_CHANNEL_OPTIONS)
        self._methods: dict[str, grpc.aio.UnaryUnaryMultiCallable[Any, Any]] = {}

    def method(
        self, path: str, serialize: Callable[[Any], bytes], deserialize: Callable[[bytes], Any]
    ) -> grpc.aio.UnaryUnaryMultiCallable[Any, Any]:
        call = self._methods.get(path)
        if call is None:
            call = self.channel.unary_unary(
                path, request_serializer=serialize, response_deserializer=deserialize
            )
            self._methods[path] = call
        return call


class ChannelPool:
    def __init__(
        self, service: str, source: InstanceSource, metrics: RpcMetrics | None = None
    ) -> None:
        self.service = service
        self._source = source
        # Shared by every pool of a process: one latency family per caller.
        self.metrics = metrics if metrics is not None else RpcMetrics()
        self._endpoints: dict[str, Endpoint] = {}
        self._turn = itertools.count()
        # instance id -> monotonic time until which it is skipped
        self._penalised: dict[str, float] = {}

    def penalise(self, instance_id: str, seconds: float = 5.0) -> None:
        """Skip an instance whose call just failed in transport, until its node
        vanishes from ZooKeeper or ``seconds`` pass (a SIGKILLed process keeps
        its node for a whole session timeout)."""
        self._penalised[instance_id] = time.monotonic() + seconds

    def pick(self, exclude: str | None = None) -> Endpoint | None:
        """The next live instance's endpoint, or None if none is live."""
        live = sorted(
            (i for i in self._source.instances(self.service) if i.instance_id != exclude),
            key=lambda i: i.instance_id,
        )
        self._forget_gone({i.instance_id for i in live} | ({exclude} if exclude else set()))
        if self._penalised:
            now = time.monotonic()
            healthy = [i for i in live if self._penalised.get(i.instance_id, 0.0) <= now]
            live = healthy or live  # all suspect: try them anyway
        if not live:
            return None
        instance = live[next(self._turn) % len(live)]
        known = self._endpoints.get(instance.instance_id)
        if known is None or known.address != instance.address:
            if known is not None:
                _close_later(known.channel)
            known = Endpoint(instance.instance_id, instance.address)
            self._endpoints[instance.instance_id] = known
        return known

    def _forget_gone(self, live_ids: set[str]) -> None:
        for instance_id in [i for i in self._endpoints if i not in live_ids]:
            endpoint = self._endpoints.pop(instance_id)
            self._penalised.pop(instance_id, None)
            logger.info("%s instance %s gone; closing its channel", self.service, instance_id)
            _close_later(endpoint.channel)

    async def close(self) -> None:
        for endpoint in self._endpoints.values():
            await endpoint.channel.close()
        self._endpoints.clear()


def _close_later(channel: grpc.aio.Channel) -> None:
    task = asyncio.get_running_loop().create_task(channel.close(grace=1.0))
    _background.add(task)
    task.add_done_callback(_background.discard)


_background: set[asyncio.Task[None]] = set()
