"""What the Redis adapters share: a client built from settings, and a breaker.

Redis is a helper in MPIM, never the truth, so every adapter degrades instead
of failing when it is gone. Two things make that cheap and quiet:

- ``redis_client`` turns off redis-py's built-in retries (by default ten,
  with back-off up to a second each), so one request costs at most one socket
  timeout and a PUBLISH is never sent twice; the adapters decide what to do
  on failure.
- Its pool makes a request wait for a free connection. redis-py's default
  pool instead raises ``MaxConnectionsError`` beyond 100 connections, which a
  burst of logins reached in the presence service: the breaker took it for
  an outage and routes were silently not written, so those users got no
  pushes until they synced.
- ``Breaker`` remembers that Redis is down, so during an outage requests skip
  Redis at once instead of each paying a timeout, lets one request probe
  again every ``retry_interval_seconds``, and logs one WARNING when an outage
  starts and one INFO when it ends.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

from redis.asyncio import BlockingConnectionPool, Redis
from redis.backoff import NoBackoff
from redis.exceptions import RedisError
from redis.maint_notifications import MaintNotificationsConfig
from redis.retry import Retry

from mpim.config import RedisSettings

logger = logging.getLogger(__name__)

_UP, _SUSPECT, _DOWN = "up", "suspect", "down"

# What a failed Redis call can raise: redis-py wraps socket errors in its own
# ConnectionError/TimeoutError, but a raw OSError can still escape connect.
REDIS_ERRORS: tuple[type[Exception], ...] = (RedisError, OSError)


def redis_client(settings: RedisSettings) -> Redis:
    """A client for ``settings.url``; it connects lazily, on first use.

    Short connect and read timeouts (``socket_timeout_seconds``) bound what a
    request can lose to a dead or frozen server. The caller owns the client
    and closes it with ``await client.aclose()``.
    """
    pool = BlockingConnectionPool.from_url(
        settings.url,
        max_connections=settings.max_connections,
        timeout=settings.socket_timeout_seconds,  # waiting for a free connection
        socket_timeout=settings.socket_timeout_seconds,
        socket_connect_timeout=settings.socket_timeout_seconds,
        retry=Retry(NoBackoff(), 0),
        decode_responses=False,
        # Cluster-maintenance hints: an extra round trip per connection, and
        # they may relax timeouts to 10 s - the opposite of what we need.
        maint_notifications_config=MaintNotificationsConfig(enabled=False),
    )
    return Redis.from_pool(pool)  # the client owns the pool: aclose() closes it


class Breaker:
    """Is Redis usable right now? Logs each outage once; paces the probes.

    ``attempt()`` returns a generation token, or None when the caller should
    skip Redis. The generation changes at every transition, so a call that
    started before an outage and succeeds after it cannot declare the outage
    over: only a probe (a call let through while not up) can, via
    ``succeeded(token)``.

    One failure only makes Redis *suspect* and lets the next call probe at
    once: after a Redis restart every pooled connection fails once, which is
    not an outage (the caller drops the idle ones, see
    ``drop_idle_connections``). A second failure in a row is an outage: one
    WARNING, then one probe at most every ``retry_interval_seconds``.
    """

    def __init__(
        self,
        name: str,
        log: logging.Logger,
        retry_interval_seconds: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._name = name
        self._log = log
        self._interval = retry_interval_seconds
        self._clock = clock
        self._state = _UP
        self._generation = 0
        self._since = 0.0
        self._next_probe = 0.0
        self.outages = 0
        self.failures = 0
        self.skipped = 0

    @property
    def up(self) -> bool:
        return self._state == _UP

    @property
    def in_outage(self) -> bool:
        """True once an outage has been declared (and logged)."""
        return self._state == _DOWN

    def attempt(self) -> int | None:
        """A token to try Redis with, or None to skip it (counted)."""
        if self._state == _UP:
            return self._generation
        now = self._clock()
        if now >= self._next_probe:
            self._next_probe = now + self._interval
            return self._generation
        self.skipped += 1
        return None

    def failed(self, exc: BaseException) -> bool:
        """Record a failed call; True if Redis was up until now."""
        self.failures += 1
        now = self._clock()
        if self._state == _UP:
            self._state = _SUSPECT
            self._generation += 1
            self._since = now
            self._next_probe = now
            self._log.debug("redis %s call failed (%s); probing again", self._name, exc)
            return True
        self._next_probe = now + self._interval
        if self._state == _SUSPECT:
            self._state = _DOWN
            self.outages += 1
            self._log.warning(
                "redis %s unreachable (%s: %s); carrying on without it, retrying every %.1fs",
                self._name,
                type(exc).__name__,
                exc,
                self._interval,
            )
        return False

    def succeeded(self, token: int) -> None:
        """A call made with ``token`` worked; ends the outage if it was a probe."""
        if token == self._generation:
            self.recovered()

    def recovered(self) -> None:
        """Redis works again (for callers that know no older call is in flight)."""
        if self._state == _DOWN:
            elapsed = self._clock() - self._since
            self._log.info("redis %s reachable again after %.1fs", self._name, elapsed)
        elif self._state == _SUSPECT:
            self._log.debug("redis %s reconnected", self._name)
        else:
            return
        self._state = _UP
        self._generation += 1


async def drop_idle_connections(redis: Redis) -> None:
    """Close the pool's idle connections after a failure.

    If the server restarted they are all dead, and each would fail one more
    call; fresh connections are opened lazily on the next use.
    """
    try:
        await redis.connection_pool.disconnect(inuse_connections=False)
    except REDIS_ERRORS as exc:
        logger.debug("closing idle redis connections: %s", exc)


def raise_if_cancelling() -> None:
    """Re-raise a cancellation that a library swallowed.

    On Python 3.11, ``asyncio.wait_for`` (which redis-py uses to send every
    command) returns normally when the cancel lands just as the send
    completes (CPython gh-86296, fixed in 3.12). The task still counts the
    request, so long-running loops check here and stop as they were asked.
    """
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


async def cancel_and_wait(task: asyncio.Task[Any], log: logging.Logger) -> None:
    """Cancel ``task`` and wait until it has finished, cancelling again if a
    cancellation gets lost (see ``raise_if_cancelling``). Our own cancellation
    still propagates."""
    while not task.done():
        task.cancel()
        await asyncio.wait([task], timeout=0.5)
    if not task.cancelled() and task.exception() is not None:
        log.error("task %s had failed", task.get_name(), exc_info=task.exception())


def as_text(value: bytes | str) -> str:
    """A value Redis returned, as text. Malformed bytes do not raise: what is
    read here (ids, tokens, channel names) is checked where it is used."""
    return value.decode(errors="replace") if isinstance(value, bytes) else value
