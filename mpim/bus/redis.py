"""The distributed Bus adapter: Redis pub/sub, one channel per gateway.

A gateway subscribes to ``{key_prefix}push:{gateway_id}``; the message path
publishes one serialized ``PushBatch`` per gateway that holds recipients.

Publishing never waits for Redis and never raises: ``publish`` serializes the
batch and queues it, and one writer task sends whatever has queued up as one
pipeline (the message service publishes to several gateways in a row, and a
pipeline moves ~10x more PUBLISHes per second than awaiting each). Pub/sub
is at-most-once anyway, so a publish lost to a full queue or a Redis outage
is only counted in ``stats.dropped``: the message is in the recipient's
durable inbox and SYNC/PULL deliver it.

Each subscription has a reader task that owns one pub/sub connection. When
Redis goes away it logs once, reconnects with capped exponential back-off and
subscribes again; pushes published meanwhile are lost (see above). An idle
connection is PINGed so a silently dead one is noticed too.

Mark barriers (``gateway/pull_barrier.py``): a gateway that answers them also
subscribes ``{key_prefix}marks-barrier``, one channel for all, on the same
pub/sub connection as its pushes, so a barrier reaches it after every push
Redis took before it. The asker publishes a token there; PUBLISH says how
many gateways heard it, and the asker waits (BLPOP) until as many have
pushed their ids onto ``{key_prefix}marks-barrier-ack:{token}``. Who is
asked is whoever listens, so a gateway that is starting or stopping is
asked too, as long as pushes can still reach it.
"""

from __future__ import annotations

import asyncio
import logging
import random
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from google.protobuf.message import DecodeError
from redis.asyncio import Redis
from redis.asyncio.client import PubSub
from redis.exceptions import ConnectionError as RedisConnectionError

from mpim.bus.base import BarrierHandler, PushHandler
from mpim.bus.pushes import BadPushBatch, PushBatch, from_proto, to_proto
from mpim.proto import push_pb2
from mpim.redisconn import (
    REDIS_ERRORS,
    Breaker,
    as_text,
    cancel_and_wait,
    drop_idle_connections,
    raise_if_cancelling,
)

logger = logging.getLogger(__name__)

_MAX_PIPELINE = 1000


@dataclass(slots=True)
class BusStats:
    published: int = 0
    round_trips: int = 0  # fewer than published: pipelining at work
    dropped: int = 0
    received: int = 0
    bad_payloads: int = 0
    handler_errors: int = 0
    barriers_answered: int = 0


@dataclass(eq=False)
class _Subscription:
    gateway_id: str
    channel: str
    handler: PushHandler
    breaker: Breaker
    on_barrier: BarrierHandler | None = None
    barrier_channel: str = ""
    subscribed: asyncio.Event = field(default_factory=asyncio.Event)
    settled: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None
    confirmations: int = 0


