"""group: one group of ``members`` online members; ``senders`` of them send; fan-out.

The parent creates the group before the workers start (``prepare``), with
member 0 as its owner, so every worker only needs the group id; worker 0 logs
the owner in again and keeps it online as an ordinary member.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from mpim.bench.client import connect, expect_ok
from mpim.bench.scenarios.accounts import login, register
from mpim.bench.scenarios.base import SetupInfo, run_bounded
from mpim.bench.scenarios.messaging import MessagingWorker, Receiver, Sender
from mpim.bench.scenarios.plan import MessagingPlan
from mpim.bench.spec import CommonSpec, GroupSpec, RoundSpec, indices_for

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class GroupSetup:
    """Made by the parent before the workers start."""

    group_id: int
    owner: str


async def create_group(common: CommonSpec) -> GroupSetup:
    """Register member 0 and create the group it owns."""
    conn = await connect(common.target.host, common.target.port)
    try:
        owner = common.username("m", 0)
        await register(conn, owner, common.password)
        fields = expect_ok(
            await conn.request(f"CREATEGROUP g{common.run_id} mpim bench fan-out group"),
            "CREATEGROUP",
        )
        return GroupSetup(int(fields["group_id"]), owner)
    finally:
        conn.close()


class GroupWorker(MessagingWorker):
    """Owns members ``i ≡ index (mod workers)``; members below ``senders`` also send."""

    def __init__(self, index: int, spec: GroupSpec, setup: GroupSetup) -> None:
        super().__init__(spec.common, spec.window, spec.max_inflight)
        self.index = index
        self.spec = spec
        self.group = setup

    async def setup(self) -> SetupInfo:
        started = time.monotonic()
        common = self.spec.common
        gid = self.group.group_id
        info = SetupInfo()

        async def make_member(i: int) -> None:
            target = common.target_for(i)
            conn = self.track(await connect(target.host, target.port))
            if i == 0:
                account = await login(conn, self.group.owner, common.password)
            else:
                account = await register(conn, common.username("m", i), common.password)
                expect_ok(await conn.request(f"JOINGROUP {gid}"), f"JOINGROUP {gid}")
            self.receivers.append(Receiver(conn, account.uid, common.run_id))
            if i < self.spec.senders:
                command = b"SENDGROUP %d " % gid
                self.senders.append(
                    Sender(
                        conn,
                        account.uid,
                        i,
                        command,
                        common.run_id,
                        common.size,
                        cids=common.cids,
                    )
                )
                info.sender_uids[i] = account.uid
            self.setup_done += 1

        concurrency = max(1, common.setup_concurrency // common.workers)
        jobs = [
            (lambda i=i: make_member(i))
            for i in indices_for(self.index, common.workers, self.spec.members)
        ]
        await run_bounded(concurrency, jobs)
        self.senders.sort(key=lambda s: s.index)
        info.setup_seconds = time.monotonic() - started
        return info

    def senders_for(self, receiver: Receiver, spec: RoundSpec) -> Sequence[int]:
        return spec.sender_uids


class GroupPlan(MessagingPlan):
    name = "group"

    def __init__(self, spec: GroupSpec) -> None:
        super().__init__(spec.common, spec.senders, spec.rates, spec.window)
        self.spec = spec

    def prepare(self) -> GroupSetup:
        return asyncio.run(create_group(self.common))

    def setup_total(self) -> int:
        return self.spec.members

    def config(self) -> dict[str, Any]:
        out = asdict(self.spec)
        out.pop("common")
        return out
