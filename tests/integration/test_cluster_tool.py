"""``mpim cluster start|status|stop`` running a real cluster: real ZooKeeper, Redis, MariaDB.

Each test gets free ports, its own ZooKeeper chroot, Redis key prefix and
MariaDB database, so runs never collide with each other or with a cluster
started from deploy/cluster.toml on the same machine. The tool runs as a
child process exactly as a person would run it.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
from typing import TYPE_CHECKING

import pytest

from mpim.cluster import probe
from tests.support.lineclient import LineClient, unique_name
from tests.support.logparse import parse_kv
from tests.support.process_cluster import Cluster, instance_names

if TYPE_CHECKING:  # imported by pytest as a plugin below; importing it first defeats that
    pass

pytestmark = pytest.mark.timeout(120)


async def test_start_status_stop_run_a_whole_cluster(cluster: Cluster) -> None:
    names = instance_names()

    code, out, _ = await cluster.tool("status")
    assert code == 3, out  # nothing runs yet

    code, out, err = await cluster.tool("start")
    assert code == 0, f"start failed:\n{out}\n{err}"
    for name in names:
        assert f" {name}: started" in out, out
        assert (cluster.run_dir / f"{name}.pid").exists()
        assert (cluster.logs_dir / f"{name}.out").exists()

    code, out, _ = await cluster.tool("status")
    assert code == 0, out
    rows = cluster.rows(out)
    for name in names:
        role, _, pid, state, address, _http, registered, health = rows[name]
        assert state == "running"
        assert int(pid) > 0
        assert address == f"127.0.0.1:{cluster.ports[name]}"
        assert registered == "yes"
        assert health == ("pong" if role == "gateway" else "SERVING")
    assert rows["gateway-2"][5] == str(cluster.ports["gateway-2.http"])
    figures = cluster.figures(out)
    assert set(figures) == set(names), out
    assert figures["gateway-1"]["CONNS"] == "0"
    assert figures["message-1"]["CONNS"] == "-"  # services hold no client connections
    assert figures["message-1"]["COMMITS"] != "-"  # the worker-id claim at least

    # A second start finds everything running and changes nothing.
    code, out, _ = await cluster.tool("start")
    assert code == 0
    assert out.count("already running") == len(names)

    # The cluster serves clients: one account, seen through both gateways.
    one = await LineClient.connect("127.0.0.1", cluster.ports["gateway-1"])
    two = await LineClient.connect("127.0.0.1", cluster.ports["gateway-2"])
    try:
        account = await one.register(unique_name("cl"))
        assert (await two.login(account.username, account.password)).startswith("+OK")
    finally:
        await one.close()
        await two.close()

    code, out, _ = await cluster.tool("status")
    figures = cluster.figures(out)
    assert sum(int(figures[g]["LOGINS"]) for g in ("gateway-1", "gateway-2")) == 2, out
    assert figures["user-1"]["RPC CALLS"] not in ("-", "0"), out

    # A crashed process shows up as dead, and status says something is wrong.
    victim = int((cluster.run_dir / "message-2.pid").read_text())
    os.kill(victim, signal.SIGKILL)
    code, out, _ = await cluster.tool("status")
    assert code == 1, out
    assert cluster.rows(out)["message-2"][3] == "dead"

    code, out, err = await cluster.tool("stop")
    assert code == 0, f"stop failed:\n{out}\n{err}"
    assert "message-2: not running (stale pid file removed)" in out
    assert out.index("gateway-1: stopped") < out.index("message-1: stopped")
    assert out.index("message-1: stopped") < out.index("user-1: stopped")
    assert list(cluster.run_dir.glob("*.pid")) == []
    zk = cluster.zookeeper
    left = await asyncio.to_thread(probe.registrations, zk.hosts, zk.chroot)
    assert set(left) <= {("message", "message-2")}  # only the SIGKILLed one may linger

    code, out, _ = await cluster.tool("status")
    assert code == 3, out
    assert_structured_logs(cluster, names)


def assert_structured_logs(cluster: Cluster, names: list[str]) -> None:
    """Each process wrote its own log, and every line of it parses as one event."""
    for name in names:
        text = (cluster.logs_dir / f"{name}.log").read_text()
        lines = text.splitlines()
        assert lines, f"{name}.log is empty"
        events = [parse_kv(line) for line in lines]  # raises on a line that is not kv
        assert all(event["level"] in ("info", "warning", "error") for event in events)
        if name != "message-2":  # SIGKILLed above: it never logged its shutdown
            # Logged there, and not into the captured output as well.
            assert any(e["msg"].startswith(f"{name} stopped in ") for e in events), name
            assert "stopped in" not in (cluster.logs_dir / f"{name}.out").read_text()


async def test_a_failed_start_stops_what_it_launched(cluster: Cluster) -> None:
    # Something else holds message-2's port: the second wave fails.
    with socket.socket() as squatter:
        squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        squatter.bind(("127.0.0.1", cluster.ports["message-2"]))
        squatter.listen()
        code, out, err = await cluster.tool("start")
    assert code == 1, out
    assert "message message-2:" in err
    assert "last lines of" in err
    assert "message-2.out:" in err  # the start-up error went to the captured output
    assert "stopping the" in err
    assert "gateway-1" not in out  # the gateways never started
    assert list(cluster.run_dir.glob("*.pid")) == []
    code, out, _ = await cluster.tool("status")
    assert code == 3, out
