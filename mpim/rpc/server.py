"""Serve any object implementing a generated service interface over grpc.aio.

Handlers are built from the service descriptor, so there is no hand-written
servicer per service: the same ``*ServiceImpl`` object that embedded mode
calls directly is what the network reaches.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import grpc
from google.protobuf import message_factory
from google.protobuf.descriptor import MethodDescriptor, ServiceDescriptor
from google.protobuf.message import Message

from mpim.errors import MpimError
from mpim.metrics.families import RpcMetrics
from mpim.rpc.errors import BUSINESS_STATUS

logger = logging.getLogger(__name__)

Behavior = Callable[[Any, grpc.aio.ServicerContext[Any, Any]], Awaitable[Message]]


def _behavior(
    method: MethodDescriptor, fn: Callable[[Any], Awaitable[Message]], metrics: RpcMetrics
) -> Behavior:
    service = method.containing_service.name.removesuffix("Service").lower()  # as callers name it

    async def call(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Message:
        started = time.perf_counter()
        outcome = "ok"
        try:
            return await fn(request)
        except MpimError as exc:
            outcome = exc.code.value
            await context.abort(BUSINESS_STATUS, exc.code.value)
            raise  # unreachable: abort raises
        except Exception:
            outcome = "internal"
            logger.exception("%s failed", method.full_name)
            await context.abort(grpc.StatusCode.INTERNAL, "internal error")
            raise
        finally:
            metrics.observe(True, service, method.name, outcome, time.perf_counter() - started)

    return call


def service_handler(
    impl: object, service: ServiceDescriptor, metrics: RpcMetrics | None = None
) -> grpc.GenericRpcHandler:
    """A generic handler routing every method of ``service`` to ``impl``."""
    metrics = metrics if metrics is not None else RpcMetrics()
    handlers = {}
    for method in service.methods:
        fn = getattr(impl, method.name)
        request_cls = message_factory.GetMessageClass(method.input_type)
        reply_cls = message_factory.GetMessageClass(method.output_type)
        handlers[method.name] = grpc.unary_unary_rpc_method_handler(
            _behavior(method, fn, metrics),
            request_deserializer=request_cls.FromString,
            response_serializer=reply_cls.SerializeToString,
        )
    return grpc.method_handlers_generic_handler(service.full_name, handlers)


class RpcServer:
    """One grpc.aio server hosting one or more services."""

    def __init__(self, metrics: RpcMetrics | None = None) -> None:
        self.metrics = metrics if metrics is not None else RpcMetrics()
        self._server = grpc.aio.server(
            options=[
                ("grpc.max_receive_message_length", 16 * 1024 * 1024),
                ("grpc.so_reuseport", 0),
            ]
        )
        self.port = 0

    def add(self, impl: object, service: ServiceDescriptor) -> None:
        self._server.add_generic_rpc_handlers((service_handler(impl, service, self.metrics),))

    def add_handler(self, handler: grpc.GenericRpcHandler) -> None:
        self._server.add_generic_rpc_handlers((handler,))

    @property
    def grpc_server(self) -> grpc.aio.Server:
        return self._server

    async def start(self, host: str, port: int) -> int:
        self.port = self._server.add_insecure_port(f"{host}:{port}")
        if self.port == 0:
            raise OSError(f"cannot listen on {host}:{port}")
        await self._server.start()
        return self.port

    async def stop(self, grace: float) -> None:
        """Refuse new calls, let running ones finish for ``grace`` seconds."""
        await self._server.stop(grace)
