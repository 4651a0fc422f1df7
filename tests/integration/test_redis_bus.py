"""RedisBus against a real Redis: two gateways, ordering, outages and restarts."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from redis.asyncio import Redis

from mpim.bus.pushes import Delivery, PushBatch, PushedMessage
from mpim.bus.redis import RedisBus
from mpim.config import RedisSettings
from mpim.proto import common_pb2, push_pb2
from mpim.redisconn import redis_client
from tests.support.redis_server import ThrowawayRedis, connected, records, wait_until

pytest_plugins = ["tests.support.redis"]

LOGGER = "mpim.bus.redis"

BusFactory = Callable[..., RedisBus]


@pytest.fixture
async def bus_factory() -> AsyncIterator[BusFactory]:
    """RedisBuses on any Redis, each owning its client; closed afterwards."""
    made: list[RedisBus] = []

    def make(settings: RedisSettings, **options: Any) -> RedisBus:
        bus = RedisBus(
            redis_client(settings),
            settings.key_prefix,
            owns_client=True,
            **options,
            retry_interval_seconds=0.2,
            reconnect_min_seconds=0.05,
            reconnect_max_seconds=0.2,
        )
        made.append(bus)
        return bus

    yield make
    for bus in made:
        await bus.close()


class Inbox:
    """A push handler that records batches and lets a test wait for them."""

    def __init__(self) -> None:
        self.batches: list[PushBatch] = []
        self._changed = asyncio.Event()

    def __call__(self, batch: PushBatch) -> None:
        self.batches.append(batch)
        self._changed.set()

    @property
    def texts(self) -> list[str]:
        return [d.message.text for b in self.batches for d in b]

    async def wait_for(self, count: int, timeout: float = 5.0) -> None:
        async with asyncio.timeout(timeout):
            while len(self.batches) < count:
                self._changed.clear()
                await self._changed.wait()


def batch(text: str, uid: int = 1, seq: int = 1) -> PushBatch:
    message = PushedMessage(11, common_pb2.MESSAGE_KIND_DIRECT, 2, uid, 1_700_000_000_000, text)
    return [Delivery(message, [uid], [seq])]


async def test_each_gateway_gets_only_its_own_batches(
    redis_settings: RedisSettings, bus_factory: BusFactory
) -> None:
    gateway_a, gateway_b, sender = (bus_factory(redis_settings) for _ in range(3))
    inbox_a, inbox_b = Inbox(), Inbox()
    await gateway_a.subscribe("gw-a", inbox_a)
    await gateway_b.subscribe("gw-b", inbox_b)
    assert gateway_a.is_subscribed("gw-a") and gateway_b.is_subscribed("gw-b")

    await sender.publish("gw-a", batch("for a", uid=1, seq=7))
    await sender.publish("gw-b", batch("for b", uid=2, seq=3))
    await sender.publish("gw-nobody", batch("lost"))

    await inbox_a.wait_for(1)
    await inbox_b.wait_for(1)
    assert inbox_a.texts == ["for a"]
    assert inbox_b.texts == ["for b"]
    assert list(inbox_a.batches[0][0].seqs) == [7]
    await sender.close()
    assert sender.stats.published == 3  # pub/sub does not know about receivers


async def test_publishes_in_a_row_go_out_in_order(
    redis_settings: RedisSettings, bus_factory: BusFactory
) -> None:
    gateway, sender = bus_factory(redis_settings), bus_factory(redis_settings)
    inbox = Inbox()
    await gateway.subscribe("gw-a", inbox)

    for i in range(2000):
        await sender.publish("gw-a", batch(str(i)))
    await inbox.wait_for(2000)

    assert inbox.texts == [str(i) for i in range(2000)]
    await sender.close()
    assert (sender.stats.published, sender.stats.dropped) == (2000, 0)
    assert sender.stats.round_trips < 100, "publishes in a row should share pipelines"


async def test_close_flushes_queued_publishes(
    redis_settings: RedisSettings, bus_factory: BusFactory
) -> None:
    gateway, sender = bus_factory(redis_settings), bus_factory(redis_settings)
    inbox = Inbox()
    await gateway.subscribe("gw-a", inbox)
    await sender.publish("gw-a", batch("last words"))
    await sender.close()
    await inbox.wait_for(1)
    await sender.publish("gw-a", batch("after close"))
    assert sender.stats.dropped == 1


async def test_unsubscribe_stops_the_reader_and_leaves_the_channel(
    redis_settings: RedisSettings, redis: Redis, bus_factory: BusFactory
) -> None:
    gateway = bus_factory(redis_settings)
    await gateway.subscribe("gw-a", Inbox())
    channel = gateway.channel("gw-a")
    assert channel == f"{redis_settings.key_prefix}push:gw-a"
    assert await redis.pubsub_numsub(channel) == [(channel.encode(), 1)]

    await gateway.unsubscribe("gw-a")

    assert not gateway.is_subscribed("gw-a")

    async def left() -> bool:
        return await redis.pubsub_numsub(channel) == [(channel.encode(), 0)]

    await wait_until(left)


async def test_bad_payloads_and_failing_handlers_do_not_stop_the_reader(
    redis_settings: RedisSettings,
    redis: Redis,
    bus_factory: BusFactory,
    mpim_logs: pytest.LogCaptureFixture,
) -> None:
    gateway, sender = bus_factory(redis_settings), bus_factory(redis_settings)
    inbox = Inbox()

    def handler(received: PushBatch) -> None:
        inbox(received)
        if received[0].message.text == "boom":
            raise RuntimeError("handler bug")

    await gateway.subscribe("gw-a", handler)
    await redis.publish(gateway.channel("gw-a"), b"\xff\xff not protobuf")
    unpaired = push_pb2.PushBatch(ids=[1], kinds=[1], from_uids=[2], targets=[3], ts_ms=[4])
    unpaired.texts.append("unpaired")
    unpaired.counts.append(2)
    unpaired.uids.extend([1, 2])
    unpaired.seqs.append(1)
    await redis.publish(gateway.channel("gw-a"), unpaired.SerializeToString())
    await sender.publish("gw-a", batch("boom"))
    await sender.publish("gw-a", batch("fine"))

    await inbox.wait_for(2)
    assert inbox.texts == ["boom", "fine"]
    assert (gateway.stats.bad_payloads, gateway.stats.handler_errors) == (2, 1)
    assert len(records(mpim_logs, LOGGER, "ERROR")) == 1


async def test_publishing_with_redis_down_never_raises_and_counts_drops(
    dead_redis_settings: RedisSettings,
    bus_factory: BusFactory,
    mpim_logs: pytest.LogCaptureFixture,
) -> None:
    sender = bus_factory(dead_redis_settings)
    for i in range(50):
        await sender.publish("gw-a", batch(str(i)))
        await asyncio.sleep(0)  # let the writer run between publishes
    await sender.close()

    assert sender.stats.dropped == 50
    assert sender.stats.published == 0
    assert len(records(mpim_logs, LOGGER, "WARNING")) == 1


async def test_subscriber_comes_back_after_redis_restarts(
    throwaway_redis: ThrowawayRedis,
    redis_prefix: str,
    bus_factory: BusFactory,
    mpim_logs: pytest.LogCaptureFixture,
) -> None:
    settings = throwaway_redis.settings(redis_prefix)
    resubscribed: list[str] = []
    gateway = bus_factory(settings, on_resubscribed=resubscribed.append)
    sender = bus_factory(settings)
    inbox = Inbox()
    await gateway.subscribe("gw-a", inbox)
    await sender.publish("gw-a", batch("before"))
    await inbox.wait_for(1)

    await throwaway_redis.kill()

    async def noticed() -> bool:
        return not gateway.is_subscribed("gw-a")

    await wait_until(noticed)
    await sender.publish("gw-a", batch("during"))  # dropped, not raised

    async def dropped() -> bool:
        return sender.stats.dropped == 1

    await wait_until(dropped)
    await throwaway_redis.start()

    async def pushes_flow_again() -> bool:
        await sender.publish("gw-a", batch("after"))
        await asyncio.sleep(0.05)
        return "after" in inbox.texts

    await wait_until(pushes_flow_again)
    assert "during" not in inbox.texts
    assert gateway.is_subscribed("gw-a")
    assert resubscribed == ["gw-a"]  # the gateway can catch its users up
    async with connected(settings) as raw:
        channel = gateway.channel("gw-a")
        assert await raw.pubsub_numsub(channel) == [(channel.encode(), 1)]
    warnings = records(mpim_logs, LOGGER, "WARNING")
    assert len([w for w in warnings if "subscription" in w]) <= 1


async def test_a_barrier_arrives_after_the_pushes_published_before_it_and_is_answered(
    redis_settings: RedisSettings, bus_factory: BusFactory
) -> None:
    resubscribed: list[str] = []
    gateway = bus_factory(redis_settings, on_resubscribed=resubscribed.append)
    sender, puller = bus_factory(redis_settings), bus_factory(redis_settings)
    seen: list[str] = []  # pushes and barriers, in the order the gateway got them
    answers: list[asyncio.Task[None]] = []

    def on_push(pushed: PushBatch) -> None:
        seen.extend(d.message.text for d in pushed)

    def on_barrier(token: str) -> None:
        seen.append("barrier")
        answers.append(asyncio.create_task(gateway.answer_barrier(token, "gw-a")))

    await gateway.subscribe("gw-a", on_push, on_barrier=on_barrier)
    for i in range(200):
        await sender.publish("gw-a", batch(str(i)))
    await sender.close()  # every push is in Redis before the barrier is asked
    assert await puller.barrier(timeout=5.0) == 0
    assert seen == [*(str(i) for i in range(200)), "barrier"]
    await asyncio.gather(*answers)
    assert gateway.stats.barriers_answered == 1
    # Two channels, one subscription: not taken for a resubscription.
    assert resubscribed == []


async def test_a_barrier_waits_for_every_listener_and_gives_up_on_silent_ones(
    redis_settings: RedisSettings, bus_factory: BusFactory
) -> None:
    prefix = redis_settings.key_prefix
    answering, silent, plain, puller = (bus_factory(redis_settings) for _ in range(4))
    asked: list[str] = []

    def answer(token: str) -> None:
        asyncio.get_running_loop().create_task(answering.answer_barrier(token, "gw-a"))

    await answering.subscribe("gw-a", Inbox(), on_barrier=answer)
    await silent.subscribe("gw-silent", Inbox(), on_barrier=asked.append)  # never answers
    await plain.subscribe("gw-plain", Inbox())  # takes no barriers: not asked
    loop = asyncio.get_running_loop()
    started = loop.time()
    assert await puller.barrier(timeout=0.3) == 1  # gw-a answered, gw-silent did not
    assert 0.25 <= loop.time() - started < 2.0
    assert len(asked) == 1 and asked[0].isalnum()
    await silent.unsubscribe("gw-silent")
    assert await puller.barrier(timeout=5.0) == 0
    # Another cluster's prefix hears nothing of it.
    other = bus_factory(redis_settings.model_copy(update={"key_prefix": prefix + "other:"}))
    assert await other.barrier(timeout=5.0) == 0


async def test_a_bad_barrier_token_is_counted_and_the_reader_goes_on(
    redis_settings: RedisSettings, bus_factory: BusFactory
) -> None:
    gateway, sender = bus_factory(redis_settings), bus_factory(redis_settings)
    asked: list[str] = []
    inbox = Inbox()
    await gateway.subscribe("gw-a", inbox, on_barrier=asked.append)
    raw = redis_client(redis_settings)
    try:
        await raw.publish(gateway.barrier_channel(), b"not a token!")
    finally:
        await raw.aclose()
    await sender.publish("gw-a", batch("after"))
    await inbox.wait_for(1)
    assert inbox.texts == ["after"] and asked == []
    assert gateway.stats.bad_payloads == 1
