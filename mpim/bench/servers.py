"""Servers under test as child processes: embedded MPIM and the relay.

Both print one ``… listening on HOST:PORT`` line when they accept
connections; we read that line (with a timeout) instead of sleeping or
polling the port. The rest of their output goes to a log file so a full pipe
can never stall them.
"""

from __future__ import annotations

import logging
import os
import re
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import tomllib
from pathlib import Path
from typing import IO, Final

from mpim.store.database import drop_database

logger = logging.getLogger(__name__)

_LISTENING: Final = re.compile(r"listening on (\S+):(\d+)")
# Embedded MPIM's line names its web port too, which serves /metrics.
_WEB: Final = re.compile(r"web client (http://[^/\s]+)/")
START_TIMEOUT: Final = 60.0
STOP_TIMEOUT: Final = 15.0

#: argon2id settings for servers whose scenarios register users only in set-up
#: (c2c, group, idle): hashing cost is not what they measure, and at the OWASP
#: defaults 1,000 registrations would take most of the time budget.
SETUP_HASH_ENV: Final = {
    "MPIM_SECURITY__ARGON2_MEMORY_KIB": "1024",
    "MPIM_SECURITY__ARGON2_TIME_COST": "1",
}


class ServerError(RuntimeError):
    """A server did not start or report where it listens."""


class ServerProcess:
    """One child server; ``start`` returns once it listens."""

    def __init__(
        self,
        name: str,
        argv: list[str],
        log_path: Path,
        env: dict[str, str] | None = None,
        cleanup: Path | None = None,
    ) -> None:
        self.name = name
        self.argv = argv
        self.log_path = log_path
        self.env = env or {}
        self.cleanup = cleanup
        self.host = ""
        self.port = 0
        # Its /metrics (embedded MPIM's web port), read before and after each round.
        self.metrics_urls: list[str] = []
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        self._drainer: threading.Thread | None = None

    @property
    def pid(self) -> int:
        assert self._proc is not None
        return self._proc.pid

    @property
    def addr(self) -> str:
        return f"{self.host}:{self.port}"

    def start(self) -> ServerProcess:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = self.log_path.open("wb")
        self._proc = subprocess.Popen(
            self.argv,
            stdout=subprocess.PIPE,
            stderr=self._log,
            env={**os.environ, **self.env},
        )
        assert self._proc.stdout is not None
        line = _read_line(self._proc.stdout, START_TIMEOUT)
        match = _LISTENING.search(line)
        if match is None:
            self.stop()
            raise ServerError(
                f"{self.name} did not report listening: {line!r} (see {self.log_path})"
            )
        self.host, self.port = match.group(1), int(match.group(2))
        web = _WEB.search(line)
        self.metrics_urls = [web.group(1)] if web else []
        self._drainer = threading.Thread(
            target=self._drain, daemon=True, name=f"{self.name}-stdout"
        )
        self._drainer.start()
        logger.info("%s listening on %s (pid %d)", self.name, self.addr, self.pid)
        return self

    def _drain(self) -> None:
        proc, log = self._proc, self._log
        if proc is None or proc.stdout is None or log is None:
            return
        fd = proc.stdout.fileno()
        while chunk := _read_chunk(fd):
            if not log.closed:
                log.write(chunk)

    def stop(self) -> int | None:
        """SIGTERM, wait, then SIGKILL; remove the data directory if we made it."""
        proc = self._proc
        code = None
        if proc is not None:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    code = proc.wait(STOP_TIMEOUT)
                except subprocess.TimeoutExpired:
                    logger.warning("%s did not stop in %.0fs; killing it", self.name, STOP_TIMEOUT)
                    proc.kill()
                    code = proc.wait()
            else:
                code = proc.returncode
            drainer, self._drainer = self._drainer, None
            if drainer is not None:
                # EOF once the server and its writer process have both exited.
                drainer.join(STOP_TIMEOUT)
            if proc.stdout is not None and (drainer is None or not drainer.is_alive()):
                proc.stdout.close()
            self._proc = None
        if self._log is not None:
            self._log.close()
            self._log = None
        if self.cleanup is not None:
            shutil.rmtree(self.cleanup, ignore_errors=True)
        return code

    def __enter__(self) -> ServerProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _read_chunk(fd: int) -> bytes:
    try:
        return os.read(fd, 65536)
    except OSError:
        return b""


