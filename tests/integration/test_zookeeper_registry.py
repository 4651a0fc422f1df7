"""ZooKeeperRegistry against a real ZooKeeper: registration, watches, crashes, outages.

Each test has its own chroot; several registries in one test stand for
separate processes (each has its own ZooKeeper session). A real child
process is used where only a real crash will do.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import signal
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
from kazoo.client import KazooClient

from mpim.discovery import Instance
from mpim.discovery.zookeeper import CONNECTED, LOST, SUSPENDED, ZooKeeperRegistry
from tests.support.zookeeper import ZooKeeperChroot

MakeRegistry = Callable[..., Awaitable[ZooKeeperRegistry]]
ROOT = Path(__file__).resolve().parents[2]
# The shortest session the server grants with tickTime=2000 (two ticks).
SHORT_SESSION = 4.0
# How long to wait for news that should come at once: generous, because a
# loaded CI machine is slow; the assertions on latency are separate.
WAIT = 15.0


def user(instance_id: str, port: int = 7001, **metadata: str) -> Instance:
    return Instance("user", instance_id, f"127.0.0.1:{port}", dict(metadata))


def ids(instances: list[Instance]) -> set[str]:
    return {i.instance_id for i in instances}


def has(*wanted: str) -> Callable[[list[Instance]], bool]:
    return lambda instances: ids(instances) == set(wanted)


async def connected(*registries: ZooKeeperRegistry, timeout: float = 30.0) -> None:
    for registry in registries:
        await registry.wait_for_state(CONNECTED, timeout=timeout)


async def suspended(*registries: ZooKeeperRegistry, timeout: float = 20.0) -> None:
    for registry in registries:
        await registry.wait_for_state(SUSPENDED, LOST, timeout=timeout)


@pytest.fixture
async def make_registry(zookeeper: ZooKeeperChroot) -> AsyncIterator[MakeRegistry]:
    """Start registries on this test's chroot; every one is stopped at teardown."""
    made: list[ZooKeeperRegistry] = []

    async def make(session_timeout: float = 10.0) -> ZooKeeperRegistry:
        registry = ZooKeeperRegistry(
            zookeeper.hosts, zookeeper.chroot, session_timeout=session_timeout
        )
        await registry.start()
        made.append(registry)
        return registry

    yield make
    for registry in made:
        await registry.stop()


def raw_client(zookeeper: ZooKeeperChroot) -> KazooClient:
    client = KazooClient(hosts=zookeeper.hosts)
    client.start(10)
    return client


async def test_registration_is_an_ephemeral_json_node_under_the_chroot(
    zookeeper: ZooKeeperChroot, make_registry: MakeRegistry
) -> None:
    registry = await make_registry()
    await registry.register(user("u1", gateway="gw-1"))

    client = await asyncio.to_thread(raw_client, zookeeper)
    try:
        path = f"{zookeeper.chroot}/services/user/u1"
        data, stat = await asyncio.to_thread(client.get, path)
    finally:
        await asyncio.to_thread(client.stop)
        await asyncio.to_thread(client.close)
    assert json.loads(data) == {"address": "127.0.0.1:7001", "metadata": {"gateway": "gw-1"}}
    assert stat.ephemeralOwner != 0


async def test_register_and_deregister_update_the_view(make_registry: MakeRegistry) -> None:
    registry = await make_registry()
    await registry.watch("user")
    assert registry.instances("user") == []

    await registry.register(user("u1", weight="2"))
    [seen] = await registry.wait_for("user", has("u1"), timeout=WAIT)
    assert seen == user("u1", weight="2")
    assert (seen.host, seen.port) == ("127.0.0.1", 7001)

    await registry.deregister(user("u1"))
    await registry.wait_for("user", has(), timeout=WAIT)


