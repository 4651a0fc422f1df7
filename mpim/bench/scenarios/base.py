"""The contract between the parent and a scenario, on both sides of the process boundary."""

from __future__ import annotations

import asyncio
import math
import resource
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from mpim.bench.results import Partial, RoundResult
from mpim.bench.spec import RoundSpec


@dataclass
class Progress:
    """Running totals a worker reports a few times a second for the progress bar."""

    setup_done: int = 0
    sent: int = 0
    acked: int = 0
    delivered: int = 0
    errors: int = 0
    connected: int = 0
    ops: int = 0

    def add(self, other: Progress) -> None:
        for name in self.__dataclass_fields__:
            setattr(self, name, getattr(self, name) + getattr(other, name))


@dataclass
class SetupInfo:
    """What a worker tells the parent once its users exist."""

    #: Global sender index → uid.
    sender_uids: dict[int, int] = field(default_factory=dict)
    setup_seconds: float = 0.0
    counts: dict[str, int] = field(default_factory=dict)


class ScenarioWorker(Protocol):
    """Runs in a worker process: owns the connections and does the sending."""

    def progress(self) -> Progress: ...

    async def setup(self) -> SetupInfo: ...

    async def run_round(self, spec: RoundSpec) -> Any:
        """Run until the round's stop condition; return what the plan merges."""

    async def finish_round(self, expect: Any) -> Partial:
        """Drain and count, given the plan's merged view of the round."""

    async def close(self) -> None: ...


@dataclass
class Samples:
    """Server figures the parent read while a round ran: ``(time_ns, value)`` pairs."""

    rss_kb: list[tuple[int, int]] = field(default_factory=list)
    cpu_s: list[tuple[int, float]] = field(default_factory=list)

    def rss_at_or_before(self, ns: int) -> int | None:
        before = [v for t, v in self.rss_kb if t <= ns]
        return before[-1] if before else None

    def peak_rss(self) -> int | None:
        return max((v for _, v in self.rss_kb), default=None)

    def cpu_percent(self, start_ns: int, end_ns: int) -> float | None:
        """Server CPU use between two instants, from the samples nearest inside them."""
        inside = [(t, v) for t, v in self.cpu_s if start_ns <= t <= end_ns]
        if len(inside) < 2 or inside[-1][0] == inside[0][0]:
            return None
        (t0, c0), (t1, c1) = inside[0], inside[-1]
        return 100.0 * (c1 - c0) / ((t1 - t0) / 1e9)


class Pump(Protocol):
    """What a plan may ask of the coordinator between phases."""

    def pump(self, seconds: float) -> None:
        """Keep servicing workers (progress, sampling) for ``seconds``."""

    def sample(self) -> None:
        """Read the server's RSS and CPU now."""

    @property
    def samples(self) -> Samples: ...


class ScenarioPlan(Protocol):
    """Runs in the parent: shapes the rounds and turns worker reports into results."""

    name: str

    def prepare(self) -> Any:
        """Parent-side setup before the workers start; its result goes to every worker."""

    def setup_total(self) -> int:
        """Setup steps across all workers (users + connections), for the progress bar."""

    def rounds(self) -> Sequence[tuple[str, float | None]]:
        """``(label, rate or None)`` for every round, in order."""

    def round_spec(
        self, round_no: int, label: str, rate: float | None, t0_ns: int
    ) -> RoundSpec: ...

    def set_setup(self, infos: Sequence[SetupInfo]) -> None: ...

    def round_progress(self, spec: RoundSpec) -> tuple[float, str, str]:
        """``(total, unit, Progress field or "time")`` for the round's progress bar."""

    def expectation(self, reports: Sequence[Any]) -> Any:
        """Merge the workers' ``run_round`` returns into what ``finish_round`` needs."""

    def between(self, pump: Pump, spec: RoundSpec) -> None:
        """Hook between ``run_round`` and ``finish_round`` (idle holds connections here)."""

    def result(self, spec: RoundSpec, merged: Partial, samples: Samples) -> RoundResult: ...

    def config(self) -> dict[str, Any]: ...


async def sleep_until(ns: int) -> None:
    """Sleep until the wall-clock instant ``ns`` (shared by all processes).

    Timers may fire up to a clock tick early, and a message stamped a hair
    before the round's start would fall out of its measurement window, so
    this sleeps again for any remainder.
    """
    for _ in range(1000):
        delay = (ns - time.time_ns()) / 1e9
        if delay <= 0:
            return
        await asyncio.sleep(delay)


async def run_bounded(limit: int, jobs: Iterable[Callable[[], Awaitable[None]]]) -> None:
    """Run ``jobs`` with at most ``limit`` in flight; the first failure cancels the rest."""
    semaphore = asyncio.Semaphore(limit)

    async def one(job: Callable[[], Awaitable[None]]) -> None:
        async with semaphore:
            await job()

    async with asyncio.TaskGroup() as group:
        for job in jobs:
            group.create_task(one(job))


def cpu_seconds() -> float:
    """CPU time this process has used (user + system), for the tool's own load figure."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def wait_until(predicate: Callable[[], bool], timeout: float, interval: float = 0.02) -> bool:
    """Poll ``predicate`` until it holds or ``timeout`` passes; return its last value.

    For conditions no single callback can signal cheaply — "every receiver has
    every acknowledged message" spans hundreds of objects — a bounded poll at
    50 Hz costs nothing next to the load being measured.
    """
    for _ in range(max(1, math.ceil(timeout / interval))):
        if predicate():
            return True
        await asyncio.sleep(interval)
    return predicate()
