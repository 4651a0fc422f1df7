"""Free ports for test servers: any free port, several distinct ones, or one a
server can restart on."""

from __future__ import annotations

import random
import socket
from pathlib import Path

_EPHEMERAL_RANGE = Path("/proc/sys/net/ipv4/ip_local_port_range")


def free_port(host: str = "127.0.0.1") -> int:
    """A port free now, for a server started once (it may be taken again later)."""
    return free_ports(1, host)[0]


def free_ports(count: int, host: str = "127.0.0.1") -> list[int]:
    """Distinct free ports (all held at once while choosing, so none repeats)."""
    socks = [socket.socket() for _ in range(count)]
    try:
        for sock in socks:
            sock.bind((host, 0))
        return [int(sock.getsockname()[1]) for sock in socks]
    finally:
        for sock in socks:
            sock.close()


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
