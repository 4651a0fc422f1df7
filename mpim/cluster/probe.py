"""Ask the running cluster how it is: gRPC health, gateway PING, ZooKeeper registrations.

Every probe is independent of the process table: a process may run yet not
serve, serve yet not be registered (so no caller finds it), or be
registered by a process this tool does not know. Status shows all three so
the difference is visible. Probes are synchronous with short timeouts; the
caller runs them on a thread pool.

ZooKeeper is only read here (``{chroot}/services/<service>/<instance>``, the
layout of ``mpim.discovery.zookeeper``): status must never change what the
cluster sees.
"""

from __future__ import annotations

import logging
import socket
from dataclasses import dataclass
from typing import Any, Final

from mpim.discovery.base import Instance

logger = logging.getLogger(__name__)

# Kazoo reports every failed connection attempt at WARNING; a probe reports
# the outcome once, itself.
_KAZOO_LOG: Final = logging.getLogger(__name__ + ".kazoo")
_KAZOO_LOG.setLevel(logging.CRITICAL)


class ProbeError(Exception):
    """The thing probed could not be asked; the message says what and why."""


@dataclass(frozen=True)
class Health:
    """One health answer: ``ok`` and what to show (``SERVING``, ``pong``, or the failure)."""

    ok: bool
    text: str


def grpc_health(address: str, timeout: float = 2.0) -> Health:
    """``grpc.health.v1.Health/Check`` for the whole server (service name "")."""
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    with grpc.insecure_channel(address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        try:
            reply = stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=timeout)
        except grpc.RpcError as exc:
            code = exc.code() if hasattr(exc, "code") else None
            return Health(False, code.name.lower() if code is not None else "error")
    status = health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)
    return Health(reply.status == health_pb2.HealthCheckResponse.SERVING, str(status))


def gateway_ping(host: str, port: int, timeout: float = 2.0) -> Health:
    """Connect, expect the ``+OK`` greeting, send ``PING``, expect ``+OK pong``."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            reader = sock.makefile("rb")
            greeting = reader.readline(1024)
            if not greeting.startswith(b"+OK"):
                return Health(False, f"greeting {greeting[:40]!r}")
            sock.sendall(b"PING\n")
            reply = reader.readline(1024).rstrip(b"\r\n")
            if reply != b"+OK pong":
                return Health(False, f"reply {reply[:40]!r}")
            sock.sendall(b"QUIT\n")
            return Health(True, "pong")
    except TimeoutError:
        return Health(False, "timeout")
    except OSError as exc:
        return Health(False, (exc.strerror or type(exc).__name__).lower())


def _kazoo(hosts: str, timeout: float) -> Any:
    from kazoo.client import KazooClient

    client = KazooClient(
        hosts=hosts,
        timeout=max(timeout, 4.0),
        connection_retry={"max_tries": 1, "delay": 0.1},
        logger=_KAZOO_LOG,
    )
    try:
        client.start(timeout=timeout)
    except Exception as exc:
        client.close()
        raise ProbeError(f"ZooKeeper at {hosts} does not answer ({type(exc).__name__})") from None
    return client


def _close(client: Any) -> None:
    try:
        client.stop()
    finally:
        client.close()


def zookeeper_answers(hosts: str, timeout: float = 3.0) -> str | None:
    """None if a ZooKeeper session can be opened at ``hosts``, else why not."""
    try:
        _close(_kazoo(hosts, timeout))
    except ProbeError as exc:
        return str(exc)
    return None


def registrations(hosts: str, chroot: str, timeout: float = 3.0) -> dict[tuple[str, str], str]:
    """``(service, instance id) → address`` of every registration under ``chroot``."""
    from kazoo.exceptions import KazooException, NoNodeError

    root = chroot.rstrip("/") + "/services"
    client = _kazoo(hosts, timeout)
    found: dict[tuple[str, str], str] = {}
    try:
        for service in _children(client, root, NoNodeError):
            for instance_id in _children(client, f"{root}/{service}", NoNodeError):
                try:
                    data, _ = client.get(f"{root}/{service}/{instance_id}")
                    instance = Instance.from_json(service, instance_id, data)
                except NoNodeError:
                    continue  # left while we looked
                except ValueError as exc:
                    logger.warning("unreadable registration: %s", exc)
                    found[(service, instance_id)] = "?"
                    continue
                found[(service, instance_id)] = instance.address
    except KazooException as exc:
        raise ProbeError(f"cannot read {root} in ZooKeeper at {hosts}: {exc!r}") from None
    finally:
        _close(client)
    return found


def _children(client: Any, path: str, no_node: type[Exception]) -> list[str]:
    try:
        return sorted(client.get_children(path))
    except no_node:
        return []
