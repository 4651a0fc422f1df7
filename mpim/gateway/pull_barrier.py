"""PULL on one gateway of several: first, every other gateway stores its marks.

A pushed message counts as delivered once a gateway writes it to a
connection; PULL must not return it again, on any gateway. A gateway writes
pushes at once and stores their marks shortly after, in batches, so a
message a gateway wrote a moment ago may not be marked yet. Before a PULL
reads the inbox, this gateway asks every other live gateway, over the bus,
to store the marks it holds, and waits for their answers (bounded by
``timeout``). The barrier travels on the same pub/sub connection as the
pushes, so a gateway sees it after every push published before it, and the
marks of those pushes are among what it stores.

Until 2026-11-29 gateways instead stored each wave of marks before writing
its pushes: every push waited for an RPC and a commit, where now only a PULL
waits, for one round of mark flushes.

A gateway that does not answer in time (stopped, partitioned) costs at most
a duplicate in this PULL, never a lost message: the same as a mark that
could not be stored.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Collection
from typing import Final

from mpim.bus.base import BarrierBus

logger = logging.getLogger(__name__)

TIMEOUT_SECONDS: Final = 1.0


class PullBarrier:
    def __init__(
        self,
        bus: BarrierBus,
        gateway_id: str,
        live_gateways: Callable[[], Collection[str]],
        store_marks: Callable[[], Awaitable[None]],
        *,
        timeout: float = TIMEOUT_SECONDS,
    ) -> None:
        self._bus = bus
        self._gateway_id = gateway_id
        self._live_gateways = live_gateways
        self._store_marks = store_marks
        self._timeout = timeout
        self._answering: set[asyncio.Task[None]] = set()
        self.timeouts = 0

    async def others_stored(self) -> None:
        """Wait until every other live gateway has stored its marks (bounded)."""
        others = [g for g in self._live_gateways() if g != self._gateway_id]
        missing = await self._bus.barrier(others, self._timeout)
        if missing:
            self.timeouts += 1
            logger.warning(
                "PULL went on without the marks of %s (no answer within %.1f s)",
                ", ".join(sorted(missing)),
                self._timeout,
            )

    def asked(self, token: str) -> None:
        """The bus handler: another gateway's PULL waits for this one's marks."""
        task = asyncio.get_running_loop().create_task(self._answer(token))
        self._answering.add(task)
        task.add_done_callback(self._answering.discard)

    async def _answer(self, token: str) -> None:
        await self._store_marks()
        await self._bus.answer_barrier(token, self._gateway_id)

    async def stop(self) -> None:
        for task in list(self._answering):
            task.cancel()
        await asyncio.gather(*self._answering, return_exceptions=True)
