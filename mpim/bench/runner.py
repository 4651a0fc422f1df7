"""Run one benchmark: prepare, spawn workers, drive every round, merge, summarize.

This is the only place that knows the order of phases::

    prepare (parent) → setup (workers) → for each round:
        go → run → sent → [plan.between] → expect → drain → result
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Final

from mpim.bench.channel import EXPECT, GO, READY, RESULT, SENT, STOP
from mpim.bench.coordinator import BenchAborted, Coordinator
from mpim.bench.limits import raise_nofile_limit
from mpim.bench.procinfo import probe_for
from mpim.bench.progress import ProgressView
from mpim.bench.results import Partial, RoundResult, merge_partials, summarize_by_label
from mpim.bench.scenarios.base import ScenarioPlan, SetupInfo
from mpim.bench.server_metrics import round_figures
from mpim.bench.spec import C2CSpec, GroupSpec, IdleSpec, LoginSpec, ScenarioSpec
from mpim.metrics.scrape import Scrape

logger = logging.getLogger(__name__)

#: Workers start a round together this long after the parent says go.
START_DELAY: Final = 0.3
RESULT_VERSION: Final = 1


@dataclass
class BenchResult:
    """Everything one ``mpim bench`` invocation measured."""

    scenario: str
    target: str
    run_id: str
    config: dict[str, Any]
    started_at: str
    rounds: list[RoundResult] = field(default_factory=list)
    summary: list[RoundResult] = field(default_factory=list)
    setup_seconds: float = 0.0
    server_pids: list[int] = field(default_factory=list)
    aborted: str | None = None

    def problems(self) -> list[str]:
        found = [f"{r.label}: {p}" for r in self.rounds for p in r.problems()]
        if self.aborted:
            found.insert(0, f"aborted: {self.aborted}")
        return found

    def to_json(self) -> dict[str, Any]:
        return {
            "version": RESULT_VERSION,
            "tool": "mpim bench",
            "scenario": self.scenario,
            "target": self.target,
            "run_id": self.run_id,
            "started_at": self.started_at,
            "config": self.config,
            "server_pids": self.server_pids,
            "setup_seconds": self.setup_seconds,
            "aborted": self.aborted,
            "ok": not self.problems(),
            "problems": self.problems(),
            "summary": [r.to_json() for r in self.summary],
            "rounds": [r.to_json() for r in self.rounds],
        }


def make_plan(spec: ScenarioSpec) -> ScenarioPlan:
    if isinstance(spec, C2CSpec):
        from mpim.bench.scenarios.c2c import C2CPlan

        return C2CPlan(spec)
    if isinstance(spec, GroupSpec):
        from mpim.bench.scenarios.group import GroupPlan

        return GroupPlan(spec)
    if isinstance(spec, IdleSpec):
        from mpim.bench.scenarios.idle import IdlePlan

        return IdlePlan(spec)
    if isinstance(spec, LoginSpec):
        from mpim.bench.scenarios.login import LoginPlan

        return LoginPlan(spec)
    raise TypeError(f"unknown scenario spec {type(spec).__name__}")


def _config(spec: ScenarioSpec, plan: ScenarioPlan) -> dict[str, Any]:
    common = asdict(spec.common)
    common["target"] = [str(t) for t in spec.common.targets]
    common.pop("more_targets")
    return {"common": common, "scenario": plan.config()}


def run_scenario(
    spec: ScenarioSpec, scrape: Callable[[], Scrape | None] | None = None
) -> BenchResult:
    """Run ``spec`` to completion (or abort) and return what was measured.

    ``scrape`` reads the server's ``/metrics``: then each round also says
    what the server counted during it (its slow commits, say).
    Never raises for a failure of the server under test: a worker error, a
    dead worker or an overrun becomes ``BenchResult.aborted``.
    """
    spec.validate()
    raise_nofile_limit()
    common = spec.common
    plan = make_plan(spec)
    probe = probe_for([t.port for t in common.targets], common.server_pids)
    result = BenchResult(
        scenario=spec.name,
        target=",".join(str(t) for t in common.targets),
        run_id=common.run_id,
        config=_config(spec, plan),
        started_at=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        server_pids=list(probe.pids) if probe else [],
    )
    deadline = time.monotonic() + common.max_seconds
    view = ProgressView(common.progress)
    started = time.monotonic()
    try:
        shared = plan.prepare()
    except (OSError, TimeoutError, RuntimeError) as exc:
        result.aborted = f"preparing {spec.name}: {exc}"
        return result
    coordinator = Coordinator(spec, shared, probe, view, deadline)
    graceful = False
    try:
        view.start(f"{spec.name} setup", plan.setup_total(), "steps", "setup_done")
        infos: list[SetupInfo] = coordinator.gather(READY)
        plan.set_setup(infos)
        result.setup_seconds = time.monotonic() - started
        if common.ready_file:
            Path(common.ready_file).touch()
        for round_no, (label, rate) in enumerate(plan.rounds(), start=1):
            result.rounds.append(_run_round(coordinator, plan, round_no, label, rate, view, scrape))
        coordinator.broadcast(STOP)
        graceful = True
    except BenchAborted as exc:
        result.aborted = str(exc)
        logger.error("benchmark aborted: %s", exc)
    finally:
        view.finish()
        coordinator.close(graceful)
    if result.rounds:
        result.summary = summarize_by_label(result.rounds)
    return result


def _run_round(
    coordinator: Coordinator,
    plan: ScenarioPlan,
    round_no: int,
    label: str,
    rate: float | None,
    view: ProgressView,
    scrape: Callable[[], Scrape | None] | None,
) -> RoundResult:
    before = scrape() if scrape is not None else None
    coordinator.reset_samples()
    coordinator.sample()
    t0 = time.time_ns() + int(START_DELAY * 1e9)
    spec = plan.round_spec(round_no, label, rate, t0)
    total, unit, follow = plan.round_progress(spec)
    view.start(f"round {round_no} {label}", total, unit, follow)
    coordinator.broadcast(GO, spec)
    reports = coordinator.gather(SENT)
    plan.between(coordinator, spec)
    coordinator.broadcast(EXPECT, plan.expectation(reports))
    partials: list[Partial] = coordinator.gather(RESULT)
    coordinator.sample()
    view.finish()
    result = plan.result(spec, merge_partials(partials), coordinator.samples)
    after = scrape() if before is not None and scrape is not None else None
    if before is not None and after is not None:
        result.metrics.update(round_figures(before, after))
    return result
