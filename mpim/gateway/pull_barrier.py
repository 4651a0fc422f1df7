"""PULL on one gateway of several: first, every gateway stores its marks.

A pushed message counts as delivered once a gateway writes it to a
connection; PULL must not return it again, on any gateway. A gateway writes
pushes at once and stores their marks shortly after, in batches, so a
message a gateway wrote a moment ago may not be marked yet. Before a PULL
reads the inbox, its gateway asks every gateway listening on the bus (itself
included) to store the marks it holds, and waits for their answers (bounded
by ``timeout``). The barrier travels on the same pub/sub connection as the
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
from collections.abc import Awaitable, Callable
from typing import Final

from mpim.bus.base import BarrierBus

logger = logging.getLogger(__name__)

TIMEOUT_SECONDS: Final = 1.0


class PullBarrier:
    """Both sides of the barrier for one gateway.

    PULLs that arrive while a round is running share the next round, so a
    burst of PULLs costs two rounds, and holds one Redis connection, not one
    each (a round waits in BLPOP).
    """

    def __init__(
        self,
        bus: BarrierBus,
        gateway_id: str,
        store_marks: Callable[[], Awaitable[None]],
        *,
        timeout: float = TIMEOUT_SECONDS,
        count_round: Callable[[str], None] | None = None,
    ) -> None:
        """``count_round(outcome)``: each round's outcome, for the metrics
        (``complete``, ``unanswered`` or ``failed``)."""
        self._bus = bus
        self._gateway_id = gateway_id
        self._store_marks = store_marks
        self._timeout = timeout
        self._count_round = count_round
        self._next_round: asyncio.Future[None] | None = None
        self._rounds: asyncio.Task[None] | None = None
        self._answering: set[asyncio.Task[None]] = set()
        self.unanswered = 0
        self.failed = 0

    async def everyone_stored(self) -> None:
        """Return once a round that began after this call has ended."""
        waiter = self._next_round
        if waiter is None:
            waiter = self._next_round = asyncio.get_running_loop().create_future()
            if self._rounds is None or self._rounds.done():
                self._rounds = asyncio.get_running_loop().create_task(self._run_rounds())
        # A PULL that goes away must not cancel the round others wait for.
        await asyncio.shield(waiter)

    async def _run_rounds(self) -> None:
        while self._next_round is not None:
            waiter, self._next_round = self._next_round, None
            try:
                missing = await self._bus.barrier(self._timeout)
                if missing is None:
                    self.failed += 1
                    outcome = "failed"
                elif missing:
                    self.unanswered += missing
                    outcome = "unanswered"
                    logger.warning(
                        "PULL went on without the marks of %d gateway(s) (no answer in %.1f s)",
                        missing,
                        self._timeout,
                    )
                else:
                    outcome = "complete"
                if self._count_round is not None:
                    self._count_round(outcome)
            finally:
                if not waiter.done():
                    waiter.set_result(None)

    def asked(self, token: str) -> None:
        """The bus handler: a PULL somewhere waits for this gateway's marks."""
        task = asyncio.get_running_loop().create_task(self._answer(token))
        self._answering.add(task)
        task.add_done_callback(self._answering.discard)

    async def _answer(self, token: str) -> None:
        await self._store_marks()
        await self._bus.answer_barrier(token, self._gateway_id)

    async def stop(self) -> None:
        """Let answers in progress finish (their marks are being stored), then
        end the rounds; a PULL still waiting goes on without."""
        await asyncio.gather(*self._answering, return_exceptions=True)
        if self._rounds is not None:
            self._rounds.cancel()
            await asyncio.gather(self._rounds, return_exceptions=True)
        if self._next_round is not None and not self._next_round.done():
            self._next_round.set_result(None)
