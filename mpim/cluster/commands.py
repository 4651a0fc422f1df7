"""``mpim cluster start|stop`` (and the exit codes of every action, status included).

Exit codes, for scripts and CI:

- ``start``: 0 every process serves (or already ran); 1 something failed --
  the processes this start launched are stopped again, so a failed start
  leaves nothing half-up behind it.
- ``stop``: 0 nothing of the cluster runs any more (including "nothing
  ran"); 1 some process survived even SIGKILL (another user's process?).
- ``status``: 0 every process runs, is registered in ZooKeeper and answers
  its health check; 1 some do not (or ZooKeeper cannot be read); 3 none runs
  (the LSB convention for "not running").
- 2 (from the CLI): the cluster file is wrong.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Final

from mpim.cluster import probe, procs
from mpim.cluster.config import ClusterConfig, start_waves, stop_waves

logger = logging.getLogger(__name__)

EXIT_OK: Final = 0
EXIT_FAILED: Final = 1
EXIT_NOT_RUNNING: Final = 3
KILL_WAIT_SECONDS: Final = 3.0
ZOOKEEPER_READY_SECONDS: Final = 30.0
ZOOKEEPER_SCRIPT: Final = Path(__file__).resolve().parents[2] / "scripts" / "zookeeper.sh"


def say(text: str) -> None:
    print(text, flush=True)


def warn(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


# -- start --------------------------------------------------------------------


def start(cfg: ClusterConfig, *, with_zookeeper: bool = False) -> int:
    """Launch every process that does not run yet, wave by wave, and wait until each serves."""
    try:
        with procs.exclusive(cfg):
            return _start(cfg, with_zookeeper)
    except procs.Busy as exc:
        warn(str(exc))
        return EXIT_FAILED


def _start(cfg: ClusterConfig, with_zookeeper: bool) -> int:
    cfg.logs_dir.mkdir(parents=True, exist_ok=True)
    if not ensure_zookeeper(cfg, force=with_zookeeper):
        return EXIT_FAILED
    cfg.settings_file.write_text(cfg.settings_toml)
    started: list[procs.Launched] = []
    for wave in start_waves(cfg.processes):
        batch: list[procs.Launched] = []
        failures: list[procs.Outcome] = []
        for spec in wave:
            pid = procs.running_pid(cfg, spec.instance_id)
            if pid is not None:
                say(f"{spec.role} {spec.instance_id}: already running (pid {pid})")
                continue
            try:
                batch.append(procs.launch(cfg, spec))
            except OSError as exc:
                failures.append(procs.Outcome(spec, 0, reason=f"cannot launch: {exc}"))
        started += batch
        for outcome in procs.wait_ready(batch, cfg.start_timeout):
            if outcome.ok:
                say(
                    f"{outcome.spec.role} {outcome.spec.instance_id}: started, pid {outcome.pid}, "
                    f"listening on {outcome.address}"
                )
            else:
                failures.append(outcome)
        if failures:
            _report_failures(cfg, failures)
            _roll_back(cfg, started)
            return EXIT_FAILED
    say(
        f"cluster up: {len(cfg.processes)} processes; logs in {cfg.logs_dir}; "
        f"`mpim cluster status --config {cfg.path}` shows them"
    )
    return EXIT_OK


def _report_failures(cfg: ClusterConfig, failures: Sequence[procs.Outcome]) -> None:
    for outcome in failures:
        spec = outcome.spec
        warn(f"{spec.role} {spec.instance_id}: {outcome.reason}")
        # The log says what the process did; its output ends with why it stopped.
        for path, tail in (
            (cfg.log_file(spec), outcome.log_tail),
            (cfg.out_file(spec), outcome.out_tail),
        ):
            if tail:
                warn(f"  last lines of {path}:")
                warn(textwrap.indent(tail, "  | "))


def _roll_back(cfg: ClusterConfig, started: Sequence[procs.Launched]) -> None:
    for item in started:  # those that died at start-up: nothing to stop
        if item.proc.poll() is not None:
            cfg.pid_file(item.spec.instance_id).unlink(missing_ok=True)
    running = [item for item in started if item.proc.returncode is None]
    if not running:
        return
    warn(f"stopping the {len(running)} process(es) this start launched")
    waves = [[spec.instance_id for spec in wave] for wave in stop_waves([i.spec for i in running])]
    terminate(cfg, waves, timeout=cfg.stop_timeout)
    for item in running:  # our children: reap them so no zombie is left behind
        with contextlib.suppress(subprocess.TimeoutExpired):
            item.proc.wait(timeout=KILL_WAIT_SECONDS)


def ensure_zookeeper(cfg: ClusterConfig, *, force: bool) -> bool:
    """Make sure the configured ZooKeeper answers; start a local one with the script if not.

    ``force`` (``--with-zookeeper``) runs the script even if ZooKeeper
    answers (the script then does nothing). Only a single loopback host can
    be started this way: a remote ensemble is someone else's to run.
    """
    hosts = cfg.settings.zookeeper.hosts
    problem = probe.zookeeper_answers(hosts)
    if problem is None and not force:
        return True
    port = local_zookeeper_port(hosts)
    if port is None or not ZOOKEEPER_SCRIPT.exists():
        why = "it is not a single local host" if port is None else f"{ZOOKEEPER_SCRIPT} is missing"
        if problem is None:
            say(f"ZooKeeper answers at {hosts}; not starting one ({why})")
            return True
        warn(f"{problem}; cannot start it here ({why}): start it first")
        return False
    say(f"starting ZooKeeper on 127.0.0.1:{port} with {ZOOKEEPER_SCRIPT}")
    done = subprocess.run(["bash", str(ZOOKEEPER_SCRIPT), "start", str(port)], check=False)
    if done.returncode != 0:
        warn(f"{ZOOKEEPER_SCRIPT} start {port} failed (status {done.returncode})")
        return False
    # A freshly started server answers ruok a while before it opens sessions quickly.
    deadline = time.monotonic() + ZOOKEEPER_READY_SECONDS
    while (problem := probe.zookeeper_answers(hosts, timeout=5.0)) is not None:
        if time.monotonic() >= deadline:
            warn(problem)
            return False
        time.sleep(0.5)
    return True


def local_zookeeper_port(hosts: str) -> int | None:
    """The port if ``hosts`` is one loopback server (``127.0.0.1:2181``), else None."""
    server = hosts.split("/", 1)[0]
    if "," in server:
        return None
    host, _, port = server.rpartition(":") if ":" in server else (server, "", "2181")
    if host not in ("127.0.0.1", "localhost") or not port.isdigit():
        return None
    return int(port)


# -- stop ---------------------------------------------------------------------


def stop(cfg: ClusterConfig, *, with_zookeeper: bool = False) -> int:
    """SIGTERM gateways, then message services, then the rest; SIGKILL what outlives the wait."""
    try:
        with procs.exclusive(cfg):
            return _stop(cfg, with_zookeeper)
    except procs.Busy as exc:
        warn(str(exc))
        return EXIT_FAILED


def _stop(cfg: ClusterConfig, with_zookeeper: bool) -> int:
    waves = [[spec.instance_id for spec in wave] for wave in stop_waves(cfg.processes)]
    strays = procs.stray_instances(cfg)
    if strays:
        waves.append(strays)
    survivors = terminate(cfg, waves, timeout=cfg.stop_timeout)
    if with_zookeeper:
        port = local_zookeeper_port(cfg.settings.zookeeper.hosts)
        if port is not None and ZOOKEEPER_SCRIPT.exists():
            subprocess.run(["bash", str(ZOOKEEPER_SCRIPT), "stop", str(port)], check=False)
    return EXIT_FAILED if survivors else EXIT_OK


def terminate(cfg: ClusterConfig, waves: Sequence[Sequence[str]], *, timeout: float) -> list[str]:
    """Stop each wave of instances in turn; return the instances still alive at the end."""
    survivors: list[str] = []
    for wave in waves:
        pids = _signal_wave(cfg, wave)
        began = time.monotonic()
        stuck = procs.wait_gone(pids, began + timeout, _reporter(cfg, "stopped", began))
        for instance_id, pid in stuck.items():
            warn(f"{instance_id}: still running after {timeout:g} s; SIGKILL pid {pid}")
            procs.signal_process(pid, signal.SIGKILL)
        deadline = time.monotonic() + KILL_WAIT_SECONDS
        left = procs.wait_gone(stuck, deadline, _reporter(cfg, "killed", began))
        for instance_id, pid in left.items():
            warn(f"{instance_id}: pid {pid} survived SIGKILL; pid file kept")
            survivors.append(instance_id)
    return survivors


def _reporter(cfg: ClusterConfig, how: str, began: float) -> Callable[[str, int], None]:
    """Say that an instance is gone, and drop its pid file."""

    def report(instance_id: str, pid: int) -> None:
        cfg.pid_file(instance_id).unlink(missing_ok=True)
        say(f"{instance_id}: {how} (pid {pid}, {time.monotonic() - began:.1f} s)")

    return report


def _signal_wave(cfg: ClusterConfig, wave: Sequence[str]) -> dict[str, int]:
    """SIGTERM every running instance of ``wave``; drop stale pid files on the way."""
    pids: dict[str, int] = {}
    for instance_id in wave:
        pid = procs.running_pid(cfg, instance_id)
        if pid is None:
            pid_file = cfg.pid_file(instance_id)
            if pid_file.exists():
                pid_file.unlink()
                say(f"{instance_id}: not running (stale pid file removed)")
            continue
        procs.signal_process(pid, signal.SIGTERM)
        pids[instance_id] = pid
    return pids
