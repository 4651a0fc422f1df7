"""Ports for test servers that restart on the port they had."""

from __future__ import annotations

import random
import socket
from pathlib import Path

_EPHEMERAL_RANGE = Path("/proc/sys/net/ipv4/ip_local_port_range")


def restartable_port(host: str = "127.0.0.1") -> int:
    """A free port below the kernel's ephemeral range.

    A port the kernel hands out for ``bind(0)`` is in the ephemeral range,
    from which every outgoing connection also takes its local port: one made
    while a restarting server is down (to the store, Redis, a gRPC peer) can
    take the server's port, and the restart fails with EADDRINUSE (seen once
    in a full run). Below the range only listeners take ports.
    """
    try:
        low = int(_EPHEMERAL_RANGE.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        low = 32768
    for _ in range(200):
        port = random.randrange(max(1024, low - 12000), low)
        with socket.socket() as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as servers bind
            try:
                sock.bind((host, port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free port found below {low}")
