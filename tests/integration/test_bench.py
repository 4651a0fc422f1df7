"""``mpim bench`` against real servers: MPIM in-process and the relay baseline.

The load runs in real worker processes (``run_scenario`` in a thread, so the
in-process server keeps serving on this test's event loop). Counts must be
exact: every acknowledged message delivered once, in order, nothing else.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from mpim.bench import relay as relay_module
from mpim.bench.addr import Target
from mpim.bench.payload import parse_text
from mpim.bench.relay import RelayServer
from mpim.bench.runner import BenchResult, run_scenario
from mpim.bench.server_metrics import scrape_all
from mpim.bench.servers import mpim_server
from mpim.bench.spec import C2CSpec, CommonSpec, GroupSpec, IdleSpec, LoginSpec, ScenarioSpec
from mpim.protocol.messages import MessageLine
from tests.conftest import RunningServer
from tests.support.lineclient import LineClient


@pytest.fixture
async def relay() -> AsyncIterator[RelayServer]:
    server = RelayServer()
    await server.start()
    yield server
    await server.stop()


def _common(port: int, **overrides: Any) -> CommonSpec:
    values: dict[str, Any] = {
        "target": Target("127.0.0.1", port),
        "workers": 1,
        "warmup": 0.0,
        "duration": 1.0,
        "drain_timeout": 5.0,
        "max_seconds": 50.0,
        "setup_concurrency": 8,
        "progress": False,
    }
    values.update(overrides)
    return CommonSpec(**values)


async def _run(spec: ScenarioSpec) -> BenchResult:
    result = await asyncio.to_thread(run_scenario, spec)
    assert result.aborted is None, result.aborted
    return result


def _assert_exact(result: BenchResult, acked: int, deliveries: int) -> None:
    counts = result.summary[0].counts
    assert counts["sent"] == counts["acked"] == acked
    assert counts["delivered"] == counts["expected"] == deliveries
    for name in ("late", "lost", "duplicated", "reordered", "errors", "disconnects"):
        assert counts[name] == 0, f"{name}: {counts}"
    assert result.problems() == []


Port = Callable[[], int]


@pytest.fixture(params=["mpim", "relay"])
def port(request: pytest.FixtureRequest) -> Port:
    """Each test runs against the in-process MPIM and against the relay."""
    name = "server" if request.param == "mpim" else "relay"
    target: RunningServer | RelayServer = request.getfixturevalue(name)
    return lambda: target.port


async def test_c2c_closed_loop_counts_are_exact(port: Port) -> None:
    spec = C2CSpec(_common(port(), messages=300), pairs=3, window=4)
    result = await _run(spec)
    _assert_exact(result, 300, 300)
    summary = result.summary[0]
    assert summary.latency_ms["e2e"]["count"] == 300
    assert summary.latency_ms["ack"]["p99"] > 0
    assert summary.metrics["delivered_per_s"]


async def test_c2c_two_workers_and_two_rounds_merge_exactly(port: Port) -> None:
    spec = C2CSpec(_common(port(), workers=2, messages=200, repeat=2), pairs=4, window=2)
    result = await _run(spec)
    assert len(result.rounds) == 2
    _assert_exact(result, 400, 400)


async def test_each_round_says_what_the_store_did_in_it(server: RunningServer) -> None:
    """With the server's /metrics, a round carries its own commits (read
    before and after it), and the slow ones among them."""
    urls = server.gateway_ops_urls()
    spec = C2CSpec(_common(server.port, messages=200, repeat=2), pairs=2, window=4)
    result = await asyncio.to_thread(run_scenario, spec, lambda: scrape_all(urls))
    assert result.aborted is None, result.aborted
    assert len(result.rounds) == 2
    for r in result.rounds:
        # 200 sends a round, a few per commit: some commits, far fewer than sends.
        assert 1 <= (r.metrics["store_commits"] or 0) <= 200
        slow, blocked = r.metrics["store_slow_commits"], r.metrics["store_blocked_commits"]
        assert slow is not None and blocked is not None
        assert 0 <= blocked <= slow <= (r.metrics["store_commits"] or 0)


async def test_c2c_with_cids_counts_are_exact(port: Port) -> None:
    result = await _run(C2CSpec(_common(port(), messages=100, cids=True), pairs=2, window=4))
    _assert_exact(result, 100, 100)


async def test_c2c_with_cids_stores_each_send_under_its_cid(server: RunningServer) -> None:
    common = _common(server.port, messages=30, cids=True)
    result = await _run(C2CSpec(common, pairs=1, window=4))
    _assert_exact(result, 30, 30)
    sender = await LineClient.connect(server.host, server.port)
    receiver = await LineClient.connect(server.host, server.port)
    try:
        assert (await sender.login(common.username("s", 0), common.password)).startswith("+OK")
        reply = await receiver.login(common.username("r", 0), common.password)
        peer = int(dict(f.split("=", 1) for f in reply[4:].split())["uid"])
        lines, done = await sender.cmd_multi(f"HISTORY {peer} 1")
        assert done.startswith("+OK"), done
        newest = MessageLine.parse(lines[0])
        stamp = parse_text(newest.text.encode())
        assert stamp is not None
        _, round_no, seq, _ = stamp
        # A retry of the bench's send, by its cid, is the stored message.
        again = await sender.cmd(f"@cid=r{common.run_id}-{round_no}-{seq} SEND {peer} retried")
        assert again == f"+OK msg_id={newest.id}"
    finally:
        await sender.close()
        await receiver.close()


async def test_c2c_open_loop_sends_at_the_offered_rate(port: Port) -> None:
    spec = C2CSpec(_common(port(), duration=1.0), pairs=2, rates=(400.0,))
    result = await _run(spec)
    counts = result.summary[0].counts
    assert 300 <= counts["acked"] <= 500
    _assert_exact(result, counts["acked"], counts["acked"])


async def test_group_fan_out_reaches_every_other_member(port: Port) -> None:
    spec = GroupSpec(_common(port(), messages=40), members=5, senders=2, window=2)
    result = await _run(spec)
    _assert_exact(result, 40, 40 * 4)


async def test_idle_connections_are_held_and_weighed(port: Port) -> None:
    spec = IdleSpec(_common(port()), connections=30, users=3, hold=0.2)
    result = await _run(spec)
    summary = result.summary[0]
    assert summary.counts["connected"] == summary.counts["ping_ok"] == 30
    assert summary.counts["errors"] == 0
    assert summary.metrics["rss_bytes_per_connection"] is not None  # in-process: our own RSS


async def test_login_and_auth_are_counted(port: Port) -> None:
    spec = LoginSpec(_common(port(), duration=0.5), users=2, concurrency=2)
    result = await _run(spec)
    summary = result.summary[0]
    assert summary.counts["login_ok"] > 0 and summary.counts["auth_ok"] > 0
    assert summary.counts["errors"] == 0


async def test_two_gateways_carry_every_pair_across(relay: RelayServer) -> None:
    """A second relay sharing the first one's state stands in for a second gateway."""
    second = RelayServer(state=relay.state)
    await second.start()
    try:
        more = (Target("127.0.0.1", second.port),)
        spec = C2CSpec(_common(relay.port, messages=100, more_targets=more), pairs=2, window=2)
        result = await _run(spec)
        _assert_exact(result, 100, 100)
        group = GroupSpec(_common(relay.port, messages=20, more_targets=more), members=4, senders=2)
        _assert_exact(await _run(group), 20, 20 * 3)
    finally:
        await second.stop()


