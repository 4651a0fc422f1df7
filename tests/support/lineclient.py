"""A raw protocol client for tests: exact bytes in, exact lines out."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from dataclasses import dataclass

DEFAULT_TIMEOUT = 10.0
_names = itertools.count(1)


def unique_name(prefix: str = "u") -> str:
    """A username no other test in this run uses."""
    return f"{prefix}{next(_names)}"


@dataclass
class Account:
    uid: int
    token: str
    username: str
    password: str


class LineClient:
    """Speaks the line protocol over a real TCP connection."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.greeting = ""
        self.account: Account | None = None

    @classmethod
    async def connect(cls, host: str, port: int) -> LineClient:
        reader, writer = await asyncio.open_connection(host, port, limit=1 << 22)
        client = cls(reader, writer)
        client.greeting = await client.read_line()
        return client

    async def send_raw(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def send(self, line: str) -> None:
        await self.send_raw(line.encode() + b"\n")

    async def read_line(self, timeout: float = DEFAULT_TIMEOUT) -> str:
        raw = await asyncio.wait_for(self.reader.readline(), timeout)
        if not raw:
            raise ConnectionError("connection closed by server")
        return raw.decode().rstrip("\n")

    async def cmd(self, line: str, timeout: float = DEFAULT_TIMEOUT) -> str:
        """Send one command and return its single reply line."""
        await self.send(line)
        return await self.read_line(timeout)

    async def cmd_multi(self, line: str, timeout: float = DEFAULT_TIMEOUT) -> tuple[list[str], str]:
        """Send PULL/SYNC/HISTORY; return (message lines, final status line)."""
        await self.send(line)
        return await self.read_multi(timeout)

    async def read_multi(self, timeout: float = DEFAULT_TIMEOUT) -> tuple[list[str], str]:
        lines: list[str] = []
        while True:
            line = await self.read_line(timeout)
            if line.startswith("+") or line.startswith("-"):
                return lines, line
            lines.append(line)

    async def expect_silence(self, seconds: float = 0.3) -> None:
        """Assert nothing arrives for a while (used sparingly, for negatives)."""
        try:
            line = await asyncio.wait_for(self.reader.readline(), seconds)
        except TimeoutError:
            return
        raise AssertionError(f"unexpected line: {line!r}")

    async def expect_closed(self, timeout: float = DEFAULT_TIMEOUT) -> list[str]:
        """Read until EOF; return whatever lines came first."""
        lines: list[str] = []
        while True:
            raw = await asyncio.wait_for(self.reader.readline(), timeout)
            if not raw:
                return lines
            lines.append(raw.decode(errors="replace").rstrip("\n"))

    async def register(self, username: str | None = None, password: str = "secret1") -> Account:
        username = username or unique_name()
        reply = await self.cmd(f"REGISTER {username} {password}")
        assert reply.startswith("+OK uid="), reply
        fields = dict(part.split("=", 1) for part in reply[4:].split())
        self.account = Account(int(fields["uid"]), fields["token"], username, password)
        return self.account

    async def login(self, username: str, password: str) -> str:
        return await self.cmd(f"LOGIN {username} {password}")

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(ConnectionError, OSError):
            await self.writer.wait_closed()
