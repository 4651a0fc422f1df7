"""Blocking ZooKeeper operations behind ZooKeeperRegistry, run on its worker threads.

Kept apart from the registry so the asyncio side reads as policy (when to
register, when to re-read) and this side as mechanism (which znodes, which
watches, who owns a node). Nothing here touches the event loop.

Layout: ``{chroot}/services/{service}/{instance_id}``, ephemeral, holding
the instance's JSON (see ``Instance.to_json``).
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

from kazoo.client import KazooClient
from kazoo.exceptions import ConnectionLoss, NodeExistsError, NoNodeError

from mpim.discovery.base import Instance, RegistryError

logger = logging.getLogger(__name__)

Watch = Callable[[Any], None]


def new_client(hosts: str, session_timeout: float, reconnect_max_delay: float) -> Any:
    """A kazoo client that retries forever but never waits long between attempts,
    so a returning ZooKeeper finds us within a couple of seconds."""
    return KazooClient(
        hosts=hosts,
        timeout=session_timeout,
        connection_retry={"max_tries": -1, "delay": 0.1, "max_delay": reconnect_max_delay},
        logger=_QuietKazooLogger(logging.getLogger(__name__ + ".kazoo")),
    )


def close_client(client: Any) -> None:
    """Stop and close a kazoo client, whatever state a failed start or an outage left it in."""
    try:
        client.stop()
        client.close()
    except Exception as exc:
        logger.debug("closing the kazoo client: %r", exc)


class ServiceTree:
    """The registry's znodes under one chroot, and the blocking calls that manage them."""

    def __init__(self, chroot: str) -> None:
        self.services_path = chroot.rstrip("/") + "/services"

    def service_path(self, service: str) -> str:
        return f"{self.services_path}/{service}"

    def node_path(self, instance: Instance) -> str:
        return f"{self.services_path}/{instance.service}/{instance.instance_id}"

    def ensure_root(self, client: Any) -> None:
        """Create ``{chroot}/services`` (and the chroot) if missing."""
        client.ensure_path(self.services_path)

    def put(self, client: Any, instance: Instance, takeover_wait: float) -> None:
        """Create our ephemeral node, or update its data if it is already ours.

        A node of the same name owned by another session is an earlier
        incarnation that crashed (its session not yet expired) or a live
        duplicate: wait up to ``takeover_wait`` for it to go, never delete it.
        """
        path = self.node_path(instance)
        data = instance.to_json()
        deadline = time.monotonic() + takeover_wait
        while True:
            try:
                client.create(path, data, ephemeral=True, makepath=True)
                return
            except NodeExistsError:
                pass
            try:
                current, stat = client.get(path)
            except NoNodeError:
                continue
            if stat.ephemeralOwner == _session_id(client):
                if current != data:
                    client.set(path, data, version=stat.version)
                return
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise RegistryError(
                    f"{path} is held by another live session (0x{stat.ephemeralOwner:x}); "
                    "is the instance id unique?"
                )
            gone = threading.Event()
            if client.exists(path, watch=_setter(gone)) is not None:
                logger.info(
                    "waiting up to %.1fs for the previous owner of %s to go", remaining, path
                )
                gone.wait(remaining)

    def delete(self, client: Any, instances: Iterable[Instance]) -> None:
        """Delete the nodes that are ours (never a same-named node of another session)."""
        for instance in instances:
            path = self.node_path(instance)
            stat = client.exists(path)
            if stat is not None and stat.ephemeralOwner == _session_id(client):
                with contextlib.suppress(NoNodeError):
                    client.delete(path, version=stat.version)

    def read(
        self,
        client: Any,
        service: str,
        known: set[str],
        on_children: Watch,
        on_data: Watch,
    ) -> tuple[list[str], dict[str, bytes]]:
        """A service's children (watched) and the data of those not in ``known`` (watched).

        Creates the service node if missing, so the children watch can be set
        before the first instance registers.
        """
        path = self.service_path(service)
        try:
            children: list[str] = client.get_children(path, watch=on_children)
        except NoNodeError:
            client.ensure_path(path)
            children = client.get_children(path, watch=on_children)
        fetched: dict[str, bytes] = {}
        for child in children:
            if child in known:
                continue
            try:
                data, _stat = client.get(f"{path}/{child}", watch=on_data)
            except NoNodeError:
                continue  # gone between the listing and the read; its event follows
            fetched[child] = data
        return children, fetched


def _session_id(client: Any) -> int:
    session = client.client_id
    if session is None:
        raise ConnectionLoss("not connected to ZooKeeper")
    session_id: int = session[0]
    return session_id


def _setter(event: threading.Event) -> Watch:
    """A kazoo watch function that sets ``event``, whatever happened to the node."""
    return lambda _watched: event.set()


class _QuietKazooLogger(logging.LoggerAdapter):  # type: ignore[type-arg]
    """kazoo's logger, with its per-attempt INFO/WARNING chatter demoted to DEBUG.

    During an outage kazoo warns on every reconnect attempt; the registry
    logs each state change once itself, so those lines add only noise.
    Errors and tracebacks from kazoo keep their level.
    """

    def log(self, level: int, msg: object, *args: Any, **kwargs: Any) -> None:
        if logging.INFO <= level < logging.ERROR:
            level = logging.DEBUG
        super().log(level, msg, *args, **kwargs)
