"""The ``mpim cluster`` subcommand: argument parsing and dispatch only.

Kept apart from ``mpim/cli.py`` (which registers it with two lines) so the
cluster tool can grow without touching the main command, and so that
parsing ``mpim --help`` never imports grpc or kazoo.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Any, Final

from mpim.cluster.config import ClusterConfigError
from mpim.logs import configure_logging

logger = logging.getLogger(__name__)

DEFAULT_CONFIG: Final = Path("deploy") / "cluster.toml"
# Where the default lives in a source checkout, for runs from another directory.
CHECKOUT_CONFIG: Final = Path(__file__).resolve().parents[2] / DEFAULT_CONFIG

EPILOG: Final = """\
exit codes: start 0 all serving, 1 failed (what it launched is stopped again);
stop 0 nothing left running, 1 a process survived; status 0 all running,
registered and healthy, 1 some not, 3 none running; 2 a bad cluster file.
"""


def add_cluster_parser(sub: Any) -> None:
    """Register ``cluster`` on the ``mpim`` subparsers object ``sub``."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--config",
        type=Path,
        help=f"cluster file (default: {DEFAULT_CONFIG}, here or in the source checkout)",
    )
    cluster = sub.add_parser(
        "cluster",
        help="start, stop or inspect a whole cluster on this machine",
        description="Run the processes listed in a cluster file (deploy/cluster.toml).",
        epilog=EPILOG,
    )
    actions = cluster.add_subparsers(dest="action", required=True)
    start = actions.add_parser("start", parents=[common], help="launch every process, detached")
    start.add_argument(
        "--with-zookeeper",
        action="store_true",
        help="run scripts/zookeeper.sh start first (done anyway if ZooKeeper does not answer)",
    )
    stop = actions.add_parser("stop", parents=[common], help="stop every process gracefully")
    stop.add_argument(
        "--with-zookeeper",
        action="store_true",
        help="also stop the ZooKeeper that scripts/zookeeper.sh started",
    )
    actions.add_parser("status", parents=[common], help="table of processes, registration, health")
    check = actions.add_parser(
        "probe", help="health-check one address (exit 0 if healthy); for container health checks"
    )
    check.add_argument("kind", choices=["grpc", "gateway"])
    check.add_argument("address", help="host:port")


def run_cluster(args: argparse.Namespace) -> int:
    """Dispatch a parsed ``mpim cluster …`` command; returns the exit code."""
    configure_logging(logging.WARNING)
    if args.action == "probe":
        return _probe(args.kind, args.address)
    from mpim.cluster import commands, status
    from mpim.cluster.config import load_cluster

    try:
        cfg = load_cluster(resolve_config(args.config))
    except ClusterConfigError as exc:
        print(f"mpim cluster: {exc}", file=sys.stderr)
        return 2
    if args.action == "start":
        return commands.start(cfg, with_zookeeper=args.with_zookeeper)
    if args.action == "stop":
        return commands.stop(cfg, with_zookeeper=args.with_zookeeper)
    return status.status(cfg)


def resolve_config(given: Path | None) -> Path:
    """``--config`` as given, else deploy/cluster.toml here, else the checkout's."""
    if given is not None:
        return given
    if DEFAULT_CONFIG.exists() or not CHECKOUT_CONFIG.exists():
        return DEFAULT_CONFIG
    return CHECKOUT_CONFIG


def _probe(kind: str, address: str) -> int:
    from mpim.cluster import probe
    from mpim.discovery.base import split_address

    try:
        host, port = split_address(address)
    except ValueError as exc:
        print(f"mpim cluster probe: {exc}", file=sys.stderr)
        return 2
    health = probe.gateway_ping(host, port) if kind == "gateway" else probe.grpc_health(address)
    print(health.text)
    return 0 if health.ok else 1
