"""The in-process bus of embedded mode: a publish is a direct call."""

from __future__ import annotations

import logging

from mpim.bus.base import BarrierHandler, PushHandler
from mpim.bus.pushes import PushBatch

logger = logging.getLogger(__name__)


class LocalBus:
    def __init__(self) -> None:
        self._handlers: dict[str, PushHandler] = {}

    async def publish(self, gateway_id: str, batch: PushBatch) -> None:
        handler = self._handlers.get(gateway_id)
        if handler is None:
            logger.debug("no gateway %s subscribed; dropping push", gateway_id)
            return
        handler(batch)

    async def subscribe(
        self, gateway_id: str, handler: PushHandler, on_barrier: BarrierHandler | None = None
    ) -> None:
        # One process, one gateway: nobody else's PULL needs its marks first.
        self._handlers[gateway_id] = handler

    async def unsubscribe(self, gateway_id: str) -> None:
        self._handlers.pop(gateway_id, None)
