"""PullBarrier's own rules, with a scripted bus (the Redis side is tested in
test_redis_bus.py, the whole PULL across two gateways in test_distributed.py)."""

from __future__ import annotations

import asyncio

from mpim.bus.base import BarrierBus
from mpim.gateway.pull_barrier import PullBarrier


class ScriptedBus:
    """Each barrier round waits for ``release`` and reports ``missing``."""

    def __init__(self) -> None:
        self.missing: int | None = 0
        self.release = asyncio.Event()
        self.release.set()
        self.rounds = 0
        self.events: list[str] = []

    async def barrier(self, timeout: float) -> int | None:
        self.rounds += 1
        await self.release.wait()
        return self.missing

    async def answer_barrier(self, token: str, gateway_id: str) -> None:
        self.events.append(f"answered {token} as {gateway_id}")


async def no_marks() -> None:
    pass


async def test_pulls_during_a_round_share_the_next_round() -> None:
    bus = ScriptedBus()
    assert isinstance(bus, BarrierBus)
    barrier = PullBarrier(bus, "gw-1", no_marks)
    bus.release.clear()
    first = asyncio.create_task(barrier.everyone_stored())
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert bus.rounds == 1
    later = [asyncio.create_task(barrier.everyone_stored()) for _ in range(5)]
    await asyncio.sleep(0.01)
    assert not first.done() and not any(t.done() for t in later)
    bus.release.set()
    await asyncio.gather(first, *later)
    # The five began during round 1, so they needed a round of their own: one.
    assert bus.rounds == 2


async def test_silent_gateways_and_redis_failures_are_counted_and_the_pull_goes_on() -> None:
    bus = ScriptedBus()
    outcomes: list[str] = []
    barrier = PullBarrier(bus, "gw-1", no_marks, count_round=outcomes.append)
    bus.missing = 2
    await barrier.everyone_stored()
    bus.missing = None
    await barrier.everyone_stored()
    bus.missing = 0
    await barrier.everyone_stored()
    assert (barrier.unanswered, barrier.failed) == (2, 1)
    assert outcomes == ["unanswered", "failed", "complete"]


async def test_a_pull_that_goes_away_does_not_cancel_the_round_others_wait_for() -> None:
    bus = ScriptedBus()
    barrier = PullBarrier(bus, "gw-1", no_marks)
    bus.release.clear()
    leaving = asyncio.create_task(barrier.everyone_stored())
    await asyncio.sleep(0)
    staying = asyncio.create_task(barrier.everyone_stored())
    await asyncio.sleep(0)
    leaving.cancel()
    bus.release.set()
    await staying
    assert leaving.cancelled()


async def test_asked_stores_the_marks_before_it_answers_and_stop_lets_it_finish() -> None:
    bus = ScriptedBus()
    stored = asyncio.Event()

    async def store_marks() -> None:
        await stored.wait()
        bus.events.append("stored")

    barrier = PullBarrier(bus, "gw-2", store_marks)
    barrier.asked("abc123")
    await asyncio.sleep(0.01)
    assert bus.events == []  # no answer while the marks are not stored
    stopping = asyncio.create_task(barrier.stop())
    await asyncio.sleep(0.01)
    assert not stopping.done()  # stop waits for the answer in progress
    stored.set()
    await stopping
    assert bus.events == ["stored", "answered abc123 as gw-2"]
