"""ZooKeeperRegistry: ephemeral registrations and watched views with kazoo.

Each instance is an *ephemeral* znode ``{chroot}/services/{service}/{id}``
(see zknodes.py). ZooKeeper deletes it when its session ends, so a crashed
process disappears by itself after the session timeout; a clean ``stop()``
deletes it explicitly first, so peers see it go within milliseconds.

Threads: kazoo runs its connection and callbacks on its own threads. Those
callbacks only hand a note to the event loop (``call_soon_threadsafe``);
blocking kazoo calls run on a small private thread pool. Everything else --
the view, the registrations, the state -- is touched on the loop only.

Why raw watches instead of kazoo's ChildrenWatch/DataWatch recipes: the
recipes stop for good when the watched node is missing (a wiped server) and
run user code on kazoo's thread. Here one loop-side worker re-reads a
service whenever a watch fires and after every (re)connection, which also
re-arms the watches kazoo forgets when a connection drops.

Session states, as kazoo simplifies them:
- SUSPENDED (connection lost, the session may live on): keep serving the
  last known view -- stale peers beat no peers.
- LOST (session expired; our ephemeral nodes are gone): keep the view;
  kazoo opens a new session by itself.
- CONNECTED (first, resumed or new session): re-create our nodes if missing,
  re-read every watched service, re-arming its watches.
- SUSPENDED for longer than the session timeout: the server has expired us
  or does not know us (a wiped or replaced ZooKeeper refuses clients that
  have seen newer data, and kazoo would retry that forever). Start over with
  a fresh client, as Curator does; the CONNECTED path then re-registers.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Final, TypeVar

from kazoo.exceptions import (
    ConnectionClosedError,
    ConnectionLoss,
    KazooException,
    SessionExpiredError,
)

from mpim.config import ZooKeeperSettings
from mpim.discovery.base import ChangeListener, Instance, Registry, RegistryError, check_name
from mpim.discovery.view import InstanceView
from mpim.discovery.zknodes import ServiceTree, close_client, new_client

logger = logging.getLogger(__name__)

T = TypeVar("T")

CONNECTED: Final = "CONNECTED"
SUSPENDED: Final = "SUSPENDED"
LOST: Final = "LOST"
# "ZooKeeper is not reachable right now": the next CONNECTED redoes the work.
_UNREACHABLE: Final = (ConnectionLoss, SessionExpiredError, ConnectionClosedError, TimeoutError)
_FAILED: Final = (KazooException, TimeoutError)


class ZooKeeperRegistry:
    """The Registry port on ZooKeeper; see the module docstring for the model."""

    def __init__(
        self,
        hosts: str = "127.0.0.1:2181",
        chroot: str = "/mpim",
        *,
        session_timeout: float = 10.0,
        connect_timeout: float = 15.0,
        operation_timeout: float = 5.0,
        reconnect_max_delay: float = 2.0,
    ) -> None:
        if not chroot.startswith("/"):
            raise ValueError(f"zookeeper chroot must start with '/': {chroot!r}")
        self.hosts = hosts
        self.chroot = chroot
        self.session_timeout = session_timeout
        self._tree = ServiceTree(chroot)
        self._connect_timeout = connect_timeout
        self._op_timeout = operation_timeout
        self._reconnect_max_delay = reconnect_max_delay
        # Waiting for a crashed predecessor's node to expire, at most.
        self._takeover_wait = session_timeout * 1.5 + 1.0
        self._client: Any = None
        self._generation = 0  # bumped per kazoo client; older clients' news is ignored
        self._loop: asyncio.AbstractEventLoop | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._view = InstanceView()
        self._own: dict[tuple[str, str], Instance] = {}
        self._withdrawn: dict[tuple[str, str], Instance] = {}  # deletes to retry
        self._state = LOST
        self._state_changed = asyncio.Event()
        self._stopping = False
        self._recycle_timer: asyncio.TimerHandle | None = None
        self._locks: dict[str, asyncio.Lock] = {}
        # Work for the background worker: services to re-read (True: all data,
        # not only new children), nodes whose data changed, and flags.
        self._dirty: dict[str, bool] = {}
        self._stale: set[tuple[str, str]] = set()
        self._resync_nodes = False
        self._recycle = False
        self._wakeup = asyncio.Event()
        self._worker: asyncio.Task[None] | None = None
        self._warned: set[tuple[str, str, bytes]] = set()

    @classmethod
    def from_settings(cls, settings: ZooKeeperSettings, **kwargs: float) -> ZooKeeperRegistry:
        return cls(
            settings.hosts,
            settings.chroot,
            session_timeout=settings.session_timeout_seconds,
            **kwargs,
        )

    # -- lifecycle ---------------------------------------------------------------

    @property
    def state(self) -> str:
        """The last session state seen on the loop: CONNECTED, SUSPENDED or LOST."""
        return self._state

    @property
    def connected(self) -> bool:
        return self._state == CONNECTED

    async def wait_for_state(self, *states: str, timeout: float | None = None) -> str:
        """Wait until the session state is one of ``states`` (readiness checks, tests)."""
        async with asyncio.timeout(timeout):
            while self._state not in states:
                await self._state_changed.wait()
        return self._state

    async def start(self) -> None:
        """Connect (RegistryError if ZooKeeper is unreachable) and create the chroot."""
        if self._client is not None:
            return
        self._loop = asyncio.get_running_loop()
        self._executor = ThreadPoolExecutor(max_workers=4, thread_name_prefix="mpim-zk")
        self._stopping = False
        client = self._new_client()
        try:
            await self._blocking(client.start, self._connect_timeout, timeout=None)
            await self._blocking(self._tree.ensure_root, client)
        except BaseException as exc:
            await self._blocking(close_client, client, timeout=None)
            self._executor.shutdown(wait=False)
            self._executor = None
            if isinstance(exc, Exception):
                raise RegistryError(f"cannot use ZooKeeper at {self.hosts}: {exc!r}") from exc
            raise
        self._client = client
        self._worker = asyncio.create_task(self._work(), name="zookeeper-registry")
        logger.info("zookeeper registry started: %s, chroot %s", self.hosts, self.chroot)

    async def stop(self) -> None:
        """Delete our nodes first (peers see them go at once), then close the session."""
        client, self._client = self._client, None
        if client is None:
            return
        self._stopping = True
        self._cancel_recycle_timer()
        await _cancel_and_wait(self._worker, self._op_timeout)
        self._worker = None
        mine = [*self._own.values(), *self._withdrawn.values()]
        try:
            if mine and not self.connected:
                # Waiting for an absent server would only delay shutdown; the
                # session's expiry removes the nodes anyway.
                raise ConnectionLoss("not connected")
            await self._blocking(self._tree.delete, client, mine)
        except _FAILED as exc:
            logger.warning(
                "could not deregister %d instance(s) before closing (%r); "
                "ZooKeeper drops them when the session ends",
                len(mine),
                exc,
            )
        finally:
            await self._blocking(close_client, client, timeout=None)
            if self._executor is not None:
                self._executor.shutdown(wait=False, cancel_futures=True)
                self._executor = None
        self._own.clear()
        self._withdrawn.clear()
        logger.info("zookeeper registry stopped (%d instance(s) deregistered)", len(mine))

    # -- registrations -----------------------------------------------------------

    async def register(self, instance: Instance) -> None:
        """Create our ephemeral node, or update it if it exists.

        If an earlier incarnation's node with this id is still there (a crashed
        process whose session has not expired yet), wait for it to expire
        rather than steal a possibly live peer's name; RegistryError if it
        does not. While ZooKeeper is unreachable the registration is kept and
        made when the session returns (a warning is logged).
        """
        client = self._require_client()
        key = (instance.service, instance.instance_id)
        self._own[key] = instance
        self._withdrawn.pop(key, None)
        try:
            await self._blocking(
                self._tree.put,
                client,
                instance,
                self._takeover_wait,
                timeout=self._takeover_wait + self._op_timeout,
            )
        except _UNREACHABLE as exc:
            logger.warning(
                "ZooKeeper unreachable (%r); %s/%s will be registered when it returns",
                exc,
                *key,
            )
        except BaseException:
            if self._own.get(key) is instance:
                del self._own[key]
            raise

    async def deregister(self, instance: Instance) -> None:
        """Delete our node; if ZooKeeper is unreachable, delete it once reconnected."""
        client = self._require_client()
        key = (instance.service, instance.instance_id)
        self._own.pop(key, None)
        try:
            await self._blocking(self._tree.delete, client, [instance])
        except _UNREACHABLE as exc:
            self._withdrawn[key] = instance
            logger.warning(
                "ZooKeeper unreachable (%r); %s/%s will be removed when it returns", exc, *key
            )

    # -- the view ----------------------------------------------------------------

    async def watch(self, service: str) -> None:
        """Track ``service``; returns after the first read (if that fails because
        ZooKeeper is unreachable, the view fills in once it answers)."""
        check_name("service", service)
        self._require_client()
        if self._view.track(service):
            await self._refresh(service, reload_all=True)

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

    # -- kazoo threads -> loop ---------------------------------------------------

    def _to_loop(self, callback: Callable[..., None], *args: Any) -> None:
        """Runs on kazoo's threads: hand over to the loop, touch nothing else."""
        loop = self._loop
        if loop is None:
            return
        try:
            loop.call_soon_threadsafe(callback, *args)
        except RuntimeError:
            logger.debug("event loop closed; dropped a ZooKeeper notification")

    def _on_session_event(self, generation: int, state: Any) -> None:
        self._to_loop(self._session_changed, generation, str(state))

    def _on_children_event(self, event: Any) -> None:
        # path None: kazoo's "connection dropped, watches reset" notice; the
        # CONNECTED handler re-reads everything, so nothing to do here.
        if event.path is not None:
            self._to_loop(self._mark_dirty, event.path.rpartition("/")[2], False)

    def _on_data_event(self, event: Any) -> None:
        if event.path is not None:
            parent, _, instance_id = event.path.rpartition("/")
            self._to_loop(self._mark_stale, parent.rpartition("/")[2], instance_id)

    # -- loop side ---------------------------------------------------------------

    def _new_client(self) -> Any:
        self._generation += 1
        client = new_client(self.hosts, self.session_timeout, self._reconnect_max_delay)
        client.add_listener(functools.partial(self._on_session_event, self._generation))
        return client

    def _set_state(self, state: str) -> str:
        previous, self._state = self._state, state
        if state != previous:
            self._state_changed.set()
            self._state_changed = asyncio.Event()
        return previous

    def _session_changed(self, generation: int, state: str) -> None:
        if generation != self._generation or self._stopping:
            return
        previous = self._set_state(state)
        if state == previous:
            return
        self._cancel_recycle_timer()
        if state == SUSPENDED:
            logger.warning(
                "ZooKeeper connection lost; serving with the last known view of %d service(s)",
                len(self._view.tracked()),
            )
            assert self._loop is not None
            self._recycle_timer = self._loop.call_later(self.session_timeout, self._request_recycle)
        elif state == LOST:
            logger.warning(
                "ZooKeeper session expired; %d registration(s) will be re-created on reconnect",
                len(self._own),
            )
        elif state == CONNECTED:
            how = "connection resumed" if previous == SUSPENDED else "new session"
            logger.info("connected to ZooKeeper at %s (%s)", self.hosts, how)
            self._resync_nodes = True
            for service in self._view.tracked():
                self._dirty[service] = True
            self._wakeup.set()

    def _request_recycle(self) -> None:
        self._recycle_timer = None
        if self._state == SUSPENDED and not self._stopping:
            self._recycle = True
            self._wakeup.set()

    def _cancel_recycle_timer(self) -> None:
        if self._recycle_timer is not None:
            self._recycle_timer.cancel()
            self._recycle_timer = None

    def _mark_dirty(self, service: str, reload_all: bool) -> None:
        if self._view.is_tracked(service):
            self._dirty[service] = self._dirty.get(service, False) or reload_all
            self._wakeup.set()

    def _mark_stale(self, service: str, instance_id: str) -> None:
        self._stale.add((service, instance_id))
        self._mark_dirty(service, False)

    async def _work(self) -> None:
        """The one background task: new clients, re-registrations, re-reads."""
        while not self._stopping:
            await self._wakeup.wait()
            self._wakeup.clear()
            try:
                if self._recycle:
                    self._recycle = False
                    self._replace_client()
                if self._resync_nodes:
                    self._resync_nodes = False
                    await self._resync()
                while self._dirty and not self._stopping:
                    service, reload_all = self._dirty.popitem()
                    await self._refresh(service, reload_all)
            except Exception:
                # A bug here must not end discovery for the life of the process.
                logger.exception("zookeeper registry worker step failed")

    def _replace_client(self) -> None:
        """Swap in a fresh kazoo client (a new session); see "SUSPENDED for longer"."""
        old = self._client
        if old is None or self._state != SUSPENDED:
            return
        logger.warning(
            "no ZooKeeper session for %.0fs; starting a new one (%d registration(s) to re-create)",
            self.session_timeout,
            len(self._own),
        )
        self._client = self._new_client()
        self._set_state(LOST)
        self._client.start_async()  # connects in kazoo's thread; CONNECTED re-registers
        # Closing a client that cannot reach its server can take kazoo seconds:
        # let a pool thread do it rather than hold up the new session's work.
        asyncio.get_running_loop().run_in_executor(self._executor, close_client, old)

    async def _resync(self) -> None:
        client = self._client
        if client is None:
            return
        for key, instance in list(self._withdrawn.items()):
            try:
                await self._blocking(self._tree.delete, client, [instance])
                self._withdrawn.pop(key, None)
            except _FAILED as exc:
                logger.warning("could not remove %s/%s: %r", *key, exc)
        for key, instance in list(self._own.items()):
            try:
                await self._blocking(
                    self._tree.put,
                    client,
                    instance,
                    self._takeover_wait,
                    timeout=self._takeover_wait + self._op_timeout,
                )
            except _UNREACHABLE as exc:
                logger.debug("re-registration deferred to the next connection: %r", exc)
            except (KazooException, RegistryError) as exc:
                logger.error("could not re-register %s/%s: %r", *key, exc)

    async def _refresh(self, service: str, reload_all: bool) -> None:
        """Re-read one service's children (re-arming the watches) and update the view."""
        client = self._client
        if client is None:
            return
        async with self._locks.setdefault(service, asyncio.Lock()):
            stale = {iid for svc, iid in self._stale if svc == service}
            self._stale -= {(service, iid) for iid in stale}
            known = {} if reload_all else self._view.by_id(service)
            for iid in stale:
                known.pop(iid, None)
            try:
                children, fetched = await self._blocking(
                    self._tree.read,
                    client,
                    service,
                    set(known),
                    self._on_children_event,
                    self._on_data_event,
                )
            except _FAILED as exc:
                # Keep the last known view; the next CONNECTED re-reads everything.
                self._stale |= {(service, iid) for iid in stale}
                level = logging.DEBUG if isinstance(exc, _UNREACHABLE) else logging.WARNING
                logger.log(level, "could not read %s from ZooKeeper: %r", service, exc)
                return
            view: dict[str, Instance] = {}
            for iid in children:
                if iid in known:
                    view[iid] = known[iid]
                elif iid in fetched and (parsed := self._parse(service, iid, fetched[iid])):
                    view[iid] = parsed
            self._view.replace(service, view)

    def _parse(self, service: str, instance_id: str, data: bytes) -> Instance | None:
        try:
            return Instance.from_json(service, instance_id, data)
        except ValueError as exc:
            if (service, instance_id, data) not in self._warned:
                self._warned.add((service, instance_id, data))
                logger.warning("ignoring a registration that is not ours: %s", exc)
            return None

    def _require_client(self) -> Any:
        if self._client is None:
            raise RegistryError("the ZooKeeper registry is not started")
        return self._client

    async def _blocking(self, fn: Callable[..., T], *args: Any, timeout: float | None = -1.0) -> T:
        """Run a blocking kazoo call on the registry's threads.

        ``timeout`` defaults (-1) to the operation timeout; None waits as long
        as it takes. On timeout the call is abandoned, not stopped: kazoo fails
        it when the connection returns or closes, and every call is idempotent.
        asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a
        cancellation that races with the result, and stop() relies on it.
        """
        limit = self._op_timeout if timeout is not None and timeout < 0 else timeout
        loop = asyncio.get_running_loop()
        async with asyncio.timeout(limit):
            return await loop.run_in_executor(self._executor, functools.partial(fn, *args))


async def _cancel_and_wait(task: asyncio.Task[None] | None, timeout: float) -> None:
    """Cancel a helper task and wait (bounded) for it, without eating our own cancellation."""
    if task is None or task.done():
        return
    task.cancel()
    done, _ = await asyncio.wait({task}, timeout=timeout)
    if not done:
        logger.warning("zookeeper registry worker did not stop within %.1fs", timeout)
    elif not task.cancelled() and task.exception() is not None:
        logger.error("zookeeper registry worker failed", exc_info=task.exception())


def _fits_the_port(registry: ZooKeeperRegistry) -> Registry:
    """Never called: makes mypy prove that ZooKeeperRegistry implements Registry."""
    return registry
