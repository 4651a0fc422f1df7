"""Run ``mpim up`` as a real child process and wait for it to listen."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

_LISTENING = re.compile(r"listening on (\S+):(\d+)")
_WEB = re.compile(r"web client http://[^:/]+:(\d+)/")


class MpimProcess:
    def __init__(
        self, proc: asyncio.subprocess.Process, host: str, port: int, http_port: int | None
    ) -> None:
        self.proc = proc
        self.host = host
        self.port = port
        self.http_port = http_port  # WebSocket and web client; None when off

    @classmethod
    async def start(cls, data_dir: Path, port: int = 0, *extra: str) -> MpimProcess:
        env = dict(os.environ)
        env.setdefault("MPIM_SECURITY__ARGON2_MEMORY_KIB", "256")
        env.setdefault("MPIM_SECURITY__ARGON2_TIME_COST", "1")
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "mpim",
            "up",
            "--port",
            str(port),
            "--data-dir",
            str(data_dir),
            "--http-port",
            "0",
            *extra,
            stdout=asyncio.subprocess.PIPE,
            env=env,
        )
        assert proc.stdout is not None
        line = (await asyncio.wait_for(proc.stdout.readline(), 30)).decode()
        match = _LISTENING.search(line)
        if match is None:
            proc.kill()
            await proc.wait()
            raise RuntimeError(f"mpim up did not report listening: {line!r}")
        web = _WEB.search(line)
        return cls(proc, match.group(1), int(match.group(2)), int(web[1]) if web else None)

    async def stop(self, sig: int = signal.SIGTERM, timeout: float = 10.0) -> int:
        if self.proc.returncode is None:
            self.proc.send_signal(sig)
        return await asyncio.wait_for(self.proc.wait(), timeout)

    async def kill(self) -> None:
        if self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.kill()
        await self.proc.wait()


@pytest.fixture
async def process(tmp_path: Path) -> AsyncIterator[MpimProcess]:
    """``mpim up`` in a fresh data directory, killed at teardown."""
    proc = await MpimProcess.start(tmp_path / "data")
    yield proc
    await proc.kill()
