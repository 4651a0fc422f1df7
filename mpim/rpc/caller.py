"""The base of every generated gRPC client: deadlines, retries, error mapping."""

from __future__ import annotations

import logging
import time
from typing import TypeVar

import grpc
from google.protobuf.message import Message

from mpim.errors import ErrorCode, MpimError
from mpim.rpc.errors import RETRYABLE, from_rpc_error
from mpim.rpc.pool import ChannelPool

logger = logging.getLogger(__name__)

R = TypeVar("R", bound=Message)


class RpcCaller:
    """Calls one service through a ChannelPool.

    Every call has a deadline. Reads listed as idempotent are retried once on
    another instance when the first fails in transport; writes never are (a
    send may have committed), and the client sees ``-ERR service unavailable``.
    """

    IDEMPOTENT: frozenset[str] = frozenset()

    def __init__(self, pool: ChannelPool, deadline_seconds: float) -> None:
        self._pool = pool
        self._deadline = deadline_seconds
        self.calls = 0
        self.failures = 0

    async def _invoke(self, method: str, path: str, request: Message, reply_cls: type[R]) -> R:
        started = time.perf_counter()
        outcome = "ok"
        try:
            return await self._attempts(method, path, request, reply_cls)
        except MpimError as exc:
            outcome = exc.code.value
            raise
        finally:
            elapsed = time.perf_counter() - started
            self._pool.metrics.observe(False, self._pool.service, method, outcome, elapsed)

    async def _attempts(self, method: str, path: str, request: Message, reply_cls: type[R]) -> R:
        self.calls += 1
        attempts = 2 if method in self.IDEMPOTENT else 1
        tried: str | None = None
        for attempt in range(attempts):
            picked = self._pool.pick(exclude=tried)
            if picked is None:
                if attempt == 0 and tried is None:
                    self.failures += 1
                    raise MpimError(ErrorCode.SERVICE_UNAVAILABLE)
                break
            tried = picked.instance_id
            call = picked.method(path, type(request).SerializeToString, reply_cls.FromString)
            try:
                reply: R = await call(request, timeout=self._deadline)
                return reply
            except grpc.aio.AioRpcError as exc:
                if exc.code() == grpc.StatusCode.UNAVAILABLE:
                    self._pool.penalise(tried)
                if exc.code() not in RETRYABLE or attempt + 1 == attempts:
                    if exc.code() in RETRYABLE:
                        self.failures += 1
                        logger.warning(
                            "%s.%s on %s failed: %s", self._pool.service, method, tried, exc.code()
                        )
                    raise from_rpc_error(exc) from None
                logger.info(
                    "%s.%s on %s: %s; retrying elsewhere",
                    self._pool.service,
                    method,
                    tried,
                    exc.code(),
                )
        self.failures += 1
        raise MpimError(ErrorCode.SERVICE_UNAVAILABLE)
