"""The store server goes away for a few seconds under a steady flow of careful sends.

The machine's MariaDB is shared, so the cluster (run by ``mpim cluster`` as
in test_faults.py) reaches it through a ``FaultProxy`` that the test cuts:
every open connection is reset and new ones are refused (mysqld died) or
left unanswered (mysqld froze). During the outage sends must fail with a
clear ``-ERR`` (never silence, never ``+OK`` for something not stored),
readiness must say the store is failing, and once the proxy is back sends
succeed again without restarting anything. Afterwards every acknowledged
message is in its inbox exactly once. The same cut under a bare ``Database``
checks, on MariaDB and PostgreSQL, that the store fails fast and recovers.
"""

from __future__ import annotations

import asyncio
import time

import pytest
from sqlalchemy import Connection, text

from mpim.config import RedisSettings
from mpim.discovery.zookeeper import ZooKeeperRegistry
from mpim.errors import ErrorCode
from mpim.metrics.scrape import fetch
from mpim.store.database import Database, StoreUnavailable
from tests.integration.test_faults import (
    CarefulSender,
    Flow,
    assert_exactly_once,
    inbox,
    register,
)
from tests.support.faultproxy import FaultProxy, Mode
from tests.support.process_cluster import Cluster, cluster_toml

pytestmark = [pytest.mark.faults, pytest.mark.timeout(120)]

PAIRS = 8
# refuse: mysqld died, connects are refused and sends fail at once.
# blackhole: mysqld froze, connects hang; a send fails at the gateway's RPC
# deadline (rpc.deadline_seconds, 5 s), so that outage must last longer.
OUTAGES: dict[Mode, float] = {"refuse": 4.0, "blackhole": 8.0}
FIRST_FAILURE_WITHIN: dict[Mode, float] = {"refuse": 2.0, "blackhole": 7.5}
# Longer than two RPC deadlines (a send may queue behind a SendBatch that is
# timing out): every send must get an answer, never silence.
REPLY_TIMEOUT = 12.0


async def wait_readyz(address: str, ready: bool, saying: str = "", timeout: float = 20.0) -> str:
    """Poll /readyz until it reports ``ready`` (200) or not (503), with a line
    starting ``saying``; returns that report."""
    deadline = time.monotonic() + timeout
    while True:
        status, body = await asyncio.to_thread(fetch, f"http://{address}", "/readyz", 5.0)
        lines = body.splitlines()
        if (status == 200) == ready and any(line.startswith(saying) for line in lines):
            return body
        if time.monotonic() > deadline:
            raise AssertionError(f"/readyz of {address}: {status}, no {saying!r}:\n{body}")
        await asyncio.sleep(0.2)


async def metrics_addresses(cluster: Cluster, role: str) -> dict[str, str]:
    """instance id -> the ops HTTP address a service registered in ZooKeeper."""
    registry = ZooKeeperRegistry.from_settings(cluster.zookeeper.settings())
    await registry.start()
    try:
        await registry.watch(role)
        return {i.instance_id: i.metadata["metrics"] for i in registry.instances(role)}
    finally:
        await registry.stop()


@pytest.mark.parametrize("mode", list(OUTAGES))
async def test_mariadb_outage_sends_fail_clearly_and_resume_by_themselves(
    cluster: Cluster, mysql_url: str, redis_settings: RedisSettings, mode: Mode
) -> None:
    proxy = FaultProxy.for_url(mysql_url)
    await proxy.start()
    store_url = proxy.proxied(mysql_url)
    cluster.path.write_text(
        cluster_toml(cluster.ports, cluster.zookeeper, store_url, redis_settings)
    )
    code, out, err = await cluster.tool("start")
    assert code == 0, f"{out}\n{err}"
    try:
        await outage_under_load(cluster, proxy, mode)
    finally:
        await proxy.up()  # the services commit what they still hold as they stop
        await cluster.tool("stop")
        await proxy.stop()


