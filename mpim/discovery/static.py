"""StaticRegistry: instances fixed up front, for embedded mode, tests and fixed deployments.

It implements the same Registry port as ZooKeeperRegistry, including change
notification when ``register``/``deregister`` are called in-process, so
code that balances across instances can be tested without ZooKeeper.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping, Sequence

from mpim.discovery.base import ChangeListener, Instance, Registry
from mpim.discovery.view import InstanceView

logger = logging.getLogger(__name__)


class StaticRegistry:
    """Every seeded service is tracked from the start; ``watch`` of others tracks them empty."""

    def __init__(self, instances: Iterable[Instance] = ()) -> None:
        self._view = InstanceView()
        self._own: dict[tuple[str, str], Instance] = {}
        for instance in instances:
            self._view.put(instance)

    @classmethod
    def from_mapping(
        cls, mapping: Mapping[str, Sequence[str] | Mapping[str, str]]
    ) -> StaticRegistry:
        """Build from ``{service: [address, ...]}`` or ``{service: {instance_id: address}}``.

        Listed addresses get ids ``{service}-1``, ``{service}-2``, … in order.
        """
        instances: list[Instance] = []
        for service, entries in mapping.items():
            if isinstance(entries, Mapping):
                pairs = list(entries.items())
            else:
                pairs = [(f"{service}-{n}", address) for n, address in enumerate(entries, 1)]
            instances += [Instance(service, iid, address) for iid, address in pairs]
        return cls(instances)

    async def start(self) -> None:
        """Nothing to connect to."""

    async def stop(self) -> None:
        """Withdraw what this process registered; seeded instances stay (they are config)."""
        for instance in list(self._own.values()):
            await self.deregister(instance)

    async def register(self, instance: Instance) -> None:
        self._own[(instance.service, instance.instance_id)] = instance
        self._view.put(instance)

    async def deregister(self, instance: Instance) -> None:
        self._own.pop((instance.service, instance.instance_id), None)
        self._view.remove(instance.service, instance.instance_id)

    async def watch(self, service: str) -> None:
        self._view.track(service)

    def instances(self, service: str) -> list[Instance]:
        return self._view.instances(service)

    def add_listener(self, listener: ChangeListener) -> Callable[[], None]:
        return self._view.add_listener(listener)

    async def wait_for(
        self,
        service: str,
        predicate: Callable[[list[Instance]], bool],
        timeout: float | None = None,
    ) -> list[Instance]:
        return await self._view.wait_for(service, predicate, timeout)


def _fits_the_port(registry: StaticRegistry) -> Registry:
    """Never called: makes mypy prove that StaticRegistry implements Registry."""
    return registry