async def test_another_process_sees_new_instances_without_restart(
    make_registry: MakeRegistry,
) -> None:
    serving, caller = await make_registry(), await make_registry()
    await caller.watch("user")
    changes: list[tuple[str, set[str]]] = []
    caller.add_listener(lambda service, instances: changes.append((service, ids(instances))))

    await serving.register(user("u1", 7001))
    await caller.wait_for("user", has("u1"), timeout=WAIT)
    await serving.register(user("u2", 7002))
    await caller.wait_for("user", has("u1", "u2"), timeout=WAIT)

    assert changes[-1] == ("user", {"u1", "u2"})
    assert caller.instances("other") == []  # unwatched services stay empty


async def test_a_re_registration_with_new_metadata_reaches_watchers(
    make_registry: MakeRegistry,
) -> None:
    serving, caller = await make_registry(), await make_registry()
    await caller.watch("user")
    await serving.register(user("u1", version="1"))
    await caller.wait_for("user", has("u1"), timeout=WAIT)

    await serving.register(user("u1", version="2"))
    await caller.wait_for(
        "user", lambda found: [i.metadata for i in found] == [{"version": "2"}], timeout=WAIT
    )


async def test_a_clean_stop_removes_the_instance_from_peers_at_once(
    make_registry: MakeRegistry,
) -> None:
    session_timeout = 10.0
    serving = await make_registry(session_timeout)
    caller = await make_registry(session_timeout)
    await caller.watch("user")
    await serving.register(user("u1"))
    await caller.wait_for("user", has("u1"), timeout=WAIT)

    started = time.monotonic()
    await serving.stop()
    await caller.wait_for("user", has(), timeout=session_timeout / 2)
    elapsed = time.monotonic() - started

    assert elapsed < 1.0, f"peer saw the clean stop after {elapsed:.3f}s"


CHILD = """
import asyncio, logging, sys
from mpim.discovery import Instance
from mpim.discovery.zookeeper import ZooKeeperRegistry

async def main() -> None:
    logging.basicConfig(level=logging.INFO, stream=sys.stderr)
    hosts, chroot, timeout, instance_id = sys.argv[1:5]
    registry = ZooKeeperRegistry(hosts, chroot, session_timeout=float(timeout))
    await registry.start()
    await registry.register(Instance("user", instance_id, "127.0.0.1:7009"))
    print("registered", flush=True)
    await asyncio.Event().wait()

asyncio.run(main())
"""


@contextlib.asynccontextmanager
async def registering_process(
    zookeeper: ZooKeeperChroot, instance_id: str, session_timeout: float
) -> AsyncIterator[asyncio.subprocess.Process]:
    """Another process that registers ``user/<instance_id>``; killed on exit."""
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        CHILD,
        zookeeper.hosts,
        zookeeper.chroot,
        str(session_timeout),
        instance_id,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        cwd=ROOT,
    )
    try:
        assert child.stdout is not None
        line = await asyncio.wait_for(child.stdout.readline(), 20)
        assert line == b"registered\n"
        yield child
    finally:
        if child.returncode is None:
            child.send_signal(signal.SIGCONT)
            child.kill()
        await child.wait()


async def test_a_killed_process_disappears_after_the_session_timeout(
    zookeeper: ZooKeeperChroot, make_registry: MakeRegistry
) -> None:
    caller = await make_registry()
    await caller.watch("user")
    async with registering_process(zookeeper, "doomed", SHORT_SESSION) as child:
        await caller.wait_for("user", has("doomed"), timeout=WAIT)
        child.kill()
        killed = time.monotonic()
        await child.wait()
        await caller.wait_for("user", has(), timeout=SHORT_SESSION * 3 + 4)
        elapsed = time.monotonic() - killed

    # Nobody deleted it: only the session's expiry can have removed it.
    assert SHORT_SESSION * 0.5 < elapsed < SHORT_SESSION * 3, f"{elapsed:.2f}s"


