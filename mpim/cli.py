"""The ``mpim`` command: ``up`` runs embedded MPIM, ``client`` talks to one."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

from mpim import __version__
from mpim.config import ConfigError, Settings, load_settings
from mpim.logs import configure_from_settings
from mpim.tuning import freeze_startup_objects, tune_for_server

logger = logging.getLogger(__name__)


def _parse_addr(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise argparse.ArgumentTypeError(f"expected host:port, got {value!r}")
    return host or "127.0.0.1", int(port)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mpim", description="MPIM instant messaging")
    parser.add_argument("--version", action="version", version=f"mpim {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    up = sub.add_parser("up", help="run every service and the gateway in one process")
    up.add_argument("--config", type=Path, help="TOML settings file")
    up.add_argument("--host", help="listen address (default 127.0.0.1)")
    up.add_argument("--port", type=int, help="TCP port (default 6000; 0 picks a free one)")
    up.add_argument(
        "--http-port", type=int, help="WebSocket and web client port (default 6001; 0: free one)"
    )
    up.add_argument("--data-dir", type=Path, help="where the SQLite database lives")
    up.add_argument("--log-level", choices=["DEBUG", "INFO", "WARNING", "ERROR"])

    serve = sub.add_parser("serve", help="run one role of a distributed cluster")
    serve.add_argument("role", choices=["gateway", "user", "presence", "message", "group"])
    serve.add_argument("--config", type=Path, help="TOML settings file")
    serve.add_argument("--instance-id", help="unique name of this process in the cluster")
    serve.add_argument("--host", help="gateway: TCP listen address")
    serve.add_argument("--port", type=int, help="gateway: TCP port; services: gRPC port")
    serve.add_argument("--http-port", type=int, help="gateway: HTTP/WebSocket port")
    serve.add_argument(
        "--metrics-port", type=int, help="services: port of /metrics, /healthz, /readyz (0: free)"
    )
    serve.add_argument("--log-level", choices=["DEBUG", "INFO", "WARNING", "ERROR"])

    from mpim.cluster.cli import add_cluster_parser
    from mpim.status_cmd import add_status_parser

    add_cluster_parser(sub)
    add_status_parser(sub)

    client = sub.add_parser("client", help="interactive chat client")
    client.add_argument(
        "--addr", type=_parse_addr, default=("127.0.0.1", 6000), help="host:port of a gateway"
    )

    from mpim.bench.cli import add_bench_parser

    add_bench_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "bench":
        from mpim.bench.cli import run_bench

        return run_bench(args)
    if args.command == "status":
        from mpim.status_cmd import run_status

        return run_status(args)
    if args.command == "cluster":
        from mpim.cluster.cli import run_cluster

        return run_cluster(args)
    if args.command == "client":
        from mpim.client.app import run_client

        host, port = args.addr
        return int(run_client(host, port))
    try:
        settings = _settings_from(args)
    except ConfigError as exc:
        print(f"mpim: {exc}", file=sys.stderr)
        return 2
    try:
        configure_from_settings(settings)
    except OSError as exc:
        print(f"mpim: cannot open log file {settings.log.file}: {exc.strerror}", file=sys.stderr)
        return 2
    if args.command == "serve":
        return _run(lambda: serve_role(args.role, settings), settings.use_uvloop)
    return _run(lambda: serve_embedded(settings), settings.use_uvloop)


def _settings_from(args: argparse.Namespace) -> Settings:
    if args.command == "up":
        return load_settings(
            args.config,
            data_dir=args.data_dir,
            log_level=args.log_level,
            gateway={"host": args.host, "port": args.port, "http_port": args.http_port},
        )
    is_gateway = args.role == "gateway"
    return load_settings(
        args.config,
        log_level=args.log_level,
        instance_id=args.instance_id,
        gateway={
            "host": args.host if is_gateway else None,
            "port": args.port if is_gateway else None,
            "http_port": args.http_port,
        },
        rpc={"port": None if is_gateway else args.port, "metrics_port": args.metrics_port},
    )


async def serve_role(role: str, settings: Settings) -> int:
    from mpim.node import serve

    def ready(node: Any) -> None:
        freeze_startup_objects()
        print(f"mpim {role} {node.instance_id} listening on {node.address}", flush=True)

    try:
        return await serve(role, settings, ready)
    except Exception as exc:
        logger.debug("start-up failed", exc_info=True)
        print(f"mpim {role}: cannot start: {exc}", file=sys.stderr)
        return 1


def _run(main: Callable[[], Coroutine[Any, Any, int]], use_uvloop: bool) -> int:
    loop_factory = None
    if use_uvloop:
        with contextlib.suppress(ImportError):
            import uvloop

            loop_factory = uvloop.new_event_loop
    tune_for_server()
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        return runner.run(main())


async def serve_embedded(settings: Settings) -> int:
    from mpim.runtime import EmbeddedRuntime

    runtime = EmbeddedRuntime(settings)
    try:
        await runtime.start()
    except OSError as exc:
        print(
            f"mpim: cannot listen on {settings.gateway.host}:{settings.gateway.port}: "
            f"{exc.strerror}",
            file=sys.stderr,
        )
        await runtime.stop()
        return 1
    except Exception as exc:
        logger.debug("start-up failed", exc_info=True)
        print(f"mpim: cannot start: {exc}", file=sys.stderr)
        await runtime.stop()
        return 1
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    web = ""
    if runtime.gateway.http is not None:
        web = f"; web client http://{settings.gateway.http_host}:{runtime.gateway.http_port}/"
    freeze_startup_objects()
    print(
        f"mpim listening on {settings.gateway.host}:{runtime.port} "
        f"(embedded{web}; data in {settings.data_dir})",
        flush=True,
    )
    await stop.wait()
    logger.info("shutting down")
    await runtime.stop()
    logger.info("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