class RedisBus:
    """Implements the Bus protocol on Redis pub/sub.

    ``close()`` flushes queued publishes (bounded by ``close_timeout_seconds``)
    and stops every reader; it closes ``redis`` too if ``owns_client``.

    ``on_resubscribed(gateway_id)`` is called when a lost subscription is back:
    pushes published in between are gone, so the gateway may want to catch
    its online users up from their inboxes instead of waiting for a SYNC.
    """

    def __init__(
        self,
        redis: Redis,
        key_prefix: str,
        *,
        owns_client: bool = False,
        on_resubscribed: Callable[[str], None] | None = None,
        max_queued: int = 100_000,
        retry_interval_seconds: float = 1.0,
        reconnect_min_seconds: float = 0.1,
        reconnect_max_seconds: float = 5.0,
        ping_interval_seconds: float = 10.0,
        subscribe_wait_seconds: float = 2.0,
        close_timeout_seconds: float = 2.0,
    ) -> None:
        self._redis = redis
        self._owns_client = owns_client
        self._on_resubscribed = on_resubscribed
        self._prefix = key_prefix
        self._queue: asyncio.Queue[tuple[str, bytes]] = asyncio.Queue(max_queued)
        self._writer: asyncio.Task[None] | None = None
        self._subs: dict[str, _Subscription] = {}
        self._retry_interval = retry_interval_seconds
        self._reconnect_min = reconnect_min_seconds
        self._reconnect_max = reconnect_max_seconds
        self._ping_interval = ping_interval_seconds
        self._subscribe_wait = subscribe_wait_seconds
        self._close_timeout = close_timeout_seconds
        self._closed = False
        self._overflowing = False
        self.stats = BusStats()
        self.breaker = Breaker("bus publish", logger, retry_interval_seconds)

    def channel(self, gateway_id: str) -> str:
        return f"{self._prefix}push:{gateway_id}"

    def barrier_channel(self) -> str:
        return f"{self._prefix}marks-barrier"

    def _barrier_acks(self, token: str) -> str:
        return f"{self._prefix}marks-barrier-ack:{token}"

    # -- mark barriers ----------------------------------------------------------

    async def barrier(self, timeout: float) -> int | None:
        """Ask every listening gateway to store the marks of what it has
        written; how many did not answer within ``timeout`` (None: Redis
        failed, nobody was waited for)."""
        token = secrets.token_hex(8)
        acks = self._barrier_acks(token)
        try:
            listeners = int(await self._redis.publish(self.barrier_channel(), token))
            answered: set[str] = set()
            loop = asyncio.get_running_loop()
            deadline = loop.time() + timeout
            # Each BLPOP must end before the client's read timeout would.
            read_timeout = self._redis.connection_pool.connection_kwargs.get("socket_timeout")
            longest = (read_timeout or 1.0) / 2
            while len(answered) < listeners:
                left = deadline - loop.time()
                if left <= 0:
                    break
                # Never 0, which BLPOP takes as "forever".
                answer = await self._redis.blpop([acks], timeout=max(min(left, longest), 0.01))
                if answer is not None:
                    answered.add(as_text(answer[1]))
            return listeners - len(answered)
        except REDIS_ERRORS as exc:
            logger.warning("bus: mark barrier failed (%s); PULL goes on without it", exc)
            return None

    async def answer_barrier(self, token: str, gateway_id: str) -> None:
        """This gateway's marks are stored: tell the asker (who waits at most
        its timeout; the list expires after a minute either way)."""
        acks = self._barrier_acks(token)
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                pipe.rpush(acks, gateway_id)
                pipe.expire(acks, 60)
                await pipe.execute()
        except REDIS_ERRORS as exc:
            logger.warning("bus: could not answer mark barrier %s: %s", token, exc)
            return
        self.stats.barriers_answered += 1

    # -- publishing -------------------------------------------------------------

    async def publish(self, gateway_id: str, batch: PushBatch) -> None:
        """Queue ``batch`` for ``gateway_id``; returns at once, never raises."""
        if self._closed:
            self.stats.dropped += 1
            return
        try:
            self._queue.put_nowait((self.channel(gateway_id), to_proto(batch).SerializeToString()))
        except asyncio.QueueFull:
            self.stats.dropped += 1
            if not self._overflowing:
                self._overflowing = True
                logger.warning("push publish queue full; dropping pushes (SYNC repairs)")
            return
        if self._writer is None:
            self._writer = asyncio.get_running_loop().create_task(
                self._write_loop(), name="redis-bus-writer"
            )

    async def _write_loop(self) -> None:
        while True:
            items = [await self._queue.get()]
            while len(items) < _MAX_PIPELINE and not self._queue.empty():
                items.append(self._queue.get_nowait())
            try:
                await self._send(items)
            except Exception:
                self.stats.dropped += len(items)
                logger.exception("bus: publishing %d pushes failed", len(items))
            finally:
                for _ in items:
                    self._queue.task_done()
            raise_if_cancelling()

    async def _send(self, items: list[tuple[str, bytes]]) -> None:
        token = self.breaker.attempt()
        if token is None:
            self.stats.dropped += len(items)
            return
        try:
            if len(items) == 1:
                await self._redis.publish(*items[0])
            else:
                async with self._redis.pipeline(transaction=False) as pipe:
                    for channel, data in items:
                        pipe.publish(channel, data)
                    await pipe.execute()
        except REDIS_ERRORS as exc:
            self.stats.dropped += len(items)
            if self.breaker.failed(exc):
                await drop_idle_connections(self._redis)
            return
        self.stats.published += len(items)
        self.stats.round_trips += 1
        self._overflowing = False
        self.breaker.succeeded(token)

    # -- subscribing ------------------------------------------------------------

    async def subscribe(
        self, gateway_id: str, handler: PushHandler, on_barrier: BarrierHandler | None = None
    ) -> None:
        """Start delivering ``gateway_id``'s batches to ``handler``, and its
        mark barriers' tokens to ``on_barrier`` if given.

        Waits (at most ``subscribe_wait_seconds``) for Redis to confirm, so
        pushes published after this returns are seen; if Redis is down the
        reader keeps trying in the background and this returns anyway.
        """
        existing = self._subs.get(gateway_id)
        if existing is not None:
            # Only the push handler can change: the channels are subscribed.
            existing.handler = handler
            return
        sub = _Subscription(
            gateway_id,
            self.channel(gateway_id),
            handler,
            Breaker(f"bus subscription {gateway_id}", logger, self._retry_interval),
            on_barrier,
            self.barrier_channel(),
        )
        self._subs[gateway_id] = sub
        sub.task = asyncio.get_running_loop().create_task(
            self._read_loop(sub), name=f"redis-bus-reader-{gateway_id}"
        )
        try:
            async with asyncio.timeout(self._subscribe_wait):
                await sub.settled.wait()
        except TimeoutError:
            logger.warning("bus: no subscription confirmed for %s yet; retrying", gateway_id)

    def is_subscribed(self, gateway_id: str) -> bool:
        """True while Redis has confirmed this gateway's subscription."""
        sub = self._subs.get(gateway_id)
        return sub is not None and sub.subscribed.is_set()

    async def unsubscribe(self, gateway_id: str) -> None:
        sub = self._subs.pop(gateway_id, None)
        if sub is not None and sub.task is not None:
            await cancel_and_wait(sub.task, logger)

    async def close(self) -> None:
        """Flush what is queued (bounded), then stop the writer and readers."""
        if self._closed:
            return
        self._closed = True
        if self._writer is not None:
            try:
                async with asyncio.timeout(self._close_timeout):
                    await self._queue.join()
            except TimeoutError:
                logger.warning("bus closed with %d pushes unsent", self._queue.qsize())
            await cancel_and_wait(self._writer, logger)
            self._writer = None
        for gateway_id in list(self._subs):
            await self.unsubscribe(gateway_id)
        if self._owns_client:
            await self._redis.aclose()

    async def _read_loop(self, sub: _Subscription) -> None:
        delay = self._reconnect_min
        while True:
            pubsub = self._redis.pubsub()
            try:
                await self._listen(sub, pubsub)
            except REDIS_ERRORS as exc:
                if sub.subscribed.is_set():
                    delay = self._reconnect_min
                sub.subscribed.clear()
                if sub.breaker.failed(exc):
                    await drop_idle_connections(self._redis)
            except Exception:
                sub.subscribed.clear()
                logger.exception("bus: reader for %s failed; restarting it", sub.gateway_id)
            finally:
                await _close_quietly(pubsub)
            raise_if_cancelling()
            sub.settled.set()
            await asyncio.sleep(delay * random.uniform(0.5, 1.0))
            delay = min(delay * 2, self._reconnect_max)

    async def _listen(self, sub: _Subscription, pubsub: PubSub) -> None:
        """Subscribe and deliver until the connection fails (raises)."""
        if sub.on_barrier is None:
            await pubsub.subscribe(sub.channel)
        else:
            # One connection for both: Redis then delivers a barrier after
            # every push it took before it.
            await pubsub.subscribe(sub.channel, sub.barrier_channel)
        awaiting_pong = False
        while True:
            msg: dict[str, Any] | None = await pubsub.get_message(timeout=self._ping_interval)
            raise_if_cancelling()
            if msg is None:
                if awaiting_pong:
                    raise RedisConnectionError("pub/sub connection did not answer PING")
                await pubsub.ping()
                awaiting_pong = True
                continue
            awaiting_pong = False
            kind = msg["type"]
            if kind == "message":
                if sub.on_barrier is not None and as_text(msg["channel"]) == sub.barrier_channel:
                    self._barrier_asked(sub, sub.on_barrier, msg["data"])
                else:
                    self._deliver(sub, msg["data"])
            elif kind == "subscribe" and as_text(msg["channel"]) == sub.channel:
                self._confirmed(sub)

    def _confirmed(self, sub: _Subscription) -> None:
        sub.subscribed.set()
        sub.settled.set()
        sub.breaker.recovered()
        sub.confirmations += 1
        if sub.confirmations > 1 and self._on_resubscribed is not None:
            try:
                self._on_resubscribed(sub.gateway_id)
            except Exception:
                logger.exception("bus: on_resubscribed for %s failed", sub.gateway_id)

    def _deliver(self, sub: _Subscription, data: bytes) -> None:
        self.stats.received += 1
        try:
            batch = from_proto(push_pb2.PushBatch.FromString(data))
        except (DecodeError, BadPushBatch) as exc:
            self.stats.bad_payloads += 1
            reason = str(exc) or "undecodable"
            logger.warning("bus: bad push batch on %s (%d B): %s", sub.channel, len(data), reason)
            return
        try:
            sub.handler(batch)
        except Exception:
            self.stats.handler_errors += 1
            logger.exception("bus: push handler for %s failed", sub.gateway_id)

    def _barrier_asked(self, sub: _Subscription, on_barrier: BarrierHandler, data: bytes) -> None:
        token = as_text(data)
        if not (0 < len(token) <= 64 and token.isascii() and token.isalnum()):
            self.stats.bad_payloads += 1
            logger.warning(
                "bus: bad mark barrier token on %s (%d B)", sub.barrier_channel, len(data)
            )
            return
        try:
            on_barrier(token)
        except Exception:
            self.stats.handler_errors += 1
            logger.exception("bus: barrier handler for %s failed", sub.gateway_id)


async def _close_quietly(pubsub: PubSub) -> None:
    try:
        await pubsub.aclose()  # type: ignore[no-untyped-call]  # untyped in redis-py
    except REDIS_ERRORS as exc:
        # The connection is being dropped because it failed; nothing to do.
        logger.debug("closing pub/sub connection: %s", exc)
