"""A real ZooKeeper for tests: one server per session on a free port, one chroot per test.

Load as a plugin (``pytest_plugins = ["tests.support.zookeeper"]`` in
tests/conftest.py). Fixtures:

- ``zookeeper_server`` (session): a standalone server started with
  scripts/zookeeper.sh on a free port, data under its own /tmp directory;
  stopped and removed at the end of the session. It can be stopped,
  restarted and wiped by resilience tests.
- ``zookeeper`` (function): that server plus a unique chroot
  ``/mpimtest/<hex>``, so tests never see each other's nodes.

If ZooKeeper cannot be started, a test that needs it FAILS in CI
(``CI=true``) -- a CI run must never pass by skipping the real thing -- and
is skipped with the reason elsewhere (a laptop without Debian's package).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

import pytest

from mpim.config import ZooKeeperSettings
from tests.support.ports import free_port

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "zookeeper.sh"
JAR = Path(os.environ.get("ZOOKEEPER_JAR", "/usr/share/java/zookeeper.jar"))
# Installing the Debian package can take a minute on a cold CI machine.
INSTALL_TIMEOUT = 600.0
START_TIMEOUT = 90.0


class ZooKeeperUnavailable(Exception):
    """The script could not install or start ZooKeeper; the message says why."""


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def unavailable(reason: str) -> NoReturn:
    """Fail in CI, skip elsewhere."""
    if in_ci():
        pytest.fail(f"ZooKeeper is required in CI: {reason}", pytrace=False)
    pytest.skip(f"ZooKeeper not available: {reason}")


def _script(*args: str, timeout: float) -> str:
    try:
        done = subprocess.run(
            ["bash", str(SCRIPT), *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise ZooKeeperUnavailable(f"zookeeper.sh {' '.join(args)} took over {timeout}s") from None
    output = (done.stdout + done.stderr).strip()
    if done.returncode != 0:
        raise ZooKeeperUnavailable(f"zookeeper.sh {' '.join(args)} failed: {output}")
    return output


@dataclass
class ZooKeeperServer:
    """A standalone server this test session owns: same port and directory across restarts."""

    port: int
    directory: Path

    @property
    def hosts(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> None:
        """Start (idempotent) and wait until it answers ``ruok``."""
        _script("start", str(self.port), str(self.directory), timeout=START_TIMEOUT)

    def stop(self) -> None:
        _script("stop", str(self.port), str(self.directory), timeout=30.0)

    def wipe(self) -> None:
        """Forget every node and session; only while stopped (the next start begins empty)."""
        shutil.rmtree(self.directory / "data", ignore_errors=True)

    async def stop_async(self) -> None:
        await asyncio.to_thread(self.stop)

    async def start_async(self) -> None:
        await asyncio.to_thread(self.start)

    async def restart(self, *, wipe: bool = False) -> None:
        """Stop and start on the same port and data dir; ``wipe`` makes it a fresh server.

        Keeping the data, clients resume their sessions (SUSPENDED, then
        CONNECTED); wiping it, their sessions are unknown, so they expire
        (LOST) and must re-create their ephemeral nodes.
        """
        await self.stop_async()
        if wipe:
            self.wipe()
        await self.start_async()


@dataclass
class ZooKeeperChroot:
    """The session's server seen through this test's own chroot."""

    server: ZooKeeperServer
    chroot: str

    @property
    def hosts(self) -> str:
        return self.server.hosts

    def settings(self, session_timeout_seconds: float = 10.0) -> ZooKeeperSettings:
        return ZooKeeperSettings(
            hosts=self.hosts, chroot=self.chroot, session_timeout_seconds=session_timeout_seconds
        )


def pytest_collection_finish(session: pytest.Session) -> None:
    """Install the package before any test runs, so its minutes are not charged to a
    test's timeout. Failures are left to the fixture, which reports them per test."""
    if JAR.exists() or session.config.option.collectonly:
        return
    if any("zookeeper_server" in getattr(item, "fixturenames", ()) for item in session.items):
        with contextlib.suppress(ZooKeeperUnavailable):
            _script("install", timeout=INSTALL_TIMEOUT)


@pytest.fixture(scope="session")
def zookeeper_server() -> Iterator[ZooKeeperServer]:
    directory = Path(tempfile.mkdtemp(prefix="mpim-zk-", dir="/tmp"))
    server = ZooKeeperServer(free_port(), directory)
    try:
        server.start()
    except ZooKeeperUnavailable as exc:
        shutil.rmtree(directory, ignore_errors=True)
        unavailable(str(exc))
    yield server
    try:
        server.stop()
    finally:
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture
def zookeeper(zookeeper_server: ZooKeeperServer) -> ZooKeeperChroot:
    # A resilience test that failed half-way may have left the server stopped.
    try:
        zookeeper_server.start()
    except ZooKeeperUnavailable as exc:
        unavailable(str(exc))
    return ZooKeeperChroot(zookeeper_server, f"/mpimtest/{uuid.uuid4().hex}")