async def test_a_process_whose_session_expired_while_frozen_registers_again(
    zookeeper: ZooKeeperChroot, make_registry: MakeRegistry
) -> None:
    caller = await make_registry()
    await caller.watch("user")
    async with registering_process(zookeeper, "frozen", SHORT_SESSION) as child:
        await caller.wait_for("user", has("frozen"), timeout=WAIT)
        # A long GC pause or a frozen VM: the server expires the session.
        child.send_signal(signal.SIGSTOP)
        await caller.wait_for("user", has(), timeout=SHORT_SESSION * 3 + 4)
        child.send_signal(signal.SIGCONT)
        # The child learns of the expiry (LOST), opens a new session, re-registers.
        await caller.wait_for("user", has("frozen"), timeout=WAIT)
        child.terminate()
        assert child.stderr is not None
        log = (await child.stderr.read()).decode()
    assert "session expired" in log, log


async def test_the_view_survives_a_zookeeper_outage_and_state_is_logged_once(
    zookeeper: ZooKeeperChroot, make_registry: MakeRegistry, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="mpim.discovery.zookeeper")
    serving, caller = await make_registry(), await make_registry()
    await caller.watch("user")
    await serving.register(user("u1"))
    await caller.wait_for("user", has("u1"), timeout=WAIT)

    await zookeeper.server.stop_async()
    try:
        await caller.wait_for_state(SUSPENDED, timeout=WAIT)
        assert ids(caller.instances("user")) == {"u1"}
        # Still there after kazoo's reconnect attempts have failed a few times.
        await asyncio.sleep(1.0)
        assert ids(caller.instances("user")) == {"u1"}
    finally:
        await zookeeper.server.start_async()
    await connected(caller, serving)
    assert ids(caller.instances("user")) == {"u1"}

    ours = [r for r in caplog.records if r.name == "mpim.discovery.zookeeper"]
    lost = [r for r in ours if "connection lost" in r.getMessage()]
    assert len(lost) == 2, [r.getMessage() for r in lost]  # once per registry


async def test_after_a_zookeeper_restart_watches_still_see_changes(
    zookeeper: ZooKeeperChroot, make_registry: MakeRegistry
) -> None:
    serving, caller = await make_registry(), await make_registry()
    await caller.watch("user")
    await serving.register(user("u1"))
    await caller.wait_for("user", has("u1"), timeout=WAIT)

    await zookeeper.server.stop_async()
    await suspended(caller, serving)
    await zookeeper.server.start_async()
    await connected(caller, serving)

    await serving.register(user("u2", 7002))
    await caller.wait_for("user", has("u1", "u2"), timeout=WAIT)
    await serving.deregister(user("u1"))
    await caller.wait_for("user", has("u2"), timeout=WAIT)


async def test_after_zookeeper_is_replaced_by_an_empty_one_instances_re_register(
    zookeeper: ZooKeeperChroot, make_registry: MakeRegistry, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="mpim.discovery.zookeeper")
    serving = await make_registry(SHORT_SESSION)
    caller = await make_registry(SHORT_SESSION)
    await caller.watch("user")
    await serving.register(user("u1"))
    await caller.wait_for("user", has("u1"), timeout=WAIT)

    # A wiped server (a container without a volume) knows no sessions and
    # refuses clients that have seen newer data; kazoo alone would retry
    # that forever. After a session timeout the registries start afresh.
    await zookeeper.server.stop_async()
    await suspended(caller, serving)
    zookeeper.server.wipe()
    await zookeeper.server.start_async()
    await connected(caller, serving)
    assert any("starting a new one" in r.getMessage() for r in caplog.records)

    # A process that starts now reads ZooKeeper itself, not a kept view.
    newcomer = await make_registry()
    await newcomer.watch("user")
    await newcomer.wait_for("user", has("u1"), timeout=WAIT)
    await caller.wait_for("user", has("u1"), timeout=WAIT)
    # The caller's watches were re-armed on its new session.
    await serving.register(user("u2", 7002))
    await caller.wait_for("user", has("u1", "u2"), timeout=WAIT)
