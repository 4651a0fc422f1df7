"""Catching online users up after the push bus lost messages.

While a gateway's Redis subscription is down, pushes published to it are
gone. Nothing tells a connected client it missed them: it would have to SYNC
on its own. So when the subscription comes back, the gateway PULLs each of
its online users' undelivered messages and writes them as pushes. PULL
claims what it returns, so across all of a user's devices every missed
message is delivered once (the same rule as a client's own PULL); anything
a device still lacks, SYNC has.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable

from mpim.proto import message_pb2
from mpim.proto.interfaces import MessageService
from mpim.protocol.messages import format_message

logger = logging.getLogger(__name__)

# Users repaired at once: a gateway with 10,000 users online must not send
# 10,000 PULLs in one burst the moment Redis returns.
CONCURRENCY = 16


class InboxRepair:
    def __init__(
        self,
        messages: MessageService,
        online_uids: Callable[[], Iterable[int]],
        deliver: Callable[[int, int, str], bool],
        *,
        page_size: int = 500,
        settle_marks: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        """``deliver(uid, seq, line)`` writes a push to the user's sessions, in
        the hub's per-user seq order (so a line never goes out twice).
        ``settle_marks`` runs before each pass's PULLs, as before a client's
        PULL: every gateway stores the marks of what it has written."""
        self._settle_marks = settle_marks
        self._messages = messages
        self._online_uids = online_uids
        self._deliver = deliver
        self._page = page_size
        self._task: asyncio.Task[None] | None = None
        self._again = False
        self.delivered = 0

    def trigger(self) -> None:
        """Repair now; a trigger during a repair runs one more pass after it."""
        if self._task is not None and not self._task.done():
            self._again = True
            return
        self._task = asyncio.get_running_loop().create_task(self._run(), name="mpim-repair")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _run(self) -> None:
        while True:
            self._again = False
            if self._settle_marks is not None:
                await self._settle_marks()
            uids = list(self._online_uids())
            gate = asyncio.Semaphore(CONCURRENCY)
            results = await asyncio.gather(
                *(self._repair(uid, gate) for uid in uids), return_exceptions=True
            )
            failed = sum(isinstance(r, Exception) for r in results)
            logger.info(
                "push bus back: %d users caught up, %d messages delivered, %d failed",
                len(uids) - failed,
                self.delivered,
                failed,
            )
            if not self._again:
                return

    async def _repair(self, uid: int, gate: asyncio.Semaphore) -> None:
        async with gate:
            while True:
                batch = await self._messages.Pull(
                    message_pb2.PullRequest(uid=uid, limit=self._page)
                )
                for message in batch.messages:
                    line = format_message(message, message.seq)
                    self.delivered += self._deliver(uid, message.seq, line)
                if not batch.more:
                    return
