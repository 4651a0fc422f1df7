"""Setup steps shared by scenarios: users, logins, and pools of held connections."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from mpim.bench.addr import Target
from mpim.bench.client import BenchConnection, BenchSetupError, connect, expect_ok
from mpim.bench.scenarios.base import run_bounded

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Account:
    username: str
    uid: int
    token: str


async def register(conn: BenchConnection, username: str, password: str) -> Account:
    """REGISTER (which also logs the connection in)."""
    fields = expect_ok(
        await conn.request(f"REGISTER {username} {password}"), f"REGISTER {username}"
    )
    return _account(username, fields)


async def login(conn: BenchConnection, username: str, password: str) -> Account:
    fields = expect_ok(await conn.request(f"LOGIN {username} {password}"), f"LOGIN {username}")
    return _account(username, fields)


def _account(username: str, fields: dict[str, str]) -> Account:
    try:
        return Account(username, int(fields["uid"]), fields.get("token", ""))
    except (KeyError, ValueError):
        raise BenchSetupError(f"no uid in the reply for {username}: {fields}") from None


async def register_users(
    targets: Sequence[Target],
    names: list[str],
    password: str,
    concurrency: int,
    on_done: Callable[[], None],
) -> list[Account]:
    """Register ``names`` on short-lived connections (spread over ``targets``).

    Returns the accounts in ``names`` order.
    """
    accounts: dict[int, Account] = {}

    def job(i: int) -> Callable[[], Awaitable[None]]:
        async def run() -> None:
            target = targets[i % len(targets)]
            conn = await connect(target.host, target.port)
            try:
                accounts[i] = await register(conn, names[i], password)
            finally:
                conn.close()
            on_done()

        return run

    await run_bounded(concurrency, [job(i) for i in range(len(names))])
    return [accounts[i] for i in range(len(names))]


class ConnectionPool:
    """Connections held open and otherwise left alone (the idle population).

    A connection that drops while held is counted, because a server that sheds
    idle clients under memory pressure must show up as an error, not as a
    lower RSS figure.
    """

    def __init__(self, targets: Sequence[Target]) -> None:
        self.targets = targets
        self.connections: list[BenchConnection] = []
        self.dropped: list[str] = []
        self.failed: list[str] = []
        self._closing = False

    async def open(
        self,
        count: int,
        tokens: list[str],
        concurrency: int,
        on_open: Callable[[], None],
    ) -> None:
        """Open ``count`` connections; with ``tokens``, AUTH each with one round-robin.

        A connection that cannot be opened or logged in is recorded in
        ``failed`` and the rest carry on: how many a server accepts before it
        refuses is itself a result.
        """

        def job(i: int) -> Callable[[], Awaitable[None]]:
            async def run() -> None:
                try:
                    target = self.targets[i % len(self.targets)]
                    conn = await connect(target.host, target.port)
                except (OSError, TimeoutError) as exc:
                    self.failed.append(f"connect: {exc!r}")
                    return
                conn.on_lost = self._lost
                self.connections.append(conn)
                if tokens:
                    try:
                        expect_ok(await conn.request(f"AUTH {tokens[i % len(tokens)]}"), "AUTH")
                    except (BenchSetupError, ConnectionError, TimeoutError) as exc:
                        self.failed.append(str(exc))
                        return
                on_open()

            return run

        await run_bounded(concurrency, [job(i) for i in range(count)])

    def _lost(self, reason: str) -> None:
        if not self._closing:
            self.dropped.append(reason)

    @property
    def alive(self) -> int:
        return sum(1 for conn in self.connections if not conn.closed)

    async def ping_all(self, concurrency: int) -> int:
        """PING every held connection; return how many answered ``+OK``."""
        ok = 0

        def job(conn: BenchConnection) -> Callable[[], Awaitable[None]]:
            async def run() -> None:
                nonlocal ok
                try:
                    if (await conn.request("PING", timeout=30.0)).startswith(b"+OK"):
                        ok += 1
                except (ConnectionError, TimeoutError):
                    pass

            return run

        await run_bounded(concurrency, [job(c) for c in self.connections])
        return ok

    def close(self) -> None:
        self._closing = True
        for conn in self.connections:
            conn.close()
        self.connections.clear()
