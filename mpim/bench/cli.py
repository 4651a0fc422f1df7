"""``mpim bench …``: flags → a validated spec → a run → report, JSON, plot, exit code.

``mpim/cli.py`` only registers this subcommand (``add_bench_parser``) and hands
over (``run_bench``), so the load tool can change without touching the server's
command.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path
from typing import Any

from mpim.bench.addr import AddressError, parse_target
from mpim.bench.spec import (
    C2CSpec,
    CommonSpec,
    GroupSpec,
    IdleSpec,
    LoginSpec,
    ScenarioSpec,
    SpecError,
    new_run_id,
)

logger = logging.getLogger(__name__)

EXIT_OK = 0
EXIT_PROBLEMS = 1
EXIT_USAGE = 2


def _target(value: str) -> Any:
    try:
        return parse_target(value)
    except AddressError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _rates(value: str) -> tuple[float, ...]:
    try:
        rates = tuple(float(part) for part in value.split(",") if part.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected rates like 1000,2000,5000, got {value!r}"
        ) from None
    if not rates:
        raise argparse.ArgumentTypeError("no rates given")
    return rates


def default_workers() -> int:
    """One worker per core, at most four: the server needs cores too."""
    return max(1, min(os.cpu_count() or 1, 4))


def _common_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--addr",
        type=_target,
        action="append",
        required=True,
        help="host:port of the server (loopback only); repeat for several gateways",
    )
    p.add_argument(
        "--workers",
        type=int,
        default=default_workers(),
        help="worker processes (default: cores, ≤4)",
    )
    p.add_argument(
        "--run-id", default=None, help="8 chars a-z0-9 prefixing every username (default random)"
    )
    p.add_argument("--repeat", type=int, default=1, help="rounds per point; figures are medians")
    p.add_argument("--warmup", type=float, default=1.0, help="seconds excluded from the figures")
    p.add_argument("--duration", type=float, default=5.0, help="measured seconds per round")
    p.add_argument(
        "--messages", type=int, default=None, help="bound rounds by total messages instead of time"
    )
    p.add_argument(
        "--drain-timeout", type=float, default=10.0, help="wait for deliveries before SYNC"
    )
    p.add_argument(
        "--ack-timeout", type=float, default=30.0, help="wait for +OK after sending stops"
    )
    p.add_argument("--max-seconds", type=float, default=900.0, help="hard bound on the whole run")
    p.add_argument("--setup-concurrency", type=int, default=64, help="setup commands in flight")
    p.add_argument("--size", type=int, default=0, help="pad message texts to about this many bytes")
    p.add_argument(
        "--server-pid",
        type=int,
        action="append",
        default=None,
        help="pid to weigh (RSS/CPU); repeat to sum several (default: the listeners')",
    )
    p.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="progress bar (default: if stderr is a terminal)",
    )
    p.add_argument(
        "--strict",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="exit 1 on any loss, duplicate, reorder or error (default on)",
    )
    p.add_argument(
        "--ready-file", default=None, help="touch this file when set-up is done (for profilers)"
    )
    p.add_argument(
        "--metrics-url",
        action="append",
        default=[],
        help="http://host:port of a server process's /metrics, read before and after the "
        "run (cache hit ratio, store batches); repeat for every process of a cluster",
    )
    p.add_argument("--json", type=Path, default=None, help="write the result here")
    p.add_argument("--plot", type=Path, default=None, help="write a PNG chart here")
    p.add_argument("--log-level", default="WARNING", choices=["DEBUG", "INFO", "WARNING", "ERROR"])


def _cids_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--cids",
        action="store_true",
        help="send with @cid= (idempotent retries, protocol.md), as careful clients do",
    )


def add_bench_parser(sub: Any) -> argparse.ArgumentParser:
    """Register ``mpim bench`` on the ``mpim`` command's subparsers."""
    bench: argparse.ArgumentParser = sub.add_parser(
        "bench", help="load-test a server speaking the MPIM protocol"
    )
    scenarios = bench.add_subparsers(dest="scenario", required=True)

    c2c = scenarios.add_parser("c2c", help="one-to-one chat between sender/receiver pairs")
    _common_flags(c2c)
    c2c.add_argument("--pairs", type=int, default=100)
    c2c.add_argument(
        "--window", type=int, default=16, help="closed loop: unacknowledged sends per sender"
    )
    c2c.add_argument("--rate", type=_rates, default=None, help="open loop: total msg/s")
    c2c.add_argument(
        "--rates", type=_rates, default=None, help="open loop sweep, e.g. 1000,2000,5000"
    )
    c2c.add_argument(
        "--idle", type=int, default=0, help="extra idle logged-in connections held meanwhile"
    )
    c2c.add_argument(
        "--idle-users", type=int, default=100, help="users the idle connections log in as"
    )
    c2c.add_argument("--max-inflight", type=int, default=2000, help="open loop: per-sender cap")
    _cids_flag(c2c)

    group = scenarios.add_parser("group", help="fan-out in one group of online members")
    _common_flags(group)
    group.add_argument("--members", type=int, default=100)
    group.add_argument("--senders", type=int, default=4)
    group.add_argument("--window", type=int, default=8)
    group.add_argument("--rate", type=_rates, default=None)
    group.add_argument("--rates", type=_rates, default=None)
    group.add_argument("--max-inflight", type=int, default=2000)
    _cids_flag(group)

    idle = scenarios.add_parser("idle", help="hold connections and weigh them in server RSS")
    _common_flags(idle)
    idle.add_argument("--connections", type=int, default=1000)
    idle.add_argument(
        "--login",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="AUTH each connection (default on)",
    )
    idle.add_argument("--users", type=int, default=100, help="users the connections log in as")
    idle.add_argument("--hold", type=float, default=3.0, help="seconds to hold before weighing")
    idle.add_argument(
        "--ping",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="PING every connection at the end",
    )

    login = scenarios.add_parser("login", help="password LOGIN/s, then token AUTH/s")
    _common_flags(login)
    login.add_argument("--users", type=int, default=32)
    login.add_argument("--concurrency", type=int, default=8)

    relay = scenarios.add_parser("relay", help="run the baseline relay (no storage, no services)")
    relay.add_argument("--host", default="127.0.0.1", help="loopback address to listen on")
    relay.add_argument("--port", type=int, default=6000, help="TCP port (0 picks a free one)")
    relay.add_argument(
        "--log-level", default="WARNING", choices=["DEBUG", "INFO", "WARNING", "ERROR"]
    )
    return bench


