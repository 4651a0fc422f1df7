"""``python -m mpim.client [--addr host:port]``: the client without the ``mpim`` CLI."""

from __future__ import annotations

import argparse
import logging

from mpim.client.app import DEFAULT_HOST, DEFAULT_PORT, parse_addr, run_client

logger = logging.getLogger(__name__)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mpim.client", description=__doc__)
    parser.add_argument(
        "--addr",
        default=f"{DEFAULT_HOST}:{DEFAULT_PORT}",
        help="server address, host:port (default %(default)s)",
    )
    args = parser.parse_args(argv)
    try:
        host, port = parse_addr(args.addr)
    except ValueError as exc:
        parser.error(str(exc))
    return run_client(host, port)


if __name__ == "__main__":
    raise SystemExit(main())
