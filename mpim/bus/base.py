"""What every push-bus adapter offers."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol, runtime_checkable

from mpim.bus.pushes import PushBatch

PushHandler = Callable[[PushBatch], None]
# Called with a barrier's token, in order with the pushes around it.
BarrierHandler = Callable[[str], None]


class Bus(Protocol):
    """At-most-once delivery of push batches, one channel per gateway.

    A lost batch loses no message: the inbox is durable and SYNC repairs.
    """

    async def publish(self, gateway_id: str, batch: PushBatch) -> None: ...

    async def subscribe(
        self, gateway_id: str, handler: PushHandler, on_barrier: BarrierHandler | None = None
    ) -> None: ...

    async def unsubscribe(self, gateway_id: str) -> None: ...


@runtime_checkable
class BarrierBus(Protocol):
    """A bus that carries mark barriers (see ``gateway/pull_barrier.py``)."""

    async def barrier(self, timeout: float) -> int | None: ...

    async def answer_barrier(self, token: str, gateway_id: str) -> None: ...
