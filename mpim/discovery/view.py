"""The local view of instances that every registry adapter keeps, and its change signal.

Adapters differ in how they learn about instances; what callers see must
not differ. Keeping the view, the listeners and ``wait_for`` here gives
StaticRegistry and ZooKeeperRegistry identical semantics. The view is
owned by the event loop: adapters whose news arrives on other threads hand
it over with ``loop.call_soon_threadsafe`` before touching it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping

from mpim.discovery.base import ChangeListener, Instance

logger = logging.getLogger(__name__)


class InstanceView:
    """Instances per tracked service, with listeners and a broadcast "changed" event."""

    def __init__(self) -> None:
        self._by_service: dict[str, dict[str, Instance]] = {}
        # Sorted lists rebuilt on change, so the per-request read is a copy, not a sort.
        self._sorted: dict[str, list[Instance]] = {}
        self._listeners: list[ChangeListener] = []
        self._changed = asyncio.Event()

    def track(self, service: str) -> bool:
        """Start tracking ``service`` (empty); False if it already was."""
        if service in self._by_service:
            return False
        self._by_service[service] = {}
        self._sorted[service] = []
        return True

    def tracked(self) -> list[str]:
        return list(self._by_service)

    def is_tracked(self, service: str) -> bool:
        return service in self._by_service

    def instances(self, service: str) -> list[Instance]:
        return list(self._sorted.get(service, ()))

    def by_id(self, service: str) -> dict[str, Instance]:
        return dict(self._by_service.get(service, {}))

    def replace(self, service: str, instances: Mapping[str, Instance]) -> bool:
        """Make ``instances`` the view of ``service``; notify and return True if it changed."""
        self.track(service)
        if self._by_service[service] == instances:
            return False
        self._by_service[service] = dict(instances)
        self._sorted[service] = sorted(instances.values(), key=lambda i: i.instance_id)
        self._notify(service)
        return True

    def put(self, instance: Instance) -> bool:
        current = self.by_id(instance.service)
        current[instance.instance_id] = instance
        return self.replace(instance.service, current)

    def remove(self, service: str, instance_id: str) -> bool:
        current = self.by_id(service)
        if current.pop(instance_id, None) is None:
            return False
        return self.replace(service, current)

    def add_listener(self, listener: ChangeListener) -> Callable[[], None]:
        self._listeners.append(listener)

        def remove() -> None:
            if listener in self._listeners:
                self._listeners.remove(listener)

        return remove

    async def wait_for(
        self,
        service: str,
        predicate: Callable[[list[Instance]], bool],
        timeout: float | None = None,
    ) -> list[Instance]:
        """Wait until ``predicate`` holds for the view of ``service``; TimeoutError if not."""
        async with asyncio.timeout(timeout):
            while True:
                current = self.instances(service)
                if predicate(current):
                    return current
                await self._changed.wait()

    def _notify(self, service: str) -> None:
        # Wake every waiter once, then arm a fresh event for the next change.
        self._changed.set()
        self._changed = asyncio.Event()
        snapshot = self.instances(service)
        logger.debug("view of %s: %s", service, [i.instance_id for i in snapshot])
        for listener in list(self._listeners):
            try:
                listener(service, list(snapshot))
            except Exception:
                # A broken listener must not stop the others or the registry's updates.
                logger.exception("registry listener %r failed for %s", listener, service)
