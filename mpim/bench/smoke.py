"""The CI smoke benchmark: small c2c and group runs against a fresh embedded MPIM.

It prints the figures but judges only correctness — a lost, duplicated or
reordered message, or any error, fails it; speed never does, because shared
CI machines make speed noise. It takes well under a minute.
"""

from __future__ import annotations

import argparse
import logging
import shutil
import sys
import tempfile
from pathlib import Path

from mpim.bench.addr import Target
from mpim.bench.report import print_report
from mpim.bench.runner import run_scenario
from mpim.bench.servers import mpim_server
from mpim.bench.spec import C2CSpec, CommonSpec, GroupSpec, ScenarioSpec

logger = logging.getLogger(__name__)


def smoke_specs(target: Target, pid: int, seconds: float) -> list[ScenarioSpec]:
    """Closed-loop c2c, open-loop c2c with ``@cid=`` and a group fan-out, each a few seconds."""

    def common(duration: float, *, cids: bool = False) -> CommonSpec:
        return CommonSpec(
            target=target,
            workers=2,
            warmup=0.5,
            duration=duration,
            drain_timeout=10.0,
            max_seconds=120.0,
            server_pids=(pid,),
            progress=False,
            cids=cids,
        )

    return [
        C2CSpec(common(seconds), pairs=20, window=8),
        C2CSpec(common(seconds / 2, cids=True), pairs=20, rates=(2000.0,)),
        GroupSpec(common(seconds), members=20, senders=3, window=4),
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench_smoke", description=__doc__)
    parser.add_argument("--seconds", type=float, default=3.0, help="measured seconds per run")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    log_dir = Path(tempfile.mkdtemp(prefix="mpim-bench-smoke-"))
    failed: list[str] = []
    with mpim_server(log_dir) as server:
        target = Target(server.host, server.port)
        for spec in smoke_specs(target, server.pid, args.seconds):
            result = run_scenario(spec)
            print_report(result, sys.stdout)
            print(flush=True)
            failed.extend(f"{spec.name}: {p}" for p in result.problems())
    if failed:
        print(f"bench smoke FAILED ({len(failed)} problems; server log in {log_dir}):")
        for problem in failed:
            print(f"  {problem}")
        return 1
    print("bench smoke OK: nothing lost, duplicated or reordered; no errors")
    shutil.rmtree(log_dir, ignore_errors=True)  # kept only when there is something to read
    return 0


if __name__ == "__main__":
    sys.exit(main())
