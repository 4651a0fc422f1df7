"""The parent's side of the workers: spawn, wait for each phase, broadcast, tear down.

Waiting is where the parent also does its own measuring: every tick it folds
the workers' progress into the bar and samples the server's RSS and CPU, so
the samples line up with the rounds without any thread.
"""

from __future__ import annotations

import logging
import multiprocessing
import time
from collections.abc import Sequence
from multiprocessing.connection import Connection, wait
from multiprocessing.process import BaseProcess
from typing import Any, Final

from mpim.bench.channel import ERROR, PROGRESS
from mpim.bench.procinfo import ServerProbe
from mpim.bench.progress import ProgressView
from mpim.bench.scenarios.base import Progress, Samples
from mpim.bench.spec import ScenarioSpec
from mpim.bench.worker import worker_main

logger = logging.getLogger(__name__)

TICK: Final = 0.1
JOIN_TIMEOUT: Final = 10.0


class BenchAborted(RuntimeError):
    """A worker failed or died, or the run overran ``--max-seconds``."""


class Coordinator:
    """Owns the worker processes for one benchmark run."""

    def __init__(
        self,
        spec: ScenarioSpec,
        shared: Any,
        probe: ServerProbe | None,
        view: ProgressView,
        deadline: float,
    ) -> None:
        self.spec = spec
        self.probe = probe
        self.view = view
        self.deadline = deadline
        self.samples = Samples()
        self._sampled_at = -TICK  # monotonic time of the last sample
        self._progress: dict[int, Progress] = {}
        ctx = multiprocessing.get_context("spawn")
        self._conns: list[Connection] = []
        self._procs: list[BaseProcess] = []
        for index in range(spec.common.workers):
            parent_end, child_end = ctx.Pipe(duplex=True)
            proc = ctx.Process(
                target=worker_main,
                args=(index, spec, shared, child_end),
                name=f"mpim-bench-worker-{index}",
                daemon=True,
            )
            proc.start()
            child_end.close()
            self._conns.append(parent_end)
            self._procs.append(proc)

    # -- phases ------------------------------------------------------------------

    def gather(self, kind: str) -> list[Any]:
        """Wait until every worker has sent ``kind``; return the payloads by worker."""
        got: dict[int, Any] = {}
        while len(got) < len(self._conns):
            self._check_deadline(f"waiting for {kind}")
            waiting = [c for i, c in enumerate(self._conns) if i not in got]
            for conn in wait(waiting, timeout=TICK):
                index = self._conns.index(conn)  # type: ignore[arg-type]
                message_kind, payload = self._recv(index)
                if message_kind == kind:
                    got[index] = payload
                elif message_kind != PROGRESS:
                    raise BenchAborted(f"worker {index} sent {message_kind} while {kind} was due")
            self._tick()
        return [got[i] for i in range(len(self._conns))]

    def pump(self, seconds: float) -> None:
        """Keep servicing progress (and sampling) for ``seconds``."""
        end = time.monotonic() + seconds
        while (left := end - time.monotonic()) > 0:
            self._check_deadline("holding")
            for conn in wait(self._conns, timeout=min(TICK, left)):
                index = self._conns.index(conn)  # type: ignore[arg-type]
                kind, _ = self._recv(index)
                if kind != PROGRESS:
                    raise BenchAborted(f"worker {index} sent {kind} unexpectedly")
            self._tick()

    def broadcast(self, kind: str, payload: Any = None) -> None:
        for index, conn in enumerate(self._conns):
            try:
                conn.send((kind, payload))
            except OSError as exc:
                raise BenchAborted(f"worker {index} is gone: {exc}") from None

    def send_each(self, kind: str, payloads: Sequence[Any]) -> None:
        for conn, payload in zip(self._conns, payloads, strict=True):
            conn.send((kind, payload))

    def sample(self) -> None:
        if self.probe is None:
            return
        self._sampled_at = time.monotonic()
        now = time.time_ns()
        rss, cpu = self.probe.read()
        if rss is not None:
            self.samples.rss_kb.append((now, rss))
        if cpu is not None:
            self.samples.cpu_s.append((now, cpu))

    def reset_samples(self) -> None:
        self.samples = Samples()

    def progress(self) -> Progress:
        total = Progress()
        for progress in self._progress.values():
            total.add(progress)
        return total

    # -- teardown ----------------------------------------------------------------

    def close(self, graceful: bool) -> None:
        """Join the workers (after ``stop``) or terminate them (after a failure)."""
        for proc in self._procs:
            if graceful:
                proc.join(JOIN_TIMEOUT)
            if proc.is_alive():
                proc.terminate()
                proc.join(JOIN_TIMEOUT)
            if proc.is_alive():
                proc.kill()
                proc.join()
        for conn in self._conns:
            conn.close()

    # -- internals ---------------------------------------------------------------

    def _recv(self, index: int) -> tuple[str, Any]:
        try:
            kind, payload = self._conns[index].recv()
        except (EOFError, OSError):
            code = self._procs[index].exitcode
            raise BenchAborted(f"worker {index} exited unexpectedly (exit code {code})") from None
        if kind == ERROR:
            raise BenchAborted(f"worker {index} failed: {payload}")
        if kind == PROGRESS:
            self._progress[index] = payload
        return kind, payload

    def _tick(self) -> None:
        # Ticks come with every progress message too; a sample reads /proc
        # (every process's stat file, for the server's children), and the
        # load tool shares the cores with the server: once per TICK is plenty.
        if time.monotonic() - self._sampled_at >= TICK:
            self.sample()
        self.view.update(self.progress())

    def _check_deadline(self, doing: str) -> None:
        if time.monotonic() > self.deadline:
            raise BenchAborted(f"--max-seconds exceeded while {doing}")
