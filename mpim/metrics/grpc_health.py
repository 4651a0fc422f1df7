"""Keeps a service's standard gRPC health status in step with its readiness.

The original MPIM's ``Health.Ping`` maps onto ``grpc.health.v1.Health/Check``:
SERVING while the store (or Redis, for presence) answers and the instance is
registered in ZooKeeper, NOT_SERVING otherwise. Checked every few seconds,
so a probe never waits on the store itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Collection, Sequence

from grpc_health.v1 import health, health_pb2

from mpim.metrics.health import Readiness

logger = logging.getLogger(__name__)

INTERVAL_SECONDS = 2.0


class HealthMonitor:
    def __init__(
        self,
        readiness: Readiness,
        servicer: health.aio.HealthServicer,
        service_names: Sequence[str],
        *,
        only: Collection[str] | None = None,
        interval_seconds: float = INTERVAL_SECONDS,
    ) -> None:
        self._readiness = readiness
        self._servicer = servicer
        self._names = service_names
        self._only = only
        self._interval = interval_seconds
        self._task: asyncio.Task[None] | None = None
        self.serving = True

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="mpim-health")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def check_once(self) -> bool:
        results = await self._readiness.run(self._only)
        serving = all(r.ok for r in results)
        if serving != self.serving:
            failed = ", ".join(f"{r.name}: {r.detail}" for r in results if not r.ok)
            if serving:
                logger.info("health: SERVING again")
            else:
                logger.warning("health: NOT_SERVING (%s)", failed)
        self.serving = serving
        status = (
            health_pb2.HealthCheckResponse.SERVING
            if serving
            else health_pb2.HealthCheckResponse.NOT_SERVING
        )
        for name in self._names:
            await self._servicer.set(name, status)
        return serving

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            try:
                await self.check_once()
            except Exception:
                logger.exception("health check failed")
