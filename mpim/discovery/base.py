"""What every service-discovery adapter offers: the Registry port and its Instance.

A registry answers "which live instances of service X are there?" from a
local view, without a network round trip, so a caller can pick an instance
on every request. Adapters keep that view current in the background and
tell listeners when it changes; callers balance across what they see and
drop an instance as soon as it leaves the view.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final, Protocol

# A name becomes one ZooKeeper path segment: no "/", no "." or "..", nothing
# a shell or a log line would mangle.
_NAME: Final = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
MAX_METADATA_BYTES: Final = 16 * 1024

ChangeListener = Callable[[str, "list[Instance]"], None]
"""Called on the event loop as ``listener(service, instances)`` after the
view of ``service`` changed; must not block (schedule work instead)."""


class RegistryError(Exception):
    """A registration was refused or the registry could not be reached at start."""


def check_name(kind: str, value: str) -> str:
    """Return ``value`` if it is usable as a service or instance name, else raise ValueError."""
    if not _NAME.match(value) or value in (".", ".."):
        raise ValueError(f"invalid {kind} {value!r}: use letters, digits, '_', '-', '.' (max 128)")
    return value


def split_address(address: str) -> tuple[str, int]:
    """``"host:port"`` or ``"[v6]:port"`` to (host, port); ValueError names the address."""
    host, sep, port_text = address.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not sep or not host or not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ValueError(f"invalid address {address!r}: expected host:port")
    return host, int(port_text)


@dataclass(frozen=True)
class Instance:
    """One running instance of a service, as peers see it.

    ``metadata`` carries small string facts peers may balance on (gateway id,
    version, weight, zone); it travels as JSON next to the address.
    """

    service: str
    instance_id: str
    address: str
    metadata: dict[str, str] = field(default_factory=dict, hash=False)

    def __post_init__(self) -> None:
        check_name("service", self.service)
        check_name("instance id", self.instance_id)
        split_address(self.address)
        if not all(isinstance(k, str) and isinstance(v, str) for k, v in self.metadata.items()):
            raise ValueError(f"metadata of {self.instance_id!r} must map str to str")

    @property
    def host(self) -> str:
        return split_address(self.address)[0]

    @property
    def port(self) -> int:
        return split_address(self.address)[1]

    def to_json(self) -> bytes:
        """The registration payload; service and id live in the node's path, not here."""
        data = json.dumps(
            {"address": self.address, "metadata": self.metadata}, sort_keys=True
        ).encode()
        if len(data) > MAX_METADATA_BYTES:
            raise ValueError(f"registration of {self.instance_id!r} exceeds {MAX_METADATA_BYTES} B")
        return data

    @classmethod
    def from_json(cls, service: str, instance_id: str, data: bytes) -> Instance:
        """Parse a registration payload; ValueError if it is not one of ours."""
        try:
            payload: Any = json.loads(data)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ValueError(f"{service}/{instance_id}: not JSON: {exc}") from None
        if not isinstance(payload, dict) or not isinstance(payload.get("address"), str):
            raise ValueError(f"{service}/{instance_id}: no address in registration")
        metadata = payload.get("metadata", {})
        if not isinstance(metadata, dict):
            raise ValueError(f"{service}/{instance_id}: metadata is not an object")
        return cls(service, instance_id, payload["address"], dict(metadata))


class Registry(Protocol):
    """Register this process's instances and watch other services' instances.

    Lifecycle: ``start()`` before anything else; ``stop()`` deregisters this
    process's instances *first* (so peers drop them at once), then
    disconnects. Call ``watch(service)`` once per service you call; from
    then on ``instances(service)`` is a cheap, non-blocking read of the
    current view and every change is reported to listeners added with
    ``add_listener``. When the backend is unreachable the last known view is
    kept: serving with slightly stale peers beats serving with none.
    """

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def register(self, instance: Instance) -> None:
        """Announce ``instance`` until ``deregister``/``stop`` or this process dies."""
        ...

    async def deregister(self, instance: Instance) -> None: ...

    async def watch(self, service: str) -> None:
        """Track ``service``; returns once its current instances are in the view."""
        ...

    def instances(self, service: str) -> list[Instance]:
        """Live instances of a watched service, sorted by instance id; [] if unwatched."""
        ...

    def add_listener(self, listener: ChangeListener) -> Callable[[], None]:
        """Call ``listener`` after every change of the view; returns a remover."""
        ...

    async def wait_for(
        self,
        service: str,
        predicate: Callable[[list[Instance]], bool],
        timeout: float | None = None,
    ) -> list[Instance]:
        """Wait until ``predicate(instances(service))`` holds; TimeoutError after ``timeout``."""
        ...
