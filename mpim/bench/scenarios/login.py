"""login: password LOGIN per second, then token AUTH per second, closed loop.

LOGIN is meant to be slow — every one verifies an argon2id hash — so its
figure is read against the server's hash parameters; AUTH checks a token and
is the path reconnecting clients take, so it must be fast.
"""

from __future__ import annotations

import logging
import time
from array import array
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict
from typing import Any

from mpim.bench.client import BenchConnection, connect
from mpim.bench.histogram import Histogram
from mpim.bench.results import Partial, RoundResult
from mpim.bench.scenarios.accounts import Account, register_users
from mpim.bench.scenarios.base import (
    Progress,
    Pump,
    Samples,
    SetupInfo,
    cpu_seconds,
    run_bounded,
    sleep_until,
    wait_until,
)
from mpim.bench.spec import LoginSpec, RoundSpec, indices_for, split_evenly

logger = logging.getLogger(__name__)


class _OpLoop:
    """One connection issuing one command at a time until a deadline."""

    __slots__ = (
        "conn",
        "deadline",
        "done",
        "errors",
        "inflight",
        "latencies",
        "lines",
        "measure_start",
        "ok",
        "turn",
    )

    def __init__(
        self, conn: BenchConnection, lines: list[bytes], measure_start: int, deadline: int
    ) -> None:
        self.conn = conn
        self.lines = lines
        self.measure_start = measure_start
        self.deadline = deadline
        self.done = 0
        self.turn = 0
        self.ok = 0
        self.errors: list[str] = []
        self.latencies: array[int] = array("q")
        self.inflight = False

    def start(self) -> None:
        self._next()

    def _next(self) -> None:
        now = time.time_ns()
        if now >= self.deadline:
            self.inflight = False
            return
        line = self.lines[self.turn % len(self.lines)]
        self.turn += 1
        self.inflight = self.conn.send(line, self._on_reply, now, 0)

    def _on_reply(self, reply: bytes | None, now: int, sent_ns: int, _: int) -> None:
        if reply is None:
            self.inflight = False
            self.errors.append("connection lost")
            return
        self.done += 1
        if reply.startswith(b"+OK"):
            if sent_ns >= self.measure_start:
                self.ok += 1
                self.latencies.append((now - sent_ns) // 1000)
        else:
            self.errors.append(reply.decode(errors="replace")[:200])
        self._next()


class LoginWorker:
    def __init__(self, index: int, spec: LoginSpec) -> None:
        self.index = index
        self.spec = spec
        self.accounts: list[Account] = []
        self.connections: list[BenchConnection] = []
        self.loops: list[_OpLoop] = []
        self.setup_done = 0
        self.partial = Partial()
        self._done_ops = 0

    def progress(self) -> Progress:
        return Progress(
            setup_done=self.setup_done, ops=self._done_ops + sum(x.done for x in self.loops)
        )

    async def setup(self) -> SetupInfo:
        started = time.monotonic()
        common = self.spec.common
        names = [
            common.username("l", i)
            for i in indices_for(self.index, common.workers, self.spec.users)
        ]

        def done() -> None:
            self.setup_done += 1

        concurrency = max(1, common.setup_concurrency // common.workers)
        self.accounts = await register_users(
            common.targets, names, common.password, concurrency, done
        )
        registered_in = time.monotonic() - started
        count = split_evenly(self.spec.concurrency, common.workers)[self.index]

        def opener(i: int) -> Callable[[], Awaitable[None]]:
            async def open_one() -> None:
                target = common.target_for(i)
                self.connections.append(await connect(target.host, target.port))

            return open_one

        await run_bounded(concurrency, [opener(i) for i in range(count)])
        return SetupInfo(
            setup_seconds=time.monotonic() - started,
            counts={"registered": len(self.accounts), "register_ms": int(registered_in * 1000)},
        )

    async def _phase(
        self, name: str, lines: list[bytes], start_ns: int, measure_ns: int, end_ns: int
    ) -> None:
        """Run one phase; operations sent from ``measure_ns`` on are counted."""
        await sleep_until(start_ns)
        self.loops = [
            _OpLoop(conn, lines[i:] + lines[:i], measure_ns, end_ns)
            for i, conn in enumerate(self.connections)
        ]
        for loop in self.loops:
            loop.start()
        late = (end_ns - time.time_ns()) / 1e9 + self.spec.common.ack_timeout
        await wait_until(lambda: not any(loop.inflight for loop in self.loops), late)
        latencies: array[int] = array("q")
        for loop in self.loops:
            self.partial.counts[f"{name}_ok"] += loop.ok
            latencies.extend(loop.latencies)
            for error in loop.errors:
                self.partial.counts[f"{name}_errors"] += 1
                self.partial.note_error(f"{name}: {error}")
        self.partial.hists[name] = Histogram.of(latencies)
        self._done_ops += sum(loop.done for loop in self.loops)
        self.loops = []

    async def run_round(self, spec: RoundSpec) -> None:
        self.partial = Partial()
        self._done_ops = 0
        cpu_start = cpu_seconds()
        password = self.spec.common.password
        logins = [f"LOGIN {a.username} {password}\n".encode() for a in self.accounts]
        auths = [f"AUTH {a.token}\n".encode() for a in self.accounts]
        warm, half = spec.warmup_ns, spec.warmup_ns + spec.duration_ns
        t0 = spec.t0_ns
        await self._phase("login", logins, t0, t0 + warm, t0 + half)
        await self._phase("auth", auths, t0 + half, t0 + half + warm, t0 + 2 * half)
        self.partial.cpu_seconds = cpu_seconds() - cpu_start

    async def finish_round(self, expect: Any) -> Partial:
        return self.partial

    async def close(self) -> None:
        for conn in self.connections:
            conn.close()


class LoginPlan:
    name = "login"

    def __init__(self, spec: LoginSpec) -> None:
        self.spec = spec
        self.common = spec.common
        self.register_rate: float | None = None

    def prepare(self) -> Any:
        return None

    def setup_total(self) -> int:
        return self.spec.users

    def rounds(self) -> Sequence[tuple[str, float | None]]:
        return [(f"{self.spec.concurrency} connections, closed loop", None)] * self.common.repeat

    def set_setup(self, infos: Sequence[SetupInfo]) -> None:
        registered = sum(info.counts.get("registered", 0) for info in infos)
        slowest = max((info.counts.get("register_ms", 0) for info in infos), default=0)
        self.register_rate = registered / (slowest / 1000) if slowest else None

    def round_spec(self, round_no: int, label: str, rate: float | None, t0_ns: int) -> RoundSpec:
        return RoundSpec(
            round_no, label, t0_ns, int(self.common.warmup * 1e9), int(self.common.duration * 1e9)
        )

    def round_progress(self, spec: RoundSpec) -> tuple[float, str, str]:
        return 2 * (spec.warmup_ns + spec.duration_ns) / 1e9, "s", "time"

    def expectation(self, reports: Sequence[Any]) -> Any:
        return None

    def between(self, pump: Pump, spec: RoundSpec) -> None:
        return None

    def result(self, spec: RoundSpec, merged: Partial, samples: Samples) -> RoundResult:
        c = merged.counts
        phase = spec.duration_ns / 1e9
        counts = {
            k: int(c[k]) for k in ("login_ok", "login_errors", "auth_ok", "auth_errors", "errors")
        }
        half = spec.warmup_ns + spec.duration_ns
        login_from = spec.t0_ns + spec.warmup_ns
        auth_from = login_from + half
        metrics: dict[str, float | None] = {
            "login_per_s": c["login_ok"] / phase,
            "auth_per_s": c["auth_ok"] / phase,
            "register_per_s": self.register_rate,
            "server_cpu_pct_login": samples.cpu_percent(login_from, login_from + spec.duration_ns),
            "server_cpu_pct_auth": samples.cpu_percent(auth_from, auth_from + spec.duration_ns),
            "tool_cpu_pct": 100.0 * merged.cpu_seconds / (2 * half / 1e9),
        }
        latency: dict[str, dict[str, float]] = {
            n: merged.hists[n].summary_ms() for n in ("login", "auth") if n in merged.hists
        }
        return RoundResult(spec.label, counts, metrics, latency, list(merged.error_samples))

    def config(self) -> dict[str, Any]:
        out = asdict(self.spec)
        out.pop("common")
        return out
