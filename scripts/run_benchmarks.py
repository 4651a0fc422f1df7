#!/usr/bin/env python
"""Run the recorded benchmark suite and regenerate docs/benchmarks.md.

    .venv/bin/python scripts/run_benchmarks.py              # full suite, ~10 minutes
    .venv/bin/python scripts/run_benchmarks.py --quick      # small sizes: checks the pipeline
    .venv/bin/python scripts/run_benchmarks.py --docs-only  # re-render the doc from bench/results/

Starts embedded MPIM and the relay baseline itself (fresh data directories,
free ports), runs every scenario of ``mpim.bench.suite`` against both, writes
``bench/results/*.json`` and ``*.png``, and renders the doc from those files.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from mpim.bench.docs import write_doc  # noqa: E402
from mpim.bench.limits import raise_nofile_limit  # noqa: E402
from mpim.bench.suite import DISTRIBUTED, SUITES, SuiteRunner  # noqa: E402

logger = logging.getLogger("run_benchmarks")

REGENERATE = ".venv/bin/python scripts/run_benchmarks.py"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="small sizes, to check the pipeline")
    parser.add_argument("--docs-only", action="store_true", help="only re-render the doc")
    parser.add_argument("--no-profile", action="store_true", help="skip the py-spy runs")
    parser.add_argument(
        "--distributed",
        type=Path,
        metavar="CLUSTER.toml",
        help="also start this cluster (mpim cluster start) and measure the distributed targets",
    )
    parser.add_argument(
        "--fresh-store",
        action="store_true",
        help="drop the cluster's store database before starting it (only one the benchmark "
        "owns, like bench/cluster.toml's mpimbench): earlier runs' rows slow later ones",
    )
    parser.add_argument("--results", type=Path, default=ROOT / "bench" / "results")
    parser.add_argument("--doc", type=Path, default=ROOT / "docs" / "benchmarks.md")
    parser.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    # SIGTERM unwinds like Ctrl-C, so the servers started here are stopped.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    if not args.docs_only:
        raise_nofile_limit()  # the servers inherit it
        name = "quick" if args.quick else "full"
        progress = args.progress if args.progress is not None else sys.stderr.isatty()
        started = time.monotonic()
        runs = SUITES[name] + (DISTRIBUTED if args.distributed else ())
        echo = lambda text: print(text, flush=True)  # noqa: E731
        runner = SuiteRunner(args.results, progress, echo, args.distributed, args.fresh_store)
        runner.run(name, runs, profile=not args.no_profile)
        print(f"suite {name} took {(time.monotonic() - started) / 60:.1f} min", flush=True)
    path = write_doc(args.results, args.doc, REGENERATE)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
