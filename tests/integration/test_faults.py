"""Break a real multi-process cluster while messages flow; nothing acknowledged is lost.

The cluster runs as ``mpim cluster start`` runs it (separate processes, real
ZooKeeper, Redis and MariaDB). Senders behave like a careful client: every
send carries a ``@cid``, a send that failed or got no answer is retried with
the same cid (on another gateway if theirs died), so a message is stored once.
Each test prints how long the disruption lasted.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections import Counter
from dataclasses import dataclass, field

import pytest

from mpim.protocol.messages import MessageLine
from tests.support.lineclient import Account, LineClient, unique_name
from tests.support.process_cluster import Cluster

pytestmark = [pytest.mark.faults, pytest.mark.timeout(180)]


@dataclass
class Flow:
    """What a sender was told: cid -> msg_id, when sends were failing and
    acknowledged, and every failure by kind (the reply, or no reply)."""

    acked: dict[str, int] = field(default_factory=dict)
    failures: list[float] = field(default_factory=list)
    acked_at: list[float] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)


class CarefulSender:
    """Sends with a cid, retries through failures, fails over between gateways."""

    def __init__(
        self,
        ports: list[int],
        account: Account,
        flow: Flow,
        reply_timeout: float = 5.0,
    ) -> None:
        self.ports = ports
        self.account = account
        self.flow = flow
        self.reply_timeout = reply_timeout  # silence this long counts as no reply
        self.client: LineClient | None = None
        self._gateway = 0

    async def connect(self) -> LineClient:
        while True:
            port = self.ports[self._gateway % len(self.ports)]
            client: LineClient | None = None
            try:
                client = await LineClient.connect("127.0.0.1", port)
                reply = await client.cmd(f"AUTH {self.account.token}")
                if reply.startswith("+OK uid="):
                    self.client = client
                    return client
            except (ConnectionError, OSError, TimeoutError):
                pass
            if client is not None:
                await client.close()
            self._gateway += 1
            await asyncio.sleep(0.05)

    async def send(self, to_uid: int, cid: str, text: str, deadline: float) -> None:
        while time.monotonic() < deadline:
            client = self.client or await self.connect()
            try:
                reply = await client.cmd(f"@cid={cid} SEND {to_uid} {text}", self.reply_timeout)
            except (ConnectionError, OSError, TimeoutError) as exc:
                self.flow.failures.append(time.monotonic())
                self.flow.errors["no reply: " + type(exc).__name__] += 1
                await client.close()
                self.client = None
                self._gateway += 1
                continue
            if reply.startswith("+OK msg_id="):
                msg_id = int(reply.split("=", 1)[1])
                assert self.flow.acked.setdefault(cid, msg_id) == msg_id, "a cid got two ids"
                self.flow.acked_at.append(time.monotonic())
                return
            assert reply == "-ERR service unavailable", reply
            self.flow.failures.append(time.monotonic())
            self.flow.errors[reply] += 1
            await asyncio.sleep(0.05)
        raise AssertionError(f"send {cid} never acknowledged")

    async def close(self) -> None:
        if self.client is not None:
            await self.client.close()


async def register(port: int) -> Account:
    client = await LineClient.connect("127.0.0.1", port)
    try:
        return await client.register(unique_name("ft"))
    finally:
        await client.close()


async def inbox(port: int, account: Account) -> list[MessageLine]:
    """Everything in the account's inbox, by SYNC from 0."""
    client = await LineClient.connect("127.0.0.1", port)
    try:
        assert (await client.cmd(f"AUTH {account.token}")).startswith("+OK uid=")
        out: list[MessageLine] = []
        after = 0
        while True:
            lines, done = await client.cmd_multi(f"SYNC {after}")
            out += [MessageLine.parse(line) for line in lines]
            after = int(done.split("seq=")[1].split()[0])
            if "more=1" not in done:
                return out
    finally:
        await client.close()


def assert_exactly_once(flow: Flow, boxes: dict[int, list[MessageLine]]) -> None:
    stored = [m.id for box in boxes.values() for m in box]
    assert len(stored) == len(set(stored)), "a message was stored twice"
    missing = set(flow.acked.values()) - set(stored)
    assert not missing, f"{len(missing)} acknowledged messages lost"
    for box in boxes.values():
        assert [m.seq for m in box] == list(range(1, len(box) + 1)), "seq gap"


def disruption(flow: Flow, since: float) -> float:
    after = [t for t in flow.failures if t >= since]
    return (max(after) - since) if after else 0.0


async def run_flow(
    ports: list[int], pairs: int, per_sender: int, fault: asyncio.Event
) -> tuple[Flow, list[Account], list[Account]]:
    """``pairs`` senders each send ``per_sender`` messages to their receiver."""
    flow = Flow()
    receivers = [await register(ports[1]) for _ in range(pairs)]
    accounts = [await register(ports[k % 2]) for k in range(pairs)]
    senders = [
        CarefulSender([ports[k % 2], ports[(k + 1) % 2]], account, flow)
        for k, account in enumerate(accounts)
    ]
    deadline = time.monotonic() + 120

    async def one(k: int) -> None:
        for i in range(per_sender):
            if i == per_sender // 3 and k == 0:
                fault.set()
            await senders[k].send(receivers[k].uid, f"c{k}x{i}", f"m{k} {i}", deadline)

    try:
        await asyncio.gather(*(one(k) for k in range(pairs)))
    finally:
        for sender in senders:
            await sender.close()
    return flow, accounts, receivers


async def kill_while_flowing(cluster: Cluster, victim: str, sync_port: str) -> Flow:
    """Start the cluster, SIGKILL ``victim`` a third of the way through a flow of
    4 x 150 careful sends, then SYNC every inbox through ``sync_port``'s gateway
    and check every acknowledged message is there exactly once."""
    code, out, err = await cluster.tool("start")
    assert code == 0, f"{out}\n{err}"
    try:
        ports = [cluster.ports["gateway-1"], cluster.ports["gateway-2"]]
        fault = asyncio.Event()
        killed_at = 0.0

        async def kill_when_flowing() -> None:
            nonlocal killed_at
            await fault.wait()
            os.kill(cluster.pid(victim), signal.SIGKILL)
            killed_at = time.monotonic()

        killer = asyncio.create_task(kill_when_flowing())
        flow, _, receivers = await run_flow(ports, pairs=4, per_sender=150, fault=fault)
        await killer
        boxes = {r.uid: await inbox(cluster.ports[sync_port], r) for r in receivers}
        assert_exactly_once(flow, boxes)
        assert len(flow.acked) == 4 * 150
        took = disruption(flow, killed_at)
        print(
            f"disruption: {victim} SIGKILLed: sends failed for {took:.2f}s "
            f"({len(flow.failures)} retries)"
        )
        return flow
    finally:
        await cluster.tool("stop")


async def test_sigkill_of_a_message_service_loses_no_acknowledged_message(
    cluster: Cluster,
) -> None:
    await kill_while_flowing(cluster, "message-2", sync_port="gateway-1")


async def test_sigkill_of_a_gateway_clients_fail_over_and_sync_everything(
    cluster: Cluster,
) -> None:
    # Senders on the dead gateway reconnect to the other one, AUTH, and retry
    # their unanswered send with the same cid; receivers SYNC there.
    await kill_while_flowing(cluster, "gateway-1", sync_port="gateway-2")