async def test_a_lost_push_is_reported_as_lost(
    relay: RelayServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A relay that drops every 10th push: no inbox, so SYNC cannot recover them."""
    original = relay_module.RelayConnection.queue
    pushes = 0

    def lossy(self: relay_module.RelayConnection, data: bytes) -> None:
        nonlocal pushes
        if data.startswith(b"MSG "):
            pushes += 1
            if pushes % 10 == 0:
                return
        original(self, data)

    monkeypatch.setattr(relay_module.RelayConnection, "queue", lossy)
    result = await _run(C2CSpec(_common(relay.port, messages=100), pairs=2, window=2))
    counts = result.summary[0].counts
    assert counts["acked"] == 100
    assert counts["lost"] == 10
    assert counts["delivered"] == 90
    assert any("lost=10" in p for p in result.problems())


async def test_duplicated_and_reordered_pushes_are_reported(
    relay: RelayServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every 7th push is written twice; every 5th is held back behind the next one.

    69 messages, so the last held push (the 65th) is released by the 66th.
    """
    original = relay_module.RelayConnection.queue
    pushes = 0
    held: list[bytes] = []

    def faulty(self: relay_module.RelayConnection, data: bytes) -> None:
        nonlocal pushes
        if not data.startswith(b"MSG "):
            original(self, data)
            return
        pushes += 1
        if pushes % 5 == 0:
            held.append(data)
            return
        original(self, data)
        if pushes % 7 == 0:
            original(self, data)
        while held:
            original(self, held.pop())

    monkeypatch.setattr(relay_module.RelayConnection, "queue", faulty)
    result = await _run(C2CSpec(_common(relay.port, messages=69), pairs=1, window=1))
    counts = result.summary[0].counts
    assert counts["duplicated"] >= 5
    assert counts["reordered"] >= 5
    assert counts["lost"] == 0


def test_the_suites_embedded_server_names_its_metrics_url(tmp_path: Path) -> None:
    """So the suite can read each round's commits from it."""
    server = mpim_server(tmp_path).start()
    try:
        scraped = scrape_all(server.metrics_urls)
        assert scraped is not None
        assert any(s.name == "mpim_store_commit_blocked_seconds_count" for s in scraped.samples)
    finally:
        server.stop()
