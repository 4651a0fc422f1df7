"""idle: hold N connections (logged in with AUTH, or not) and weigh them in server RSS.

Logged-in connections share a small set of users (each user on several
"devices"): registering 19,000 users would spend minutes in password hashing
that has nothing to do with what a held connection costs.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import asdict
from typing import Any

from mpim.bench.results import Partial, RoundResult
from mpim.bench.scenarios.accounts import ConnectionPool, register_users
from mpim.bench.scenarios.base import (
    Progress,
    Pump,
    Samples,
    SetupInfo,
    cpu_seconds,
    sleep_until,
)
from mpim.bench.spec import IdleSpec, RoundSpec, indices_for, split_evenly

logger = logging.getLogger(__name__)


class IdleWorker:
    def __init__(self, index: int, spec: IdleSpec) -> None:
        self.index = index
        self.spec = spec
        self.tokens: list[str] = []
        self.pool: ConnectionPool | None = None
        self.setup_done = 0
        self.opened = 0
        self._cpu_start = 0.0

    def _concurrency(self) -> int:
        return max(1, self.spec.common.setup_concurrency // self.spec.common.workers)

    def progress(self) -> Progress:
        return Progress(setup_done=self.setup_done, connected=self.opened)

    async def setup(self) -> SetupInfo:
        started = time.monotonic()
        common = self.spec.common
        if self.spec.login:
            names = [
                common.username("u", i)
                for i in indices_for(self.index, common.workers, self.spec.users)
            ]

            def done() -> None:
                self.setup_done += 1

            accounts = await register_users(
                common.targets, names, common.password, self._concurrency(), done
            )
            self.tokens = [a.token for a in accounts]
        return SetupInfo(setup_seconds=time.monotonic() - started)

    async def run_round(self, spec: RoundSpec) -> dict[str, int]:
        common = self.spec.common
        self._cpu_start = cpu_seconds()
        self.opened = 0
        self.pool = ConnectionPool(common.targets)
        await sleep_until(spec.t0_ns)
        count = split_evenly(self.spec.connections, common.workers)[self.index]

        def opened() -> None:
            self.opened += 1

        await self.pool.open(count, self.tokens, self._concurrency(), opened)
        return {
            "connected": self.opened,
            "failed": len(self.pool.failed),
            "done_ns": time.time_ns(),
        }

    async def finish_round(self, expect: Any) -> Partial:
        pool = self.pool
        assert pool is not None
        part = Partial()
        alive = pool.alive
        ping_ok = await pool.ping_all(self._concurrency() * 4) if self.spec.ping else alive
        part.counts.update(
            connected=self.opened,
            failed=len(pool.failed),
            dropped=len(pool.dropped),
            alive=alive,
            ping_ok=ping_ok,
        )
        for reason in pool.failed + pool.dropped:
            part.note_error(reason)
        if self.spec.ping and ping_ok < alive:
            part.note_error(f"{alive - ping_ok} held connections did not answer PING")
        pool.close()
        self.pool = None
        part.cpu_seconds = cpu_seconds() - self._cpu_start
        return part

    async def close(self) -> None:
        if self.pool is not None:
            self.pool.close()


class IdlePlan:
    name = "idle"

    def __init__(self, spec: IdleSpec) -> None:
        self.spec = spec
        self.common = spec.common
        self._held_at = 0
        self._connected_at = 0

    def prepare(self) -> Any:
        return None

    def setup_total(self) -> int:
        return self.spec.users if self.spec.login else 0

    def rounds(self) -> Sequence[tuple[str, float | None]]:
        kind = "logged in" if self.spec.login else "not logged in"
        return [(f"{self.spec.connections} connections, {kind}", None)] * self.common.repeat

    def set_setup(self, infos: Sequence[SetupInfo]) -> None:
        return None

    def round_spec(self, round_no: int, label: str, rate: float | None, t0_ns: int) -> RoundSpec:
        return RoundSpec(round_no, label, t0_ns, 0, int(self.spec.hold * 1e9))

    def round_progress(self, spec: RoundSpec) -> tuple[float, str, str]:
        return float(self.spec.connections), "conn", "connected"

    def expectation(self, reports: Sequence[Any]) -> Any:
        self._connected_at = max(int(report["done_ns"]) for report in reports)
        return None

    def between(self, pump: Pump, spec: RoundSpec) -> None:
        """All connections are open: let the server settle, then weigh them."""
        pump.sample()
        pump.pump(self.spec.hold)
        pump.sample()
        self._held_at = time.time_ns()

    def result(self, spec: RoundSpec, merged: Partial, samples: Samples) -> RoundResult:
        c = merged.counts
        before = samples.rss_at_or_before(spec.t0_ns)
        held = samples.rss_at_or_before(self._held_at)
        connected = int(c["connected"])
        per_conn = (held - before) * 1024 / connected if before and held and connected else None
        counts = {
            k: int(c[k]) for k in ("connected", "failed", "dropped", "alive", "ping_ok", "errors")
        }
        opening = (self._connected_at - spec.t0_ns) / 1e9
        metrics: dict[str, float | None] = {
            "connections": float(connected),
            "connections_per_s": connected / opening if opening > 0 else None,
            "server_rss_mb_before": before / 1024 if before else None,
            "server_rss_mb_held": held / 1024 if held else None,
            "rss_bytes_per_connection": per_conn,
        }
        return RoundResult(spec.label, counts, metrics, {}, list(merged.error_samples))

    def config(self) -> dict[str, Any]:
        out = asdict(self.spec)
        out.pop("common")
        return out
