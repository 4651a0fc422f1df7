"""Per-user seq order for pushes that come from several message services.

Two message-service instances commit a user's messages in seq order, but
push them independently: the push of seq 6 (from one instance) can reach a
gateway before the push of seq 5 (from the other). Protocol promise 2 says
every connection gets its pushes in seq order, so the gateway puts them back
in order: a push that skips ahead of the user's last pushed seq waits; when
the missing seq arrives the run is written; if it has not come within
``gap_seconds`` (its push was lost, or it was committed before the user's
route was known), the gap is fetched with SYNC and written first.

The first push after a login sets the baseline, since the gateway does not
know the user's seq before that; a push at or below the last written seq is
a repeat (a gap SYNC or the post-outage catch-up wrote it) and is dropped.
So an older push still in flight when the baseline is set is not pushed;
SYNC returns it, as always. Only distributed gateways need this: one
embedded message service pushes in commit order.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from mpim.proto import common_pb2

logger = logging.getLogger(__name__)

GAP_SECONDS = 0.25
# A user's pushes held at most while waiting for a gap: past this, SYNC now.
MAX_HELD = 1000

Deliver = Callable[[int, int, str], bool]
FetchAfter = Callable[[int, int], Awaitable[list[common_pb2.Message]]]
Format = Callable[[common_pb2.Message], str]


class PushOrder:
    def __init__(
        self,
        deliver: Deliver,
        fetch_after: FetchAfter,
        line_of: Format,
        *,
        gap_seconds: float = GAP_SECONDS,
    ) -> None:
        self._deliver = deliver
        self._fetch_after = fetch_after
        self._line_of = line_of
        self._gap = gap_seconds
        self._last: dict[int, int] = {}
        self._held: dict[int, dict[int, str]] = {}
        self._timers: dict[int, asyncio.TimerHandle] = {}
        self._fills: set[asyncio.Task[None]] = set()
        self.gaps_filled = 0

    def offer(self, uid: int, seq: int, line: str) -> bool:
        """Write now if in order; otherwise hold. True if written or held."""
        last = self._last.get(uid)
        if last is not None and seq <= last:
            return True  # written already (a gap SYNC or the catch-up got there first)
        if last is None or seq == last + 1:
            written = self._deliver(uid, seq, line)
            self._last[uid] = seq
            if uid in self._held:
                self._drain(uid)
            return written
        held = self._held.setdefault(uid, {})
        held[seq] = line
        if len(held) > MAX_HELD:
            self._start_fill(uid)
        elif uid not in self._timers:
            loop = asyncio.get_running_loop()
            self._timers[uid] = loop.call_later(self._gap, self._start_fill, uid)
        return True

    def forget(self, uid: int) -> None:
        """The user's last session here is gone."""
        self._last.pop(uid, None)
        self._held.pop(uid, None)
        timer = self._timers.pop(uid, None)
        if timer is not None:
            timer.cancel()

    async def stop(self) -> None:
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
        for task in list(self._fills):
            task.cancel()
        await asyncio.gather(*self._fills, return_exceptions=True)

    def _drain(self, uid: int) -> None:
        # Everything held is above the last written seq: offer holds only
        # what skips ahead, and a gap fill takes all that is held.
        held = self._held[uid]
        last = self._last[uid]
        while last + 1 in held:
            last += 1
            self._deliver(uid, last, held.pop(last))
        self._last[uid] = last
        if not held:
            del self._held[uid]
            timer = self._timers.pop(uid, None)
            if timer is not None:
                timer.cancel()

    def _start_fill(self, uid: int) -> None:
        timer = self._timers.pop(uid, None)
        if timer is not None:
            timer.cancel()
        if uid not in self._held:
            return
        task = asyncio.get_running_loop().create_task(self._fill(uid), name="mpim-push-gap")
        self._fills.add(task)
        task.add_done_callback(self._fills.discard)

    async def _fill(self, uid: int) -> None:
        """SYNC from the last written seq, write in order, then what was held."""
        last = self._last.get(uid)
        if last is None:
            return
        try:
            messages = await self._fetch_after(uid, last)
        except Exception as exc:
            logger.warning(
                "push gap: SYNC failed (%r); writing what arrived", exc, extra={"uid": uid}
            )
            messages = []
        if uid not in self._last:
            return  # logged out meanwhile
        for message in messages:
            if message.seq > self._last[uid]:
                self._deliver(uid, message.seq, self._line_of(message))
                self._last[uid] = message.seq
                self.gaps_filled += 1
        held = self._held.pop(uid, None)
        if held:
            # SYNC had everything committed: what is still missing is not
            # coming. Write the rest in seq order.
            for seq in sorted(held):
                if seq > self._last[uid]:
                    self._deliver(uid, seq, held[seq])
                    self._last[uid] = seq
