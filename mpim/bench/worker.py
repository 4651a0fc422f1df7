"""A worker process: its own event loop (uvloop), its own connections, one scenario.

Several workers exist so that parsing and stamping messages — Python work on
the tool's side — spreads over cores instead of capping the measured rate.
Each owns a disjoint share of the users; the parent only merges counters.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
import traceback
from collections.abc import Callable, Coroutine
from multiprocessing.connection import Connection
from typing import Any, Final

from mpim.bench.channel import (
    ERROR,
    EXPECT,
    GO,
    PROGRESS,
    READY,
    RESULT,
    SENT,
    STOP,
    WorkerChannel,
    WorkerStopped,
)
from mpim.bench.client import BenchSetupError
from mpim.bench.limits import raise_nofile_limit
from mpim.bench.scenarios.base import ScenarioWorker
from mpim.bench.spec import C2CSpec, GroupSpec, IdleSpec, LoginSpec, ScenarioSpec

logger = logging.getLogger(__name__)

PROGRESS_INTERVAL: Final = 0.25


def build_worker(index: int, spec: ScenarioSpec, shared: Any) -> ScenarioWorker:
    """The worker half of ``spec``'s scenario (imports kept local: one scenario per process)."""
    if isinstance(spec, C2CSpec):
        from mpim.bench.scenarios.c2c import C2CWorker

        return C2CWorker(index, spec)
    if isinstance(spec, GroupSpec):
        from mpim.bench.scenarios.group import GroupWorker

        return GroupWorker(index, spec, shared)
    if isinstance(spec, IdleSpec):
        from mpim.bench.scenarios.idle import IdleWorker

        return IdleWorker(index, spec)
    if isinstance(spec, LoginSpec):
        from mpim.bench.scenarios.login import LoginWorker

        return LoginWorker(index, spec)
    raise TypeError(f"unknown scenario spec {type(spec).__name__}")


def run_loop(main: Callable[[], Coroutine[Any, Any, None]]) -> None:
    """Run ``main`` on uvloop when it is installed, else on the default loop."""
    factory = None
    with contextlib.suppress(ImportError):
        import uvloop

        factory = uvloop.new_event_loop
    with asyncio.Runner(loop_factory=factory) as runner:
        runner.run(main())


def worker_main(index: int, spec: ScenarioSpec, shared: Any, conn: Connection) -> None:
    """Process entry point (must be importable for the ``spawn`` start method)."""
    logging.basicConfig(level=logging.WARNING, format=f"worker {index}: %(levelname)s %(message)s")
    raise_nofile_limit()
    try:
        run_loop(lambda: _serve(index, spec, shared, conn))
    except WorkerStopped:
        return
    except BaseException as exc:  # report anything, then exit non-zero
        with contextlib.suppress(OSError, ValueError):
            conn.send((ERROR, describe_failure(exc)))
        sys.exit(1)


def describe_failure(exc: BaseException) -> str:
    """One line for what the server or network did to us; a traceback for our own bugs."""
    leaf = exc
    while isinstance(leaf, BaseExceptionGroup) and leaf.exceptions:
        leaf = leaf.exceptions[0]
    if isinstance(leaf, OSError | TimeoutError | BenchSetupError):
        return f"{type(leaf).__name__}: {leaf}"
    return "".join(traceback.format_exception(exc))


async def _serve(index: int, spec: ScenarioSpec, shared: Any, conn: Connection) -> None:
    channel = WorkerChannel(conn)
    worker = build_worker(index, spec, shared)
    reporter = asyncio.create_task(_report_progress(channel, worker))
    try:
        channel.send(READY, await worker.setup())
        while True:
            kind, round_spec = await channel.receive(GO, STOP)
            if kind == STOP:
                break
            channel.send(SENT, await worker.run_round(round_spec))
            _, expect = await channel.receive(EXPECT)
            result = await worker.finish_round(expect)
            channel.send(PROGRESS, worker.progress())
            channel.send(RESULT, result)
    finally:
        reporter.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reporter
        await worker.close()
        channel.close()


async def _report_progress(channel: WorkerChannel, worker: ScenarioWorker) -> None:
    while True:
        await asyncio.sleep(PROGRESS_INTERVAL)
        channel.send(PROGRESS, worker.progress())
