"""``mpim cluster start|status|stop`` running a real cluster: real ZooKeeper, Redis, MariaDB.

Each test gets free ports, its own ZooKeeper chroot, Redis key prefix and
MariaDB database, so runs never collide with each other or with a cluster
started from deploy/cluster.toml on the same machine. The tool runs as a
child process exactly as a person would run it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from mpim.cluster import probe
from mpim.config import RedisSettings
from tests.support.lineclient import LineClient, unique_name

if TYPE_CHECKING:  # imported by pytest as a plugin below; importing it first defeats that
    from tests.support.zookeeper import ZooKeeperChroot

pytest_plugins = ["tests.support.zookeeper", "tests.support.redis", "tests.support.databases"]
pytestmark = pytest.mark.timeout(120)

ROLES = ("user", "presence", "group", "message", "message", "gateway", "gateway")


@dataclass
class Cluster:
    path: Path
    ports: dict[str, int]
    zookeeper: ZooKeeperChroot

    @property
    def run_dir(self) -> Path:
        return self.path.parent / "run"

    @property
    def logs_dir(self) -> Path:
        return self.path.parent / "logs"

    async def tool(self, action: str, timeout: float = 90.0) -> tuple[int, str, str]:
        """Run ``mpim cluster <action>``; return (exit code, stdout, stderr)."""
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "mpim", "cluster", action, "--config", str(self.path),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        out, err = await asyncio.wait_for(proc.communicate(), timeout)
        assert proc.returncode is not None
        return proc.returncode, out.decode(), err.decode()

    def rows(self, status_output: str) -> dict[str, list[str]]:
        """instance id → the cells of its status line."""
        lines = status_output.splitlines()
        return {line.split()[1]: line.split() for line in lines[1:] if line.split()[1:2]}


def free_ports(count: int) -> list[int]:
    """Distinct free ports (all held at once while choosing, so none repeats)."""
    socks = [socket.socket() for _ in range(count)]
    try:
        for sock in socks:
            sock.bind(("127.0.0.1", 0))
        return [int(sock.getsockname()[1]) for sock in socks]
    finally:
        for sock in socks:
            sock.close()


def cluster_toml(
    ports: dict[str, int], zookeeper: ZooKeeperChroot, store_url: str, redis: RedisSettings
) -> str:
    processes = []
    counts: dict[str, int] = {}
    for role in ROLES:
        counts[role] = counts.get(role, 0) + 1
        instance = f"{role}-{counts[role]}"
        http = f"http_port = {ports[instance + '.http']}\n" if role == "gateway" else ""
        processes.append(
            f'[[cluster.process]]\nrole = "{role}"\ninstance_id = "{instance}"\n'
            f"port = {ports[instance]}\n{http}"
        )
    return f"""
log_level = "INFO"

[store]
url = "{store_url}"

[redis]
url = "{redis.url}"
key_prefix = "{redis.key_prefix}"

[zookeeper]
hosts = "{zookeeper.hosts}"
chroot = "{zookeeper.chroot}"
session_timeout_seconds = 4.0

[security]
argon2_memory_kib = 256
argon2_time_cost = 1

[cluster]
start_timeout_seconds = 45.0
stop_timeout_seconds = 10.0

{chr(10).join(processes)}
"""


def instance_names() -> list[str]:
    counts: dict[str, int] = {}
    names = []
    for role in ROLES:
        counts[role] = counts.get(role, 0) + 1
        names.append(f"{role}-{counts[role]}")
    return names


@pytest.fixture
def cluster(
    tmp_path: Path,
    zookeeper: ZooKeeperChroot,
    mysql_url: str,
    redis_settings: RedisSettings,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Cluster]:
    for name in list(os.environ):
        if name.startswith("MPIM_"):
            monkeypatch.delenv(name)
    names = instance_names()
    gateways = [n for n in names if n.startswith("gateway")]
    wanted = [*names, *(g + ".http" for g in gateways)]
    ports = dict(zip(wanted, free_ports(len(wanted)), strict=True))
    path = tmp_path / "cluster.toml"
    path.write_text(cluster_toml(ports, zookeeper, mysql_url, redis_settings))
    cluster = Cluster(path, ports, zookeeper)
    yield cluster
    _kill_leftovers(cluster)


def _kill_leftovers(cluster: Cluster) -> None:
    """A failed test must not leave a cluster running."""
    for pid_file in cluster.run_dir.glob("*.pid"):
        with contextlib.suppress(ValueError, ProcessLookupError):
            os.kill(int(pid_file.read_text()), signal.SIGKILL)


async def test_start_status_stop_run_a_whole_cluster(cluster: Cluster) -> None:
    names = instance_names()

    code, out, _ = await cluster.tool("status")
    assert code == 3, out  # nothing runs yet

    code, out, err = await cluster.tool("start")
    assert code == 0, f"start failed:\n{out}\n{err}"
    for name in names:
        assert f" {name}: started" in out, out
        assert (cluster.run_dir / f"{name}.pid").exists()
        assert (cluster.logs_dir / f"{name}.log").exists()

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
    assert "stopping the" in err
    assert "gateway-1" not in out  # the gateways never started
    assert list(cluster.run_dir.glob("*.pid")) == []
    code, out, _ = await cluster.tool("status")
    assert code == 3, out
