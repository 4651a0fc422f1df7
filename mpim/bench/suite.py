"""The recorded benchmark suite: which runs, against which servers, saved where.

``scripts/run_benchmarks.py`` runs this and then renders ``docs/benchmarks.md``
from what it saved, so the numbers in the doc always come from one command.
Each run is an ordinary ``mpim bench`` command line (recorded verbatim for the
doc) against a server started here: embedded MPIM and the relay baseline,
measured in the same session so the comparison is fair.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import shlex
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Final

from mpim.bench.machine import machine_info
from mpim.bench.profile import record, summarize_raw
from mpim.bench.results import RoundResult, summarize_by_label
from mpim.bench.servers import (
    SETUP_HASH_ENV,
    ClusterProcess,
    ServerProcess,
    command_line,
    mpim_server,
    relay_server,
)

logger = logging.getLogger(__name__)

MPIM: Final = "mpim"
MPIM_DEFAULT_HASH: Final = "mpim-default-hash"
MPIM_DISTRIBUTED: Final = "mpim-distributed"
RELAY: Final = "relay"
SUITE_FILE: Final = "suite.json"


@dataclass(frozen=True)
class BenchRun:
    """One scenario, run against MPIM and the relay with the same flags."""

    key: str
    title: str
    #: ``mpim bench`` arguments after ``bench``, without ``--addr``.
    command: str
    #: The MPIM server flavour: cheap hashing (set-up only) or the defaults.
    mpim: str = MPIM
    #: >0: run that many times, each against a freshly started server, and take
    #: medians over them (memory figures must not inherit a previous round's heap).
    fresh: int = 0
    #: Fresh runs against the relay (its figures barely vary); None: as ``fresh``.
    relay_fresh: int | None = None
    #: Profile the MPIM server with py-spy during an extra run of this scenario.
    profile_seconds: float = 0.0

    @property
    def args(self) -> list[str]:
        return shlex.split(self.command)


FULL: Final = (
    BenchRun(
        "c2c_closed",
        "One-to-one chat, 200 pairs, closed loop",
        "c2c --pairs 200 --window 16 --warmup 1 --duration 5 --repeat 3",
        profile_seconds=8,
    ),
    BenchRun(
        "c2c_closed_cids",
        "One-to-one chat, 200 pairs, closed loop, every send with @cid= (idempotent)",
        "c2c --cids --pairs 200 --window 16 --warmup 1 --duration 5 --repeat 3",
    ),
    BenchRun(
        "c2c_sweep",
        "One-to-one chat, 200 pairs beside 10,000 idle logged-in connections, open loop",
        "c2c --pairs 200 --idle 10000 --idle-users 100 --rates 2500,5000,10000,20000"
        " --max-inflight 25 --warmup 1 --duration 4 --repeat 3",
    ),
    BenchRun(
        "group",
        "Group fan-out, 1,000 online members, 4 senders, closed loop",
        "group --members 1000 --senders 4 --window 8 --warmup 1 --duration 4 --repeat 3",
        profile_seconds=6,
    ),
    BenchRun(
        "idle",
        "19,000 idle logged-in connections",
        "idle --connections 19000 --users 200 --hold 3",
        fresh=3,
        relay_fresh=1,
    ),
    BenchRun(
        "login",
        "Password LOGIN, then token AUTH, 32 connections",
        "login --users 16 --concurrency 32 --warmup 1 --duration 3 --repeat 3",
        mpim=MPIM_DEFAULT_HASH,
    ),
)

QUICK: Final = (
    BenchRun(
        "c2c_closed",
        "One-to-one chat, 20 pairs, closed loop",
        "c2c --pairs 20 --warmup 0.5 --duration 2 --repeat 2",
        profile_seconds=2,
    ),
    BenchRun(
        "c2c_sweep",
        "One-to-one chat, 20 pairs beside 500 idle, open loop",
        "c2c --pairs 20 --idle 500 --idle-users 10 --rates 1000,2000 --max-inflight 100"
        " --warmup 0.5 --duration 2 --repeat 2",
    ),
    BenchRun(
        "group",
        "Group fan-out, 50 members, 3 senders",
        "group --members 50 --senders 3 --warmup 0.5 --duration 2 --repeat 2",
    ),
    BenchRun(
        "idle",
        "1,000 idle logged-in connections",
        "idle --connections 1000 --users 20 --hold 1",
        fresh=2,
    ),
    BenchRun(
        "login",
        "Password LOGIN, then token AUTH",
        "login --users 4 --concurrency 8 --warmup 0.5 --duration 1 --repeat 2",
        mpim=MPIM_DEFAULT_HASH,
    ),
)

#: Run only with ``--distributed CLUSTER.toml``: against the cluster, no relay
#: (a single-process relay has no distributed counterpart to compare with).
DISTRIBUTED: Final = (
    BenchRun(
        "dist_c2c_closed",
        "Distributed: one-to-one chat, 200 pairs across two gateways, closed loop",
        "c2c --pairs 200 --window 16 --warmup 1 --duration 5 --repeat 3",
        mpim=MPIM_DISTRIBUTED,
    ),
    BenchRun(
        "dist_c2c_open",
        "Distributed: one-to-one chat, 200 pairs across two gateways, 5,000 msg/s offered",
        "c2c --pairs 200 --rate 5000 --max-inflight 25 --warmup 1 --duration 4 --repeat 3",
        mpim=MPIM_DISTRIBUTED,
    ),
)

SUITES: Final = {"full": FULL, "quick": QUICK}


@dataclass
class Entry:
    """One scenario against one server: where its JSON is and how it was made."""

    key: str
    server: str
    result_file: str
    commands: list[str]
    exit_codes: list[int]
    seconds: float


@dataclass
class SuiteRecord:
    """Everything the doc needs besides the per-run JSON files."""

    suite: str
    machine: dict[str, Any]
    started_at: str
    seconds: float = 0.0
    setup_hash_env: dict[str, str] = field(default_factory=lambda: dict(SETUP_HASH_ENV))
    runs: list[dict[str, Any]] = field(default_factory=list)
    entries: list[Entry] = field(default_factory=list)
    profiles: dict[str, dict[str, Any]] = field(default_factory=dict)
    cluster_config: str | None = None
    fresh_store: bool = False

    def save(self, out_dir: Path) -> None:
        (out_dir / SUITE_FILE).write_text(json.dumps(asdict(self), indent=2) + "\n")

    @classmethod
    def load(cls, out_dir: Path) -> SuiteRecord:
        data = json.loads((out_dir / SUITE_FILE).read_text())
        data["entries"] = [Entry(**e) for e in data["entries"]]
        return cls(**data)


class SuiteRunner:
    """Starts servers on demand, runs every ``BenchRun``, writes JSON into ``out_dir``."""

    def __init__(
        self,
        out_dir: Path,
        progress: bool,
        echo: Callable[[str], None],
        cluster_config: Path | None = None,
        fresh_store: bool = False,
    ) -> None:
        self.out_dir = out_dir
        self.cluster_config = cluster_config
        self.fresh_store = fresh_store
        self.progress = progress
        self.echo = echo
        self.log_dir = Path(tempfile.mkdtemp(prefix="mpim-bench-logs-"))
        self._servers: dict[str, ServerProcess | ClusterProcess] = {}

    def run(self, name: str, runs: Sequence[BenchRun], profile: bool) -> SuiteRecord:
        started = time.monotonic()
        self.out_dir.mkdir(parents=True, exist_ok=True)
        suite = SuiteRecord(
            suite=name,
            machine=machine_info(),
            started_at=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            runs=[{"key": r.key, "title": r.title, "mpim": r.mpim, "fresh": r.fresh} for r in runs],
            cluster_config=_shown_path(self.cluster_config),
            fresh_store=self.fresh_store and self.cluster_config is not None,
        )
        try:
            for run in runs:
                servers = (run.mpim,) if run.mpim == MPIM_DISTRIBUTED else (run.mpim, RELAY)
                for server in servers:
                    suite.entries.append(self._entry(run, server))
                if profile and run.profile_seconds:
                    summary = self._profile(run)
                    if summary is not None:
                        suite.profiles[run.key] = summary
        finally:
            for proc in self._servers.values():
                proc.stop()
            self._servers.clear()
        suite.seconds = time.monotonic() - started
        suite.save(self.out_dir)
        self.echo(f"server logs: {self.log_dir}")
        return suite

    # -- one scenario on one server --------------------------------------------------

    def _entry(self, run: BenchRun, server: str) -> Entry:
        short = MPIM if server != RELAY else RELAY
        result_file = f"{run.key}.{short}.json"
        started = time.monotonic()
        commands: list[str] = []
        codes: list[int] = []
        fresh = run.fresh
        if server == RELAY and run.relay_fresh is not None:
            fresh = run.relay_fresh
        if fresh:
            parts = []
            for i in range(fresh):
                with self._start(server) as proc:
                    path = self.out_dir / f".{run.key}.{short}.{i}.json"
                    command, code = self._bench(run.args, proc, path)
                    commands.append(command)
                    codes.append(code)
                    parts.append(path)
            _combine(parts, self.out_dir / result_file)
        else:
            command, code = self._bench(run.args, self._shared(server), self.out_dir / result_file)
            commands.append(command)
            codes.append(code)
        return Entry(run.key, short, result_file, commands, codes, time.monotonic() - started)

    def _start(self, server: str) -> ServerProcess:
        if server == RELAY:
            return relay_server(self.log_dir)
        return mpim_server(self.log_dir, setup_hash=server == MPIM)

    def _shared(self, server: str) -> ServerProcess | ClusterProcess:
        if server == MPIM_DISTRIBUTED:
            if self.cluster_config is None:
                raise ValueError("distributed runs need a cluster file")
            if server not in self._servers:
                cluster = ClusterProcess(
                    self.cluster_config, self.log_dir / "cluster.log", self.fresh_store
                )
                self._servers[server] = cluster.start()
            return self._servers[server]
        return self._shared_server(server)

    def _shared_server(self, server: str) -> ServerProcess:
        found = self._servers.get(server)
        if isinstance(found, ServerProcess):
            return found
        started = self._start(server).start()
        self._servers[server] = started
        return started

    def _bench(
        self,
        args: Sequence[str],
        server: ServerProcess | ClusterProcess,
        json_path: Path,
        *extra: str,
    ) -> tuple[str, int]:
        addrs = server.addrs if isinstance(server, ClusterProcess) else [server.addr]
        pids = server.pids if isinstance(server, ClusterProcess) else [server.pid]
        argv = [sys.executable, "-m", "mpim", "bench", *args]
        for addr in addrs:
            argv += ["--addr", addr]
        shown = command_line(argv)
        for pid in pids:
            argv += ["--server-pid", str(pid)]
        for url in server.metrics_urls:
            argv += ["--metrics-url", url]
        argv += ["--json", str(json_path), *extra]
        argv.append("--progress" if self.progress else "--no-progress")
        self.echo(f"$ {shown}    # {server.name}")
        proc = subprocess.run(argv, stdout=subprocess.PIPE, text=True, check=False)
        self.echo(proc.stdout.rstrip())
        if proc.returncode:
            self.echo(f"(exit code {proc.returncode})")
        return shown, proc.returncode

    # -- profiling ---------------------------------------------------------------------

    def _profile(self, run: BenchRun) -> dict[str, Any] | None:
        """An extra run of ``run`` with py-spy attached to MPIM once set-up is done."""
        server = self._shared_server(run.mpim)
        ready = self.log_dir / f"{run.key}.ready"
        raw = self.log_dir / f"{run.key}.pyspy.txt"
        args = run.args
        if "--repeat" in args:
            at = args.index("--repeat")
            args[at + 1] = "1"
        if "--duration" in args:
            at = args.index("--duration")
            args[at + 1] = str(run.profile_seconds + 2)
        argv = [sys.executable, "-m", "mpim", "bench", *args, "--addr", server.addr]
        argv += ["--no-progress", "--no-strict", "--ready-file", str(ready)]
        self.echo(f"profiling {run.key}: py-spy on pid {server.pid} for {run.profile_seconds:g}s")
        bench = subprocess.Popen(argv, stdout=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 300
            while not ready.exists() and bench.poll() is None and time.monotonic() < deadline:
                time.sleep(0.1)
            warmup = float(args[args.index("--warmup") + 1]) if "--warmup" in args else 1.0
            time.sleep(0.3 + warmup)
            recorded = ready.exists() and record(server.pid, run.profile_seconds, raw)
        finally:
            try:
                bench.wait(timeout=300)
            except subprocess.TimeoutExpired:
                bench.kill()
                bench.wait()
        if not recorded:
            return None
        summary = summarize_raw(raw.read_text())
        return asdict(summary) | {"command": command_line(argv[: argv.index("--no-progress")])}


def _shown_path(path: Path | None) -> str | None:
    """``path`` relative to the working directory when inside it (for the doc)."""
    if path is None:
        return None
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def _combine(parts: list[Path], out: Path) -> None:
    """One result file from several fresh-server runs: all rounds, medians over them."""
    datas = [json.loads(p.read_text()) for p in parts if p.exists()]
    if not datas:
        return
    combined = dict(datas[0])
    rounds = [r for d in datas for r in d["rounds"]]
    combined["rounds"] = rounds
    combined["summary"] = [
        s.to_json() for s in summarize_by_label([RoundResult.from_json(r) for r in rounds])
    ]
    combined["problems"] = [p for d in datas for p in d["problems"]]
    combined["ok"] = all(d["ok"] for d in datas)
    combined["run_id"] = ",".join(d["run_id"] for d in datas)
    combined["fresh_servers"] = len(datas)
    out.write_text(json.dumps(combined, indent=2) + "\n")
    for p in parts:
        p.unlink(missing_ok=True)