def _read_line(stream: IO[bytes], timeout: float) -> str:
    """One line from a child's stdout, or what came before ``timeout``/EOF."""
    selector = selectors.DefaultSelector()
    selector.register(stream, selectors.EVENT_READ)
    deadline = time.monotonic() + timeout
    data = b""
    try:
        while not data.endswith(b"\n"):
            left = deadline - time.monotonic()
            if left <= 0 or not selector.select(left):
                break
            chunk = os.read(stream.fileno(), 1)
            if not chunk:
                break
            data += chunk
    finally:
        selector.close()
    return data.decode(errors="replace")


def mpim_server(log_dir: Path, setup_hash: bool = True) -> ServerProcess:
    """Embedded MPIM (``mpim up --port 0``) on a fresh data directory."""
    data_dir = Path(tempfile.mkdtemp(prefix="mpim-bench-data-"))
    argv = [sys.executable, "-m", "mpim", "up", "--port", "0", "--data-dir", str(data_dir)]
    argv += ["--log-level", "WARNING"]
    env = dict(SETUP_HASH_ENV) if setup_hash else {}
    env["MPIM_GATEWAY__HTTP_PORT"] = "0"
    name = "mpim" if setup_hash else "mpim-default-hash"
    return ServerProcess(name, argv, log_dir / f"{name}.log", env, cleanup=data_dir)


def relay_server(log_dir: Path) -> ServerProcess:
    argv = [sys.executable, "-m", "mpim", "bench", "relay", "--port", "0"]
    return ServerProcess("relay", argv, log_dir / "relay.log")


class ClusterProcess:
    """A distributed MPIM started with ``mpim cluster start --config FILE``.

    Exposes what a bench needs: every gateway's address and every process's pid
    (their RSS and CPU are summed). ``stop`` runs ``mpim cluster stop``; a
    ZooKeeper the cluster tool started is left running (others may share it).
    """

    def __init__(self, config: Path, log_path: Path, fresh_store: bool = False) -> None:
        self.config = config
        self.log_path = log_path
        # Drop the store's database first: a run then starts as empty as the
        # embedded servers' fresh data directories, and neither inherits the
        # rows of earlier runs nor MariaDB's flushing of them (which went on
        # for minutes after a run and slowed the next one's disk).
        self.fresh_store = fresh_store
        self.name = "mpim-distributed"
        self.addrs: list[str] = []
        self.pids: list[int] = []
        # Every process's /metrics: the run's server-side figures (cache hit ratio).
        self.metrics_urls: list[str] = []

    def start(self) -> ClusterProcess:
        data = tomllib.loads(self.config.read_text())
        cluster = data.get("cluster", {})
        processes = cluster.get("process", [])
        host = data.get("gateway", {}).get("host", "127.0.0.1")
        self.addrs = [f"{host}:{p['port']}" for p in processes if p.get("role") == "gateway"]
        if not self.addrs:
            raise ServerError(f"{self.config} lists no gateway")
        http_host = data.get("gateway", {}).get("http_host", "127.0.0.1")
        rpc_host = data.get("rpc", {}).get("host", "127.0.0.1")
        self.metrics_urls = [
            f"http://{http_host}:{p['http_port']}"
            if "http_port" in p
            else f"http://{rpc_host}:{p['metrics_port']}"
            for p in processes
            if "http_port" in p or "metrics_port" in p
        ]
        if self.fresh_store:
            drop_database(data.get("store", {}).get("url", ""))
        self._cluster("start")
        run_dir = self.config.parent / cluster.get("run_dir", "run")
        self.pids = [
            int((run_dir / f"{p['instance_id']}.pid").read_text().split()[0]) for p in processes
        ]
        logger.info("cluster up: gateways %s, pids %s", self.addrs, self.pids)
        return self

    def stop(self) -> int | None:
        if not self.pids:
            return None
        self.pids = []
        return self._cluster("stop")

    def _cluster(self, action: str) -> int:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            code = subprocess.run(
                [sys.executable, "-m", "mpim", "cluster", action, "--config", str(self.config)],
                stdout=log,
                stderr=subprocess.STDOUT,
                timeout=300,
                check=False,
            ).returncode
        if action == "start" and code:
            raise ServerError(f"mpim cluster start failed (exit {code}; see {self.log_path})")
        return code


def command_line(argv: list[str]) -> str:
    """A command as a reader would type it: ``mpim …`` rather than the venv path,
    and ``<port>`` for the free port the server happened to get."""
    if argv[:3] == [sys.executable, "-m", "mpim"]:
        argv = ["mpim", *argv[3:]]
    shown = list(argv)
    for i, word in enumerate(shown[:-1]):
        if word == "--addr":
            host, _, port = shown[i + 1].rpartition(":")
            shown[i + 1] = f"{host}:{port if int(port) < 32768 else '<port>'}"
    return " ".join(shown)
