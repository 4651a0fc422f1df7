"""c2c: ``pairs`` senders, each sending to its own receiver (optionally beside idle users)."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import asdict
from typing import Any

from mpim.bench.client import connect
from mpim.bench.ranges import RangeSet
from mpim.bench.results import Partial
from mpim.bench.scenarios.accounts import ConnectionPool, register, register_users
from mpim.bench.scenarios.base import SetupInfo, run_bounded
from mpim.bench.scenarios.messaging import MessagingWorker, Receiver, Sender
from mpim.bench.scenarios.plan import MessagingPlan
from mpim.bench.spec import C2CSpec, RoundSpec, indices_for, split_evenly

logger = logging.getLogger(__name__)


class C2CWorker(MessagingWorker):
    """Owns pairs ``i ≡ index (mod workers)`` and its share of the idle connections."""

    def __init__(self, index: int, spec: C2CSpec) -> None:
        super().__init__(spec.common, spec.window, spec.max_inflight)
        self.index = index
        self.spec = spec
        self.partner: dict[int, int] = {}  # receiver uid -> sender uid
        self.idle = ConnectionPool(spec.common.targets)

    async def setup(self) -> SetupInfo:
        started = time.monotonic()
        common = self.spec.common
        info = SetupInfo()

        async def make_pair(i: int) -> None:
            # Receiver and sender on different gateways when there are several.
            target = common.target_for(i + 1)
            rconn = self.track(await connect(target.host, target.port))
            receiver_account = await register(rconn, common.username("r", i), common.password)
            self.setup_done += 1
            target = common.target_for(i)
            sconn = self.track(await connect(target.host, target.port))
            sender_account = await register(sconn, common.username("s", i), common.password)
            self.setup_done += 1
            command = b"SEND %d " % receiver_account.uid
            sender = Sender(
                sconn, sender_account.uid, i, command, common.run_id, common.size, cids=common.cids
            )
            self.senders.append(sender)
            self.receivers.append(Receiver(rconn, receiver_account.uid, common.run_id))
            self.partner[receiver_account.uid] = sender_account.uid
            info.sender_uids[i] = sender_account.uid

        jobs = [
            (lambda i=i: make_pair(i))
            for i in indices_for(self.index, common.workers, self.spec.pairs)
        ]
        await run_bounded(self._concurrency(), jobs)
        self.senders.sort(key=lambda s: s.index)
        await self._setup_idle()
        info.setup_seconds = time.monotonic() - started
        return info

    async def _setup_idle(self) -> None:
        spec, common = self.spec, self.spec.common
        if not spec.idle:
            return
        count = split_evenly(spec.idle, common.workers)[self.index]
        user_indices = list(
            indices_for(self.index, common.workers, min(spec.idle_users, spec.idle))
        )
        if not count or not user_indices:
            return

        def done() -> None:
            self.setup_done += 1

        names = [common.username("i", i) for i in user_indices]
        accounts = await register_users(
            common.targets, names, common.password, self._concurrency(), done
        )
        await self.idle.open(count, [a.token for a in accounts], self._concurrency(), done)

    def _concurrency(self) -> int:
        return max(1, self.spec.common.setup_concurrency // self.spec.common.workers)

    def senders_for(self, receiver: Receiver, spec: RoundSpec) -> Sequence[int]:
        return [self.partner[receiver.uid]]

    async def finish_round(self, expect: dict[int, RangeSet]) -> Partial:
        part = await super().finish_round(expect)
        if self.idle.dropped:
            part.counts["disconnects"] += len(self.idle.dropped)
            for reason in self.idle.dropped:
                part.note_error(f"idle connection dropped: {reason}")
            self.idle.dropped.clear()
        return part

    async def close(self) -> None:
        self.idle.close()
        await super().close()


class C2CPlan(MessagingPlan):
    name = "c2c"

    def __init__(self, spec: C2CSpec) -> None:
        super().__init__(spec.common, spec.pairs, spec.rates, spec.window)
        self.spec = spec

    def setup_total(self) -> int:
        idle_users = min(self.spec.idle_users, self.spec.idle) if self.spec.idle else 0
        return 2 * self.spec.pairs + idle_users + self.spec.idle

    def config(self) -> dict[str, Any]:
        out = asdict(self.spec)
        out.pop("common")
        return out
