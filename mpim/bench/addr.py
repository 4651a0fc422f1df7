"""Target addresses: the tool only ever loads this machine.

A load generator pointed at someone else's server is an attack, so the CLI
refuses anything that is not a loopback address before it opens a socket.
"""

from __future__ import annotations

import ipaddress
import logging
from dataclasses import dataclass

logger = logging.getLogger(__name__)

_LOCAL_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost"})


class AddressError(ValueError):
    """The address is malformed or not a loopback address."""


@dataclass(frozen=True, slots=True)
class Target:
    """Where the server under test listens (always loopback)."""

    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and any 127.0.0.0/8 or ::1 literal."""
    if host.lower() in _LOCAL_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def parse_target(value: str) -> Target:
    """Parse ``host:port`` (``[::1]:port`` for IPv6); refuse non-loopback hosts."""
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise AddressError(f"expected host:port, got {value!r}")
    host = host.strip("[]") or "127.0.0.1"
    if not is_loopback(host):
        raise AddressError(
            f"refusing to load {host!r}: mpim bench only targets this machine "
            "(localhost, 127.0.0.0/8 or ::1)"
        )
    if host.lower() in _LOCAL_NAMES:
        host = "127.0.0.1"
    return Target(host, int(port))
