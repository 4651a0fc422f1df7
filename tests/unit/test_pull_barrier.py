"""PullBarrier's own rules, with a recording bus (the Redis side is tested in
test_redis_bus.py, the whole PULL across two gateways in test_distributed.py)."""

from __future__ import annotations

import asyncio
from collections.abc import Collection

from mpim.bus.base import BarrierBus
from mpim.gateway.pull_barrier import PullBarrier


class RecordingBus:
    def __init__(self, missing: set[str]) -> None:
        self.missing = missing
        self.events: list[str] = []

    async def barrier(self, gateway_ids: Collection[str], timeout: float) -> set[str]:
        self.events.append(f"asked {sorted(gateway_ids)} within {timeout}")
        return self.missing & set(gateway_ids)

    async def answer_barrier(self, token: str, gateway_id: str) -> None:
        self.events.append(f"answered {token} as {gateway_id}")


async def test_a_pull_asks_every_live_gateway_but_itself_and_counts_silent_ones() -> None:
    bus = RecordingBus(missing={"gw-3"})
    assert isinstance(bus, BarrierBus)

    async def store_marks() -> None:
        bus.events.append("stored")

    barrier = PullBarrier(bus, "gw-1", lambda: ["gw-1", "gw-2", "gw-3"], store_marks, timeout=0.5)
    await barrier.others_stored()
    assert bus.events == ["asked ['gw-2', 'gw-3'] within 0.5"]
    assert barrier.timeouts == 1
    bus.missing = set()
    await barrier.others_stored()
    assert barrier.timeouts == 1


async def test_asked_stores_the_marks_before_it_answers() -> None:
    bus = RecordingBus(missing=set())
    stored = asyncio.Event()

    async def store_marks() -> None:
        await stored.wait()
        bus.events.append("stored")

    barrier = PullBarrier(bus, "gw-2", list, store_marks)
    barrier.asked("abc123")
    await asyncio.sleep(0.01)
    assert bus.events == []  # no answer while the marks are not stored
    stored.set()
    for _ in range(10):
        await asyncio.sleep(0)
    assert bus.events == ["stored", "answered abc123 as gw-2"]


async def test_stop_cancels_answers_still_waiting_for_marks() -> None:
    bus = RecordingBus(missing=set())

    async def never() -> None:
        await asyncio.Event().wait()

    barrier = PullBarrier(bus, "gw-2", list, never)
    barrier.asked("abc123")
    await asyncio.sleep(0)
    await barrier.stop()
    assert bus.events == []
