"""``/metrics``, ``/healthz`` and ``/readyz``: what every MPIM process answers.

A gateway mounts them on its HTTP port (``OpsEndpoints.mount``); a service
process, which has no HTTP port of its own, runs ``OpsHttpServer`` on its
metrics port. Both answer from the same ``OpsEndpoints``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from http import HTTPStatus
from typing import TYPE_CHECKING, Any, Final

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from mpim.metrics.health import Readiness, render_report

if TYPE_CHECKING:
    from mpim.gateway.http import HttpServer

logger = logging.getLogger(__name__)

_MAX_REQUEST_BYTES: Final = 8192
_REQUEST_TIMEOUT_SECONDS: Final = 5.0


@dataclass(frozen=True, slots=True)
class OpsReply:
    status: HTTPStatus
    body: bytes
    content_type: str = "text/plain; charset=utf-8"


class OpsEndpoints:
    def __init__(self, registry: CollectorRegistry, readiness: Readiness) -> None:
        self.registry = registry
        self.readiness = readiness
        self.routes: dict[str, Callable[[], Awaitable[OpsReply]]] = {
            "/metrics": self.metrics,
            "/healthz": self.healthz,
            "/readyz": self.readyz,
        }

    async def metrics(self) -> OpsReply:
        return OpsReply(HTTPStatus.OK, generate_latest(self.registry), CONTENT_TYPE_LATEST)

    async def healthz(self) -> OpsReply:
        """Alive: the event loop got round to answering."""
        return OpsReply(HTTPStatus.OK, b"ok\n")

    async def readyz(self) -> OpsReply:
        ready, body = render_report(await self.readiness.run())
        return OpsReply(HTTPStatus.OK if ready else HTTPStatus.SERVICE_UNAVAILABLE, body)

    def mount(self, http: HttpServer) -> None:
        """Serve the endpoints on a gateway's HTTP port."""
        from mpim.gateway.http import HttpReply

        for path, route in self.routes.items():

            async def handler(
                _: object, route: Callable[[], Awaitable[OpsReply]] = route
            ) -> HttpReply:
                reply = await route()
                return HttpReply(reply.status, reply.body, reply.content_type)

            http.add_route(path, handler)


def _gateway_route(route: Callable[[], Awaitable[OpsReply]]) -> Callable[[object], Awaitable[Any]]:
    from mpim.gateway.http import HttpReply

    async def handler(_: object) -> HttpReply:
        reply = await route()
        return HttpReply(reply.status, reply.body, reply.content_type)

    return handler


class OpsHttpServer:
    """A minimal HTTP/1.1 GET server for the ops endpoints: one request per connection."""

    def __init__(self, endpoints: OpsEndpoints) -> None:
        self._endpoints = endpoints
        self._server: asyncio.Server | None = None

    @property
    def port(self) -> int:
        assert self._server is not None, "OpsHttpServer.start() first"
        return int(self._server.sockets[0].getsockname()[1])

    async def start(self, host: str, port: int) -> None:
        self._server = await asyncio.start_server(
            self._serve, host, port, reuse_address=True, limit=_MAX_REQUEST_BYTES
        )

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            async with asyncio.timeout(_REQUEST_TIMEOUT_SECONDS):
                reply, head = await self._answer(reader)
            writer.write(_encode(reply, head))
            await writer.drain()
        except (TimeoutError, ConnectionError, asyncio.IncompleteReadError, ValueError):
            pass  # a client that does not finish its request gets nothing
        except Exception:
            logger.exception("ops endpoint failed")
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _answer(self, reader: asyncio.StreamReader) -> tuple[OpsReply, bool]:
        request_line = await reader.readuntil(b"\r\n")
        while (await reader.readuntil(b"\r\n")) != b"\r\n":
            pass  # headers: nothing here needs them
        parts = request_line.decode("latin-1").split()
        if len(parts) != 3:
            return OpsReply(HTTPStatus.BAD_REQUEST, b"bad request\n"), False
        method, target, _ = parts
        if method not in ("GET", "HEAD"):
            return OpsReply(HTTPStatus.METHOD_NOT_ALLOWED, b"GET only\n"), False
        route = self._endpoints.routes.get(target.split("?", 1)[0])
        if route is None:
            return OpsReply(HTTPStatus.NOT_FOUND, b"not found\n"), method == "HEAD"
        return await route(), method == "HEAD"


def _encode(reply: OpsReply, head: bool) -> bytes:
    header = (
        f"HTTP/1.1 {reply.status.value} {reply.status.phrase}\r\n"
        f"Content-Type: {reply.content_type}\r\n"
        f"Content-Length: {len(reply.body)}\r\n"
        "Connection: close\r\n\r\n"
    ).encode()
    return header if head else header + reply.body
