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
from collections import defaultdict
from collections.abc import Callable, Iterable

from mpim.gateway.session import Session
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
        sessions: Callable[[], Iterable[Session]],
        *,
        page_size: int = 500,
    ) -> None:
        self._messages = messages
        self._sessions = sessions
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
            by_uid: dict[int, list[Session]] = defaultdict(list)
            for session in list(self._sessions()):
                if session.uid is not None:
                    by_uid[session.uid].append(session)
            gate = asyncio.Semaphore(CONCURRENCY)
            results = await asyncio.gather(
                *(self._repair(uid, sessions, gate) for uid, sessions in by_uid.items()),
                return_exceptions=True,
            )
            failed = sum(isinstance(r, Exception) for r in results)
            logger.info(
                "push bus back: %d users caught up, %d messages delivered, %d failed",
                len(by_uid) - failed,
                self.delivered,
                failed,
            )
            if not self._again:
                return

    async def _repair(self, uid: int, sessions: list[Session], gate: asyncio.Semaphore) -> None:
        async with gate:
            while True:
                batch = await self._messages.Pull(
                    message_pb2.PullRequest(uid=uid, limit=self._page)
                )
                for message in batch.messages:
                    line = format_message(message, message.seq)
                    pushed = [s.push(message.seq, line) for s in sessions]
                    self.delivered += any(pushed)
                if not batch.more:
                    return
