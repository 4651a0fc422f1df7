"""What only the distributed topology has to prove: several gateways, Redis and
ZooKeeper outages. Every role runs as under ``mpim serve`` (in this event loop),
on the real ZooKeeper, Redis and MariaDB."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable

import pytest

from mpim.discovery.zookeeper import ZooKeeperRegistry
from mpim.metrics.scrape import Scrape, fetch
from mpim.protocol.messages import MessageLine
from tests.conftest import ServerFactory
from tests.support.cluster import InProcessCluster
from tests.support.lineclient import LineClient, unique_name
from tests.support.redis_server import ThrowawayRedis
from tests.support.zookeeper import ZooKeeperChroot

pytestmark = pytest.mark.parametrize("topology", ["cluster"], indirect=True)


async def eventually(check: Callable[[], Awaitable[bool]], timeout: float = 20.0) -> float:
    """Poll ``check`` until true; returns the seconds it took."""
    started = time.monotonic()
    while not await check():
        if time.monotonic() - started > timeout:
            raise AssertionError(f"condition not met within {timeout}s")
        await asyncio.sleep(0.1)
    return time.monotonic() - started


async def sync_texts(client: LineClient, after: int = 0) -> list[str]:
    lines, done = await client.cmd_multi(f"SYNC {after}")
    assert done.startswith("+OK sync_done"), done
    return [MessageLine.parse(line).text for line in lines]


async def test_users_on_different_gateways_chat_and_see_presence(server: InProcessCluster) -> None:
    alice = await server.client(gateway=0)
    bob = await server.client(gateway=1)
    a = await alice.register()
    b = await bob.register()
    assert await alice.cmd(f"STATUS {b.uid}") == f"+OK uid={b.uid} online=1"
    assert (await alice.cmd(f"SEND {b.uid} over the wire")).startswith("+OK msg_id=")
    assert MessageLine.parse(await bob.read_line()).text == "over the wire"
    assert (await bob.cmd(f"SEND {a.uid} and back")).startswith("+OK msg_id=")
    assert MessageLine.parse(await alice.read_line()).text == "and back"
    await bob.cmd("QUIT")

    async def bob_offline() -> bool:
        return await alice.cmd(f"STATUS {b.uid}") == f"+OK uid={b.uid} online=0"

    await eventually(bob_offline)


async def test_a_user_on_both_gateways_gets_every_push_on_both(server: InProcessCluster) -> None:
    sender = await server.user()
    phone = await server.client(gateway=0)
    bob = await phone.register()
    laptop = await server.client(gateway=1)
    assert (await laptop.cmd(f"AUTH {bob.token}")).startswith("+OK uid=")
    await sender.send_raw(b"".join(f"SEND {bob.uid} n{i}\n".encode() for i in range(50)))
    for _ in range(50):
        assert (await sender.read_line()).startswith("+OK msg_id=")
    for device in (phone, laptop):
        got = [MessageLine.parse(await device.read_line()) for _ in range(50)]
        assert [m.text for m in got] == [f"n{i}" for i in range(50)]
        assert [m.seq for m in got] == list(range(1, 51))


async def test_a_pull_on_another_gateway_never_returns_what_one_gateway_pushed(
    server: InProcessCluster,
) -> None:
    # Gateway 0 writes the pushes at once and stores their marks shortly
    # after; the laptop's PULL on gateway 1, sent the moment the phone has
    # them, must wait for those marks rather than return the messages again.
    sender = await server.user()
    phone = await server.client(gateway=0)
    bob = await phone.register()
    for round_no in range(3):
        laptop = await server.client(gateway=1)  # connected, not logged in yet
        await sender.send_raw(
            b"".join(f"SEND {bob.uid} r{round_no}m{i}\n".encode() for i in range(20))
        )
        for _ in range(20):
            assert (await sender.read_line()).startswith("+OK msg_id=")
        texts = [MessageLine.parse(await phone.read_line()).text for _ in range(20)]
        assert texts == [f"r{round_no}m{i}" for i in range(20)]
        await laptop.send_raw(f"AUTH {bob.token}\nPULL\n".encode())
        assert (await laptop.read_line()).startswith("+OK uid=")
        lines, done = await laptop.read_multi()
        assert (lines, done) == ([], "+OK pull_done"), "PULL returned pushed messages"
        await laptop.cmd("QUIT")
    _, page = await asyncio.to_thread(fetch, server.gateway_ops_urls()[1])
    barriers = Scrape.parse(page)
    assert barriers.value("mpim_gateway_pull_barriers_total", outcome="complete") >= 3
    assert barriers.value("mpim_gateway_pull_barriers_total", outcome="unanswered") == 0
    # Not pushed anywhere (bob offline): PULL on either gateway returns them once.
    await phone.cmd("QUIT")
    assert (await sender.cmd(f"SEND {bob.uid} while away")).startswith("+OK msg_id=")
    laptop = await server.client(gateway=1)
    assert (await laptop.cmd(f"AUTH {bob.token}")).startswith("+OK uid=")
    lines, done = await laptop.cmd_multi("PULL")
    assert ([MessageLine.parse(line).text for line in lines], done) == (
        ["while away"],
        "+OK pull_done",
    )
    assert await laptop.cmd_multi("PULL") == ([], "+OK pull_done")


async def test_two_message_services_keep_seq_gap_free_under_concurrent_senders(
    server: InProcessCluster,
) -> None:
    bob_conn = await server.user()
    assert bob_conn.account is not None
    bob = bob_conn.account
    await bob_conn.close()  # offline: everything goes to the inbox
    senders = [await server.user() for _ in range(6)]

    async def flood(client: LineClient, tag: int) -> None:
        await client.send_raw(b"".join(f"SEND {bob.uid} s{tag}-{i}\n".encode() for i in range(40)))
        for _ in range(40):
            assert (await client.read_line()).startswith("+OK msg_id=")

    await asyncio.gather(*(flood(c, k) for k, c in enumerate(senders)))
    reader = await server.client()
    assert (await reader.cmd(f"AUTH {bob.token}")).startswith("+OK uid=")
    lines, done = await reader.cmd_multi("SYNC 0")
    parsed = [MessageLine.parse(line) for line in lines]
    assert [m.seq for m in parsed] == list(range(1, 241)), done
    for tag in range(6):  # each sender's messages in the order sent
        mine = [m.text for m in parsed if m.text.startswith(f"s{tag}-")]
        assert mine == [f"s{tag}-{i}" for i in range(40)]


@pytest.mark.faults
async def test_redis_outage_keeps_serving_and_recovers(
    server_factory: ServerFactory, throwaway_redis: ThrowawayRedis
) -> None:
    cluster: InProcessCluster = await server_factory(redis={"url": throwaway_redis.url})
    alice = await cluster.client(gateway=0)
    a = await alice.register()
    bob = await cluster.client(gateway=1)
    b = await bob.register()
    assert (await alice.cmd(f"SEND {b.uid} before")).startswith("+OK")
    assert MessageLine.parse(await bob.read_line()).text == "before"

    await throwaway_redis.kill()
    outage_started = time.monotonic()
    # Logins, sends and reads still work: the store is the truth.
    carol = await cluster.client()
    assert (await carol.login(a.username, a.password)).startswith(f"+OK uid={a.uid}")
    for i in range(3):
        assert (await alice.cmd(f"SEND {b.uid} during {i}")).startswith("+OK msg_id=")
    assert await alice.cmd(f"ADDFRIEND {b.uid}") == "+OK friend added"
    assert await bob.cmd("GETFRIENDS") == f"+OK friends: {a.uid}"
    # Pushes may be lost while the bus is down; SYNC has everything.
    texts = await sync_texts(await _logged_in(cluster, b.token))
    assert texts == ["before", "during 0", "during 1", "during 2"]

    await throwaway_redis.start()

    pushed_to_bob: list[str] = []

    # First, with nothing new sent: the pushes lost in the outage arrive by
    # themselves, because the gateway PULLs its online users' undelivered
    # messages once its subscription is back.
    async def caught_up() -> bool:
        with contextlib.suppress(TimeoutError):
            while True:
                pushed_to_bob.append(MessageLine.parse(await bob.read_line(timeout=0.2)).text)
        return all(f"during {i}" in pushed_to_bob for i in range(3))

    await eventually(caught_up, timeout=20)
    assert pushed_to_bob == [f"during {i}" for i in range(3)]

    async def pushes_again() -> bool:
        reply = await alice.cmd(f"@cid=probe{time.monotonic_ns()} SEND {b.uid} after")
        assert reply.startswith("+OK msg_id="), reply
        try:
            while True:
                line = await bob.read_line(timeout=0.5)
                pushed_to_bob.append(MessageLine.parse(line).text)
                if line.endswith("text=after"):
                    return True
        except TimeoutError:
            return False

    waited = await eventually(pushes_again, timeout=30)
    print(
        f"disruption: redis outage: pushes resumed {waited:.1f}s after the catch-up "
        f"({time.monotonic() - outage_started:.1f}s after Redis died)"
    )
    # Nothing twice: the catch-up and the per-user push order agree.
    assert [t for t in pushed_to_bob if t.startswith("during")] == [f"during {i}" for i in range(3)]


async def _logged_in(cluster: InProcessCluster, token: str) -> LineClient:
    client = await cluster.client()
    assert (await client.cmd(f"AUTH {token}")).startswith("+OK uid=")
    return client


@pytest.mark.faults
async def test_zookeeper_restart_services_reregister_and_chat_continues(
    server: InProcessCluster, zookeeper: ZooKeeperChroot
) -> None:
    alice = await server.client(gateway=0)
    bob = await server.client(gateway=1)
    await alice.register()
    b = await bob.register()
    # A restart that loses ZooKeeper's data: every registration must come back.
    restarting = time.monotonic()
    await zookeeper.server.restart(wipe=True)
    restarted = time.monotonic()
    registry = server.gateways[0].registry
    # A fresh session reads what ZooKeeper really holds (the nodes keep their
    # last view through the outage).
    observer = ZooKeeperRegistry.from_settings(zookeeper.settings())
    await observer.start()
    services = ("user", "presence", "group", "message")
    expected = {"user": 1, "presence": 1, "group": 1, "message": 2}

    async def all_registered() -> bool:
        for view in (registry, observer):
            if {s: len(view.instances(s)) for s in services} != expected:
                return False
        return True

    try:
        for service in services:
            await observer.watch(service)
        await eventually(all_registered, timeout=40)
    finally:
        await observer.stop()
    print(
        f"disruption: zookeeper restart (wiped, {restarted - restarting:.1f}s): every service "
        f"registered again {time.monotonic() - restarted:.1f}s after it answered"
    )
    assert (await alice.cmd(f"SEND {b.uid} still here")).startswith("+OK msg_id=")
    assert MessageLine.parse(await bob.read_line()).text == "still here"


async def test_websocket_clients_on_a_gateway_role_chat_with_tcp_clients(
    server: InProcessCluster,
) -> None:
    from tests.integration.test_websocket import WsClient

    registry = server.gateways[1].registry
    await registry.watch("gateway")  # gateways register their HTTP port too

    http = registry.instances("gateway")
    ports = {i.instance_id: int(i.metadata["http"].rsplit(":", 1)[1]) for i in http}
    assert set(ports) == {"gateway-1", "gateway-2"}
    tcp = await server.client(gateway=0)
    a = await tcp.register()
    ws = await WsClient.connect(ports["gateway-2"])
    try:
        assert ws.greeting.startswith("+OK welcome")
        reply = await ws.cmd(f"REGISTER {unique_name('ws')} secret1")
        assert reply.startswith("+OK uid=")
        ws_uid = int(reply.split()[1].split("=")[1])
        assert (await tcp.cmd(f"SEND {ws_uid} from tcp")).startswith("+OK msg_id=")
        assert MessageLine.parse(await ws.read_line()).text == "from tcp"
        assert (await ws.cmd(f"SEND {a.uid} from the browser")).startswith("+OK msg_id=")
        assert MessageLine.parse(await tcp.read_line()).text == "from the browser"
    finally:
        await ws.ws.close()
