"""``mpim cluster status``: every process with its pid, address, registration and health.

Three independent sources, because each can disagree with the others: the
pid file (does our process run?), ZooKeeper (can callers find it?) and a
health probe (does it answer?). A process that runs but is not registered
gets no traffic; one registered but dead costs callers a failed attempt
until its session expires. The table shows all three side by side.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from mpim.cluster import probe, procs
from mpim.cluster.commands import EXIT_FAILED, EXIT_NOT_RUNNING, EXIT_OK, say
from mpim.cluster.config import ClusterConfig, ProcessSpec, dial_host
from mpim.cluster.table import render
from mpim.metrics.scrape import Scrape, fetch
from mpim.metrics.summary import COLUMNS, key_figures

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Row:
    """What status knows about one configured process."""

    spec: ProcessSpec
    pid: int | None
    alive: bool
    registered: str | None  # the registered address; None: not registered
    health: probe.Health | None

    def well(self) -> bool:
        """Running, registered and answering: what a caller needs to reach it."""
        return (
            self.alive
            and self.registered is not None
            and self.health is not None
            and self.health.ok
        )

    def state(self) -> str:
        if self.alive:
            return "running"
        return "dead" if self.pid is not None else "stopped"


def status(cfg: ClusterConfig) -> int:
    """Print one line per process and return 0 (all well), 1 (some not) or 3 (none runs)."""
    rows, registered, zk_problem = collect(cfg)
    say(
        render(
            ["ROLE", "INSTANCE", "PID", "STATE", "ADDRESS", "HTTP", "ZOOKEEPER", "HEALTH"],
            [_cells(cfg, row, zk_problem is None) for row in rows],
        )
    )
    _summarise(cfg, rows, registered, zk_problem)
    figures = _figures(cfg, [row.spec for row in rows if row.alive])
    if figures:
        say("")
        say(render(["INSTANCE", *COLUMNS], figures))
    if not any(row.alive for row in rows):
        return EXIT_NOT_RUNNING
    return EXIT_OK if all(row.well() for row in rows) else EXIT_FAILED


def collect(cfg: ClusterConfig) -> tuple[list[Row], dict[tuple[str, str], str], str | None]:
    """Pid files, ZooKeeper and health probes, asked at the same time (each may time out)."""
    zk = cfg.settings.zookeeper
    with ThreadPoolExecutor(max_workers=8, thread_name_prefix="mpim-status") as pool:
        zk_future = pool.submit(probe.registrations, zk.hosts, zk.chroot)
        pids = {s.instance_id: procs.read_pid(cfg.pid_file(s.instance_id)) for s in cfg.processes}
        alive = {i: pid is not None and procs.is_ours(pid, i) for i, pid in pids.items()}
        health = {
            s.instance_id: pool.submit(_health, cfg, s)
            for s in cfg.processes
            if alive[s.instance_id]
        }
        try:
            registered, zk_problem = zk_future.result(), None
        except probe.ProbeError as exc:
            registered, zk_problem = {}, str(exc)
        rows = [
            Row(
                spec,
                pids[spec.instance_id],
                alive[spec.instance_id],
                registered.get((spec.role, spec.instance_id)),
                health[spec.instance_id].result() if spec.instance_id in health else None,
            )
            for spec in cfg.processes
        ]
    return rows, registered, zk_problem


def ops_url(cfg: ClusterConfig, spec: ProcessSpec) -> str | None:
    """Where ``spec`` serves /metrics: a gateway's HTTP port, a service's metrics port."""
    port = spec.http_port if spec.is_gateway else spec.metrics_port
    if port is None:
        return None
    host = dial_host(cfg.settings.gateway.http_host if spec.is_gateway else cfg.settings.rpc.host)
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def _figures(cfg: ClusterConfig, specs: Sequence[ProcessSpec]) -> list[list[str]]:
    """One row of key figures per running process that serves /metrics."""
    urls = {s.instance_id: url for s in specs if (url := ops_url(cfg, s)) is not None}

    def one(url: str) -> dict[str, str] | None:
        try:
            status, body = fetch(url, timeout=2.0)
        except OSError:
            return None
        return key_figures(Scrape.parse(body)) if status == 200 else None

    with ThreadPoolExecutor(max_workers=8, thread_name_prefix="mpim-figures") as pool:
        found = dict(zip(urls, pool.map(one, urls.values()), strict=True))
    return [
        [instance, *(figures[c] for c in COLUMNS)]
        if figures is not None
        else [instance, *("?" for _ in COLUMNS)]
        for instance, figures in found.items()
    ]


def _health(cfg: ClusterConfig, spec: ProcessSpec) -> probe.Health:
    host = cfg.probe_host(spec)
    if spec.is_gateway:
        return probe.gateway_ping(host, spec.port)
    return probe.grpc_health(f"[{host}]:{spec.port}" if ":" in host else f"{host}:{spec.port}")


def _cells(cfg: ClusterConfig, row: Row, zk_known: bool) -> list[str]:
    spec = row.spec
    if not zk_known:
        zk_cell = "?"
    elif row.registered is None:
        zk_cell = "no"
    elif row.registered == cfg.address(spec):
        zk_cell = "yes"
    else:
        zk_cell = f"yes ({row.registered})"
    return [
        spec.role,
        spec.instance_id,
        str(row.pid) if row.pid is not None else "-",
        row.state(),
        cfg.address(spec),
        str(spec.http_port) if spec.http_port is not None else "-",
        zk_cell,
        row.health.text if row.health is not None else "-",
    ]


def _summarise(
    cfg: ClusterConfig,
    rows: Sequence[Row],
    registered: dict[tuple[str, str], str],
    zk_problem: str | None,
) -> None:
    zk = cfg.settings.zookeeper
    running = sum(row.alive for row in rows)
    healthy = sum(row.health is not None and row.health.ok for row in rows)
    in_zk = sum(row.registered is not None for row in rows)
    say(
        f"{running}/{len(rows)} running, {in_zk} registered, {healthy} healthy "
        f"(ZooKeeper {zk.hosts}, chroot {zk.chroot})"
    )
    if zk_problem is not None:
        say(zk_problem)
    listed = {(row.spec.role, row.spec.instance_id) for row in rows}
    for (service, instance_id), address in sorted(registered.items()):
        if (service, instance_id) not in listed:
            say(f"also registered, not in {cfg.path.name}: {service} {instance_id} at {address}")