async def outage_under_load(cluster: Cluster, proxy: FaultProxy, mode: Mode) -> None:
    """8 senders send steadily; MariaDB goes away for ``OUTAGES[mode]`` seconds."""
    outage = OUTAGES[mode]
    ports = [cluster.ports["gateway-1"], cluster.ports["gateway-2"]]
    gateway_http = f"127.0.0.1:{cluster.ports['gateway-1.http']}"
    message_ops = await metrics_addresses(cluster, "message")
    assert set(message_ops) == {"message-1", "message-2"}
    flow = Flow()
    receivers = [await register(ports[1]) for _ in range(PAIRS)]
    accounts = [await register(ports[k % 2]) for k in range(PAIRS)]
    senders = [
        CarefulSender([ports[k % 2], ports[(k + 1) % 2]], account, flow, REPLY_TIMEOUT)
        for k, account in enumerate(accounts)
    ]
    stop = asyncio.Event()
    deadline = time.monotonic() + 90

    async def steady(k: int) -> None:
        i = 0
        while not stop.is_set():
            await senders[k].send(receivers[k].uid, f"c{k}x{i}", f"m{k} {i}", deadline)
            i += 1
            await asyncio.sleep(0.02)

    flowing = asyncio.gather(*(steady(k) for k in range(PAIRS)))
    try:
        await asyncio.sleep(1.5)
        assert flow.acked and not flow.failures, flow.errors
        await proxy.down(mode)
        cut_at = time.monotonic()
        # Readiness says so: each message service's own check names the
        # store; the gateway's names the services that went NOT_SERVING.
        for address in message_ops.values():
            await wait_readyz(address, False, "store fail:", outage)
        await wait_readyz(gateway_http, False, "message fail:", outage)
        await asyncio.sleep(max(0.0, cut_at + outage - time.monotonic()))
        # Replies written just before the cut may still be on their way.
        acked_during = [t for t in flow.acked_at if t > cut_at + 1.0]
        await proxy.up()
        restored_at = time.monotonic()
        assert not acked_during, f"{len(acked_during)} sends acknowledged with the store down"
        failed = [t for t in flow.failures if t > cut_at]
        assert failed, "no send failed during the outage"
        assert min(failed) - cut_at < FIRST_FAILURE_WITHIN[mode], "sends hung instead of failing"

        while sum(t > restored_at for t in flow.acked_at) < 5 * PAIRS:
            assert time.monotonic() < restored_at + 30, "sends did not resume by themselves"
            await asyncio.sleep(0.05)
        stop.set()
        await flowing
    finally:
        stop.set()
        await proxy.up()  # after a failure above: let the senders finish
        await asyncio.gather(flowing, return_exceptions=True)
        for sender in senders:
            await sender.close()
    # A clear error every time: never silence, never another -ERR (CarefulSender
    # asserts every refusal is "-ERR service unavailable").
    assert set(flow.errors) == {"-ERR service unavailable"}, flow.errors
    for address in [*message_ops.values(), gateway_http]:
        await wait_readyz(address, ready=True)

    boxes = {r.uid: await inbox(ports[0], r) for r in receivers}
    assert_exactly_once(flow, boxes)
    first_failure = min(failed)
    first_success = min(t for t in flow.acked_at if t > restored_at)
    last_before = max(t for t in flow.acked_at if t <= cut_at + 1.0)
    print(
        f"disruption: mariadb outage ({mode}, {restored_at - cut_at:.1f}s): sends failed for "
        f"{first_success - first_failure:.2f}s, none acknowledged for "
        f"{first_success - last_before:.2f}s; first -ERR {first_failure - cut_at:.2f}s "
        f"after the cut, first +OK {first_success - restored_at:.2f}s after MariaDB "
        f"returned; {flow.errors['-ERR service unavailable']} refusals, "
        f"{len(flow.acked)} acknowledged, none lost"
    )


def _one(conn: Connection) -> int:
    return int(conn.execute(text("SELECT 1")).scalar_one())


@pytest.mark.parametrize("backend", ["mysql", "postgres"])
async def test_an_unreachable_store_fails_fast_logs_once_and_recovers(
    backend: str, request: pytest.FixtureRequest, caplog: pytest.LogCaptureFixture
) -> None:
    url = str(request.getfixturevalue(f"{backend}_url"))
    proxy = FaultProxy.for_url(url)
    await proxy.start()
    db = Database(proxy.proxied(url))
    try:
        await db.start()
        assert await db.write(_one) == 1 and await db.read(_one) == 1
        await proxy.down()
        with caplog.at_level("INFO", logger="mpim.store.database"):
            for _ in range(3):
                for call in (db.write, db.read):
                    started = time.monotonic()
                    with pytest.raises(StoreUnavailable) as caught:
                        await call(_one)
                    assert caught.value.code is ErrorCode.SERVICE_UNAVAILABLE
                    assert time.monotonic() - started < 2.0, "a refused connect must fail fast"
            with pytest.raises(StoreUnavailable, match=r"^store unreachable: [^\n]+$"):
                await db.ping()  # one line: what /readyz shows
            await proxy.up()
            assert await db.write(_one) == 1 and await db.read(_one) == 1
        messages = [r.getMessage() for r in caplog.records]
        assert sum(m.startswith("store unreachable") for m in messages) == 1, messages
        assert sum(m.startswith("store reachable again") for m in messages) == 1, messages
    finally:
        await proxy.up()
        await db.stop()
        await proxy.stop()


@pytest.mark.parametrize("server", ["mysql_url", "postgres_url"])
async def test_a_frozen_server_fails_waiting_statements_and_recovers(
    request: pytest.FixtureRequest, server: str
) -> None:
    """Open connections go silent (the server stopped, packets dropped): every
    read and write fails within the server timeout instead of holding a
    store thread, and service resumes once the server answers again.
    (MySQL's driver has a read timeout; PostgreSQL's gets one from pg_answer.)"""
    url = str(request.getfixturevalue(server))
    proxy = FaultProxy.for_url(url)
    await proxy.start()
    timeout = 2.0
    db = Database(proxy.proxied(url), server_timeout_seconds=timeout)
    try:
        await db.start()
        assert await db.write(_one) == 1 and await db.read(_one) == 1
        await proxy.down("freeze")
        for call in (db.write, db.read):
            started = time.monotonic()
            with pytest.raises(StoreUnavailable):
                await call(_one)
            # A pooled connection's ping times out, then the reconnect's
            # greeting does (MySQL: the read timeout; PostgreSQL: the connect
            # timeout, 5 s): not forever.
            reconnect = timeout if server == "mysql_url" else 5.0
            assert time.monotonic() - started < timeout + reconnect + 3.0
        await proxy.up()
        assert await db.write(_one) == 1 and await db.read(_one) == 1
    finally:
        await proxy.up()
        await db.stop()
        await proxy.stop()


async def test_a_schema_upgrade_may_take_longer_than_the_server_timeout(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Upgrading a large database, or waiting for another process's upgrade,
    is slow but not a frozen server: start-up must not give up on it."""
    from mpim.store import database as database_module

    url = str(request.getfixturevalue("mysql_url"))
    real_migrate = database_module.migrate

    def slow_migrate(conn: Connection) -> int:
        conn.execute(text("SELECT SLEEP(2)"))
        return real_migrate(conn)

    monkeypatch.setattr(database_module, "migrate", slow_migrate)
    db = Database(url, server_timeout_seconds=1.0)
    try:
        await db.start()
        assert await db.write(_one) == 1
    finally:
        await db.stop()
