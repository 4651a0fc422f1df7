"""A gateway's heartbeat into Redis presence: keeps its routes alive and true.

Runs in the gateway process (which knows its own sessions) against a
``RedisPresenceService`` on the shared Redis. Without beats the gateway's
routes disappear after ``gateway_ttl_seconds``: that is how a crashed
gateway's users go offline. Each beat also repairs what an outage or a lost
Connect/Disconnect left wrong (see ``RedisPresenceService.refresh_gateway``).
"""

from __future__ import annotations

import asyncio
import logging

from mpim.proto import presence_pb2
from mpim.redisconn import (
    REDIS_ERRORS,
    Breaker,
    cancel_and_wait,
    drop_idle_connections,
    raise_if_cancelling,
)
from mpim.services.presence_redis import Connections, RedisPresenceService

logger = logging.getLogger(__name__)


class PresenceHeartbeat:
    """Beats every ``interval_seconds`` for ``gateway_id``; start before accepting
    connections (the first beat registers the gateway), stop after closing them."""

    def __init__(
        self,
        presence: RedisPresenceService,
        gateway_id: str,
        connections: Connections,
        *,
        interval_seconds: float = 5.0,
    ) -> None:
        self._presence = presence
        self._gateway_id = gateway_id
        self._connections = connections
        self._interval = interval_seconds
        self._task: asyncio.Task[None] | None = None
        self._resync_needed = False
        self.breaker = Breaker(f"presence heartbeat {gateway_id}", logger, interval_seconds)
        self.beats = 0
        self.resyncs = 0

    async def start(self) -> None:
        """Beat once now (a failure is logged, not raised), then every interval."""
        await self.beat()
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(
                self._run(), name=f"presence-heartbeat-{self._gateway_id}"
            )

    async def beat(self) -> None:
        """One heartbeat; after a failed one the next rewrites all routes."""
        resynced = await self._refresh()
        if resynced is None:
            return
        self._resync_needed = False
        self.beats += 1
        self.resyncs += resynced
        self.breaker.recovered()

    async def _refresh(self) -> bool | None:
        """refresh_gateway; None if Redis failed.

        A first failure is retried at once on fresh connections: pooled ones
        all die when Redis restarts, and that alone is no reason to wait.
        """
        while True:
            try:
                return await self._presence.refresh_gateway(
                    self._gateway_id, self._connections, force_resync=self._resync_needed
                )
            except REDIS_ERRORS as exc:
                self._resync_needed = True
                if not self.breaker.failed(exc):
                    return None
                await drop_idle_connections(self._presence.redis)

    async def stop(self, *, drop: bool = True) -> None:
        """Stop beating; with ``drop``, remove this gateway's routes at once."""
        if self._task is not None:
            await cancel_and_wait(self._task, logger)
            self._task = None
        if drop:
            await self._presence.DropGateway(
                presence_pb2.DropGatewayRequest(gateway_id=self._gateway_id)
            )

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            try:
                await self.beat()
            except Exception:
                logger.exception("presence heartbeat of %s failed", self._gateway_id)
            raise_if_cancelling()
