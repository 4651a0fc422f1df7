"""Processes of a local cluster: launching detached, pid files, logs, readiness.

Each process runs in its own session (``setsid``), so it outlives the
``mpim cluster start`` that launched it and a Ctrl-C in that terminal does
not reach it. Two files per process in the logs directory:

- ``<instance>.log``: its structured log (mpim/logs.py), written by the
  process itself and rotated by size as it grows (``log_max_bytes``,
  ``log_backups``); the tool asks for it with ``MPIM_LOG__FILE`` and friends
  and turns the process's stderr logging off, so every line parses.
- ``<instance>.out``: its stdout and stderr, opened for appending: the
  ``listening on`` line, and what never reaches the log (a crash's
  traceback, gRPC's C-core messages, a start-up error). Rotated when
  ``start`` finds it larger than ``log_max_bytes``.

The tool learns that a process serves from the ``listening on`` line the
role prints, read back from ``.out``: no pipe has to stay open after the
tool exits.

A pid file alone can lie (the pid may have been reused by an unrelated
process after a crash), so a pid counts as ours only while its command line
still names ``serve`` and the instance id.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Final

from mpim.cluster.config import ClusterConfig, ProcessSpec

_LISTENING: Final = re.compile(
    rb"^mpim (?P<role>\S+) (?P<instance>\S+) listening on (?P<address>\S+)\s*$", re.M
)
POLL_SECONDS: Final = 0.05
TAIL_LINES: Final = 20


@dataclass
class Launched:
    """A process this run of the tool started, and where its output for this run begins."""

    spec: ProcessSpec
    proc: subprocess.Popen[bytes]
    out_path: Path  # stdout and stderr
    offset: int
    log_path: Path | None = None  # the structured log
    log_offset: int = 0


@dataclass(frozen=True)
class Outcome:
    """How a launch ended: serving at ``address``, or failed with ``reason``."""

    spec: ProcessSpec
    pid: int
    address: str = ""
    reason: str = ""
    log_tail: str = ""  # of the structured log
    out_tail: str = ""  # of stdout and stderr

    @property
    def ok(self) -> bool:
        return not self.reason


def command(cfg: ClusterConfig, spec: ProcessSpec) -> list[str]:
    """The command line of one process (the interpreter running this tool)."""
    args = [sys.executable, "-m", "mpim", "serve", spec.role]
    args += ["--config", str(cfg.settings_file), "--instance-id", spec.instance_id]
    args += ["--port", str(spec.port)]
    if spec.http_port is not None:
        args += ["--http-port", str(spec.http_port)]
    if spec.metrics_port is not None:
        args += ["--metrics-port", str(spec.metrics_port)]
    if spec.log_level is not None:
        args += ["--log-level", spec.log_level]
    return args


def launch(cfg: ClusterConfig, spec: ProcessSpec) -> Launched:
    """Start one process detached, logging to its files, and write its pid file."""
    out_path = cfg.out_file(spec)
    log_path = cfg.log_file(spec)
    rotate_log(out_path, cfg.log_max_bytes, cfg.log_backups)
    argv = command(cfg, spec)
    env = dict(os.environ, PYTHONUNBUFFERED="1", **log_env(cfg, log_path))
    if spec.is_gateway and spec.http_port is None:
        env["MPIM_GATEWAY__HTTP_ENABLED"] = "false"
    log_offset = _size(log_path)
    with open(out_path, "ab") as out:
        stamp = datetime.now().astimezone().isoformat(timespec="seconds")
        out.write(f"--- {stamp} mpim cluster start: {' '.join(argv)}\n".encode())
        out.flush()
        offset = out.tell()
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=cfg.path.resolve().parent,
            env=env,
            start_new_session=True,
        )
    write_pid(cfg.pid_file(spec.instance_id), proc.pid)
    return Launched(spec, proc, out_path, offset, log_path, log_offset)


def log_env(cfg: ClusterConfig, log_path: Path) -> dict[str, str]:
    """``MPIM_LOG__*`` for one process: its own rotated log file, nothing on stderr.

    The environment beats the settings file, so a ``[log] file`` there cannot
    make every process write to one file; ``[log] format`` still applies.
    """
    return {
        "MPIM_LOG__FILE": str(log_path),
        "MPIM_LOG__MAX_BYTES": str(cfg.log_max_bytes),
        "MPIM_LOG__BACKUPS": str(cfg.log_backups),
        "MPIM_LOG__STDERR": "false",
    }


def wait_ready(launched: Sequence[Launched], timeout: float) -> list[Outcome]:
    """Wait until each process printed its ``listening on`` line, exited, or ran out of time."""
    pending = {item.spec.instance_id: item for item in launched}
    outcomes: dict[str, Outcome] = {}
    deadline = time.monotonic() + timeout
    while pending:
        for instance_id, item in list(pending.items()):
            address = _listening_address(item)
            code = item.proc.poll()
            if address is not None:
                outcomes[instance_id] = Outcome(item.spec, item.proc.pid, address=address)
            elif code is not None:
                reason = f"exited with status {code} during start-up"
                outcomes[instance_id] = _failed(item, reason)
            elif time.monotonic() >= deadline:
                outcomes[instance_id] = _failed(item, f"not listening after {timeout:g} s")
            else:
                continue
            del pending[instance_id]
        if pending:
            time.sleep(POLL_SECONDS)
    return [outcomes[item.spec.instance_id] for item in launched]


def _listening_address(item: Launched) -> str | None:
    with open(item.out_path, "rb") as out:
        out.seek(item.offset)
        text = out.read()
    for match in _LISTENING.finditer(text):
        if match["instance"].decode() == item.spec.instance_id:
            return match["address"].decode()
    return None


def _failed(item: Launched, reason: str) -> Outcome:
    structured = "" if item.log_path is None else log_tail(item.log_path, item.log_offset)
    return Outcome(
        item.spec,
        item.proc.pid,
        reason=reason,
        log_tail=structured,
        out_tail=log_tail(item.out_path, item.offset),
    )


def log_tail(path: Path, offset: int = 0, lines: int = TAIL_LINES) -> str:
    """The last ``lines`` lines written after ``offset``; "" if there are none.

    A file now shorter than ``offset`` was rotated meanwhile: all of it is new.
    """
    size = _size(path)
    try:
        with open(path, "rb") as log:
            log.seek(max(offset if offset <= size else 0, size - 64 * 1024))
            text = log.read().decode(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def rotate_log(path: Path, max_bytes: int, backups: int) -> None:
    """``x.log`` → ``x.log.1`` → … → ``x.log.<backups>`` once it exceeds ``max_bytes``."""
    if max_bytes <= 0 or _size(path) <= max_bytes:
        return
    if backups == 0:
        path.unlink(missing_ok=True)
        return
    for index in range(backups - 1, 0, -1):
        older = path.with_name(f"{path.name}.{index}")
        if older.exists():
            older.replace(path.with_name(f"{path.name}.{index + 1}"))
    path.replace(path.with_name(f"{path.name}.1"))


# -- pid files and liveness ---------------------------------------------------


class Busy(Exception):
    """Another ``mpim cluster start`` or ``stop`` is working on this run directory."""


@contextlib.contextmanager
def exclusive(cfg: ClusterConfig) -> Iterator[None]:
    """Hold ``<run_dir>/.lock`` so two starts (or a start and a stop) never interleave.

    Launched processes do not inherit the lock (Popen closes other fds), so it
    is released when this command ends, even if it is killed.
    """
    cfg.run_dir.mkdir(parents=True, exist_ok=True)
    with open(cfg.run_dir / ".lock", "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise Busy(f"another mpim cluster start/stop is using {cfg.run_dir}") from None
        yield


def write_pid(path: Path, pid: int) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(f"{pid}\n")
    tmp.replace(path)


def read_pid(path: Path) -> int | None:
    """The pid in ``path``, or None if there is no usable pid file."""
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() and int(text) > 0 else None


def is_ours(pid: int, instance_id: str) -> bool:
    """True while ``pid`` runs (not a zombie) and is the process for ``instance_id``."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # it exists but belongs to someone else; /proc decides below
    proc = Path("/proc") / str(pid)
    if not Path("/proc/self").exists():
        return True  # no procfs (not Linux): kill(0) is all we can know
    try:
        stat = (proc / "stat").read_text()
        argv = (proc / "cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    state = stat.rpartition(")")[2].split()[0]
    return state not in ("Z", "X") and b"serve" in argv and instance_id.encode() in argv


