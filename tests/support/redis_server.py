"""Helpers for tests against Redis: a private redis-server to break, and polling.

``ThrowawayRedis`` runs a ``redis-server`` on a free port that a test can
kill, freeze, save and restart, so outages in tests are real ones.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import NoReturn

import pytest
from redis.asyncio import Redis

from mpim.config import RedisSettings
from mpim.redisconn import redis_client
from tests.support.ports import free_port

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
REDIS_URL = os.environ.get("MPIM_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
# Short, so outage tests run fast; real deployments use RedisSettings' default.
TEST_SOCKET_TIMEOUT = 0.3


def unavailable(reason: str) -> NoReturn:
    """Fail under CI, skip elsewhere."""
    if IN_CI:
        pytest.fail(f"{reason} (CI=true: Redis tests must run)")
    pytest.skip(reason)


async def wait_until(
    condition: Callable[[], Awaitable[bool]], timeout: float = 10.0, interval: float = 0.02
) -> None:
    """Poll ``condition`` until it holds; fail the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not await condition():
        if time.monotonic() > deadline:
            pytest.fail(f"condition not met within {timeout}s")
        await asyncio.sleep(interval)


@contextlib.asynccontextmanager
async def connected(settings: RedisSettings) -> AsyncIterator[Redis]:
    """A plain client for looking at what an adapter wrote (closed on exit)."""
    client = redis_client(settings)
    try:
        yield client
    finally:
        await client.aclose()


async def delete_prefix(client: Redis, prefix: str) -> None:
    pattern = prefix.replace("*", "\\*").replace("?", "\\?") + "*"
    names = [name async for name in client.scan_iter(match=pattern, count=1000)]
    if names:
        await client.unlink(*names)


async def _ping(host: str, port: int, timeout: float = 1.0) -> bool:
    """A raw PING: True once the server answers +PONG (not -LOADING)."""
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
    except (OSError, TimeoutError):
        return False
    try:
        writer.write(b"PING\r\n")
        line = await asyncio.wait_for(reader.readline(), timeout)
        return line.startswith(b"+PONG")
    except (OSError, TimeoutError):
        return False
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


class ThrowawayRedis:
    """A private redis-server this test may kill, freeze and restart.

    Data survives a restart only through ``shutdown(save=True)`` (an RDB in
    the test's directory), which is how a test makes Redis come back with
    old values after an outage.
    """

    def __init__(self, binary: str, directory: Path) -> None:
        self._binary = binary
        self._dir = directory
        self.port = free_port()
        self._proc: asyncio.subprocess.Process | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def settings(self, key_prefix: str) -> RedisSettings:
        return RedisSettings(
            url=self.url, key_prefix=key_prefix, socket_timeout_seconds=TEST_SOCKET_TIMEOUT
        )

    async def start(self) -> None:
        assert self._proc is None, "already running"
        self._proc = await asyncio.create_subprocess_exec(
            self._binary,
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--dir", str(self._dir),
            "--dbfilename", "dump.rdb",
            "--save", "",
            "--appendonly", "no",
            "--logfile", str(self._dir / "redis.log"),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + 10
        while not await _ping("127.0.0.1", self.port):
            if self._proc.returncode is not None or time.monotonic() > deadline:
                await self.kill()
                pytest.fail(f"throwaway redis-server did not start; see {self._dir}/redis.log")
            await asyncio.sleep(0.02)

    async def kill(self) -> None:
        """SIGKILL: the server and its data are gone at once."""
        if self._proc is not None:
            if self._proc.returncode is None:
                self._proc.send_signal(signal.SIGCONT)
                self._proc.kill()
            await asyncio.wait_for(self._proc.wait(), 10)
            self._proc = None

    async def shutdown(self, *, save: bool) -> None:
        """A clean stop; with ``save`` the data comes back at the next start."""
        assert self._proc is not None
        reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
        writer.write(b"SHUTDOWN SAVE\r\n" if save else b"SHUTDOWN NOSAVE\r\n")
        await reader.read()  # the server closes the connection as it exits
        writer.close()
        await writer.wait_closed()
        await asyncio.wait_for(self._proc.wait(), 10)
        self._proc = None

    def freeze(self) -> None:
        """SIGSTOP: connections open, nothing answers (requests time out)."""
        assert self._proc is not None
        self._proc.send_signal(signal.SIGSTOP)

    def thaw(self) -> None:
        assert self._proc is not None
        self._proc.send_signal(signal.SIGCONT)


def records(caplog: pytest.LogCaptureFixture, logger_name: str, level: str) -> list[str]:
    return [
        r.getMessage() for r in caplog.records if r.name == logger_name and r.levelname == level
    ]
