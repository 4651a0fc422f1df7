"""What every push-bus adapter offers."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from mpim.bus.pushes import PushBatch

PushHandler = Callable[[PushBatch], None]


class Bus(Protocol):
    """At-most-once delivery of push batches, one channel per gateway.

    A lost batch loses no message: the inbox is durable and SYNC repairs.
    """

    async def publish(self, gateway_id: str, batch: PushBatch) -> None: ...

    async def subscribe(self, gateway_id: str, handler: PushHandler) -> None: ...

    async def unsubscribe(self, gateway_id: str) -> None: ...
