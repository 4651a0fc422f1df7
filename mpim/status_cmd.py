"""``mpim status``: an embedded MPIM's readiness and key figures, from its HTTP port."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from mpim.cluster.table import render
from mpim.metrics.scrape import Scrape, fetch
from mpim.metrics.summary import COLUMNS, key_figures

EXIT_OK = 0
EXIT_NOT_READY = 1
EXIT_UNREACHABLE = 3


def add_status_parser(sub: Any) -> None:
    status = sub.add_parser(
        "status", help="readiness and key figures of a running MPIM (mpim up or a gateway)"
    )
    status.add_argument(
        "--url",
        action="append",
        default=None,
        help="http://host:port of its HTTP port (default http://127.0.0.1:6001); repeatable",
    )


def run_status(args: argparse.Namespace) -> int:
    urls: list[str] = args.url or ["http://127.0.0.1:6001"]
    rows: list[list[str]] = []
    worst = EXIT_OK
    for url in urls:
        try:
            ready_status, ready_body = fetch(url, "/readyz")
            _, metrics = fetch(url, "/metrics")
        except OSError as exc:
            print(f"{url}: not reachable ({exc})", file=sys.stderr)
            worst = EXIT_UNREACHABLE
            continue
        failing = [line for line in ready_body.splitlines() if " fail" in line]
        ready = "yes" if ready_status == 200 else "no: " + "; ".join(failing)
        if ready_status != 200:
            worst = max(worst, EXIT_NOT_READY)
        figures = key_figures(Scrape.parse(metrics))
        rows.append([url, ready, *(figures[c] for c in COLUMNS)])
    if len(rows) == 1:  # one server: a figure per line reads better than a wide row
        print(
            render(["FIGURE", "VALUE"], list(zip(["URL", "READY", *COLUMNS], rows[0], strict=True)))
        )
    elif rows:
        print(render(["URL", "READY", *COLUMNS], rows))
    return worst