def running_pid(cfg: ClusterConfig, instance_id: str) -> int | None:
    """The pid of ``instance_id`` if its pid file names a live process of ours."""
    pid = read_pid(cfg.pid_file(instance_id))
    return pid if pid is not None and is_ours(pid, instance_id) else None


def stray_instances(cfg: ClusterConfig) -> list[str]:
    """Instances with a pid file that the cluster file no longer lists."""
    listed = {spec.instance_id for spec in cfg.processes}
    if not cfg.run_dir.is_dir():
        return []
    return sorted(path.stem for path in cfg.run_dir.glob("*.pid") if path.stem not in listed)


def signal_process(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)


def wait_gone(
    pids: dict[str, int],
    deadline: float,
    on_gone: Callable[[str, int], None] | None = None,
) -> dict[str, int]:
    """Wait until every ``instance → pid`` has exited or ``deadline``; return those still alive.

    ``on_gone(instance, pid)`` is called as each one goes, so progress shows while waiting.
    """
    alive = dict(pids)
    while alive:
        for instance_id, pid in list(alive.items()):
            if not is_ours(pid, instance_id):
                del alive[instance_id]
                if on_gone is not None:
                    on_gone(instance_id, pid)
        if not alive or time.monotonic() >= deadline:
            break
        time.sleep(POLL_SECONDS)
    return alive
