"""A real multi-process cluster for tests, run by ``mpim cluster`` as a person would.

Each test gets free ports, its own ZooKeeper chroot, Redis key prefix and
MariaDB database, so runs never collide with each other or with a cluster
started from deploy/cluster.toml on the same machine.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from mpim.config import RedisSettings
from tests.support.ports import free_ports

if TYPE_CHECKING:
    from tests.support.zookeeper import ZooKeeperChroot

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

    def pid(self, instance: str) -> int:
        return int((self.run_dir / f"{instance}.pid").read_text())

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
        """instance id → the cells of its status line (the first table)."""
        table = status_output.split("\n\n", 1)[0].splitlines()
        return {line.split()[1]: line.split() for line in table[1:] if line.split()[1:2]}

    def figures(self, status_output: str) -> dict[str, dict[str, str]]:
        """instance id → column → cell of the key-figures table (the second one)."""
        _, _, second = status_output.partition("\n\n")
        lines = second.splitlines()
        # Columns are two spaces apart; a header like "PUSH P99" has one space.
        header = [h for h in lines[0].split("  ") if h.strip()] if lines else []
        header = [h.strip() for h in header]
        rows = {}
        for line in lines[1:]:
            cells = [c.strip() for c in line.split("  ") if c.strip()]
            rows[cells[0]] = dict(zip(header, cells, strict=True))
        return rows


def cluster_toml(
    ports: dict[str, int], zookeeper: ZooKeeperChroot, store_url: str, redis: RedisSettings
) -> str:
    processes = []
    counts: dict[str, int] = {}
    for role in ROLES:
        counts[role] = counts.get(role, 0) + 1
        instance = f"{role}-{counts[role]}"
        http = (
            f"http_port = {ports[instance + '.http']}\n"
            if role == "gateway"
            else f"metrics_port = {ports[instance + '.metrics']}\n"
        )
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
    services = [n for n in names if not n.startswith("gateway")]
    wanted = [*names, *(g + ".http" for g in gateways), *(s + ".metrics" for s in services)]
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