def build_spec(args: argparse.Namespace) -> ScenarioSpec:
    """The spec the flags describe; ``SpecError`` if a value is out of range."""
    progress = args.progress if args.progress is not None else sys.stderr.isatty()
    common = CommonSpec(
        target=args.addr[0],
        more_targets=tuple(args.addr[1:]),
        workers=args.workers,
        run_id=args.run_id or new_run_id(),
        repeat=args.repeat,
        warmup=args.warmup,
        duration=args.duration,
        messages=args.messages,
        drain_timeout=args.drain_timeout,
        ack_timeout=args.ack_timeout,
        max_seconds=args.max_seconds,
        setup_concurrency=args.setup_concurrency,
        size=args.size,
        cids=getattr(args, "cids", False),  # c2c and group only
        server_pids=tuple(args.server_pid or ()),
        progress=progress,
        ready_file=args.ready_file,
    )
    spec: ScenarioSpec
    if args.scenario in ("c2c", "group"):
        if args.rate is not None and args.rates is not None:
            raise SpecError("give --rate or --rates, not both")
        rates = args.rates or args.rate or ()
        if args.scenario == "c2c":
            spec = C2CSpec(
                common,
                pairs=args.pairs,
                window=args.window,
                rates=rates,
                idle=args.idle,
                idle_users=args.idle_users,
                max_inflight=args.max_inflight,
            )
        else:
            spec = GroupSpec(
                common,
                members=args.members,
                senders=args.senders,
                window=args.window,
                rates=rates,
                max_inflight=args.max_inflight,
            )
    elif args.scenario == "idle":
        spec = IdleSpec(
            common,
            connections=args.connections,
            login=args.login,
            users=min(args.users, args.connections),
            hold=args.hold,
            ping=args.ping,
        )
    elif args.scenario == "login":
        spec = LoginSpec(common, users=args.users, concurrency=args.concurrency)
    else:
        raise SpecError(f"unknown scenario {args.scenario!r}")
    spec.validate()
    return spec


def run_bench(args: argparse.Namespace) -> int:
    """Entry point for ``mpim bench``; returns the process exit code."""
    logging.basicConfig(
        level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    if args.scenario == "relay":
        from mpim.bench.relay import run_relay

        return run_relay(args.host, args.port)
    try:
        spec = build_spec(args)
    except SpecError as exc:
        print(f"mpim bench: {exc}", file=sys.stderr)
        return EXIT_USAGE
    from mpim.bench.report import print_report, write_json
    from mpim.bench.runner import run_scenario
    from mpim.bench.server_metrics import figures, print_server_figures, scrape_all

    before = scrape_all(args.metrics_url) if args.metrics_url else None
    result = run_scenario(
        spec, (lambda: scrape_all(args.metrics_url)) if before is not None else None
    )
    print_report(result, sys.stdout)
    extra: dict[str, object] = {}
    after = scrape_all(args.metrics_url) if before is not None else None
    if before is not None and after is not None:
        server = figures(before, after)
        print_server_figures(server, sys.stdout)
        extra["server_metrics"] = server
    if args.json is not None:
        write_json(result, args.json, extra)
    if args.plot is not None and result.summary:
        _plot(result, args.plot)
    if result.aborted or (args.strict and result.problems()):
        return EXIT_PROBLEMS
    return EXIT_OK


def _plot(result: Any, path: Path) -> None:
    from mpim.bench.plot import curve_from_summary, plot_bars, plot_latency_curve

    summary = [r.to_json() for r in result.summary]
    if result.scenario in ("c2c", "group"):
        points = curve_from_summary(summary)
        plot_latency_curve({result.scenario: points}, path, f"mpim bench {result.scenario}")
    else:
        bars = {
            s["label"]: {k: v for k, v in s["metrics"].items() if v is not None} for s in summary
        }
        plot_bars(bars, path, f"mpim bench {result.scenario}", "")
