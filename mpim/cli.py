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
    up.add_argument("--data-dir", type=Path, help="where the SQLite database lives")
    up.add_argument("--log-level", choices=["DEBUG", "INFO", "WARNING", "ERROR"])

    client = sub.add_parser("client", help="interactive chat client")
    client.add_argument(
        "--addr", type=_parse_addr, default=("127.0.0.1", 6000), help="host:port of a gateway"
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "client":
        from mpim.client.app import run_client

        host, port = args.addr
        return int(run_client(host, port))
    try:
        settings = load_settings(
            args.config,
            data_dir=args.data_dir,
            log_level=args.log_level,
            gateway={"host": args.host, "port": args.port},
        )
    except ConfigError as exc:
        print(f"mpim: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=settings.log_level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    return _run(lambda: serve_embedded(settings), settings.use_uvloop)


def _run(main: Callable[[], Coroutine[Any, Any, int]], use_uvloop: bool) -> int:
    loop_factory = None
    if use_uvloop:
        with contextlib.suppress(ImportError):
            import uvloop

            loop_factory = uvloop.new_event_loop
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
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    print(
        f"mpim listening on {settings.gateway.host}:{runtime.port} "
        f"(embedded; data in {settings.data_dir})",
        flush=True,
    )
    await stop.wait()
    logger.info("shutting down")
    await runtime.stop()
    logger.info("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
