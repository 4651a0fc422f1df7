"""The gateway's HTTP port: WebSocket at ``/ws``, the web client at ``/``, more routes.

One listener (``http_host:http_port``, default 6001) built on the
``websockets`` asyncio server: its ``process_request`` hook answers plain HTTP
GETs, and only ``/ws`` goes on to the WebSocket handshake, where the
connection becomes a ``Session`` through ``ws.WebSocketTransport``.

Other endpoints (``/metrics``, ``/healthz``, ``/readyz``) plug in with
``add_route`` before or after ``start()``; a route handler gets the request
and returns an ``HttpReply``. Static files come from a fixed set read once at
start-up, looked up by exact name, so no request path can reach any other file.
"""

from __future__ import annotations

import asyncio
import email.utils
import inspect
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from http import HTTPStatus
from pathlib import Path
from typing import Any, Final
from urllib.parse import unquote

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.http11 import Request, Response

from mpim.config import GatewaySettings
from mpim.gateway.ws import MpimServerConnection, WebSocketTransport, WsSessionFactory

logger = logging.getLogger(__name__)

WS_PATH: Final = "/ws"
WEB_ROOT: Final = Path(__file__).resolve().parent.parent / "web"

# websockets' defaults: a ping every 20 s, and a connection whose pong does not
# come back within 20 s is closed. Browsers answer pings by themselves.
PING_INTERVAL_SECONDS: Final = 20.0
PING_TIMEOUT_SECONDS: Final = 20.0
# How long a closing handshake may take before the socket is dropped; short,
# so a silent client cannot hold up a graceful shutdown.
CLOSE_TIMEOUT_SECONDS: Final = 2.0
# Same high-water mark as the TCP transport: above it the session stops
# executing commands until the client reads.
WRITE_HIGH_WATER: Final = 256 * 1024

CONTENT_TYPES: Final[Mapping[str, str]] = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".mjs": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".json": "application/json",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".ico": "image/x-icon",
    ".txt": "text/plain; charset=utf-8",
    ".woff2": "font/woff2",
}

# The web client loads only its own scripts and styles and talks only to this
# origin (CSP 'self' covers ws:// on the same host and port). No inline code,
# no framing, so injected markup could not run even if it slipped in.
CSP: Final = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "font-src 'self'; connect-src 'self'; manifest-src 'self'; base-uri 'none'; "
    "form-action 'none'; frame-ancestors 'none'"
)
SECURITY_HEADERS: Final = (
    ("Content-Security-Policy", CSP),
    ("X-Content-Type-Options", "nosniff"),
    ("X-Frame-Options", "DENY"),
    ("Referrer-Policy", "no-referrer"),
    ("Cross-Origin-Opener-Policy", "same-origin"),
)


@dataclass(frozen=True, slots=True)
class HttpReply:
    """What a route answers; the server adds length, date and security headers."""

    status: HTTPStatus
    body: bytes = b""
    content_type: str = "text/plain; charset=utf-8"
    headers: tuple[tuple[str, str], ...] = ()

    @classmethod
    def text(cls, status: HTTPStatus, text: str) -> HttpReply:
        return cls(status, text.encode())


RouteHandler = Callable[[Request], HttpReply | Awaitable[HttpReply]]


class StaticFiles:
    """The web client's files, read once, served by exact name only."""

    def __init__(self, files: Mapping[str, tuple[str, bytes]]) -> None:
        self._files = dict(files)

    @classmethod
    def load(cls, root: Path) -> StaticFiles:
        """Every file under ``root`` with a known type; dotfiles are skipped.

        Blocking file I/O: call it off the event loop (``start`` does).
        """
        files: dict[str, tuple[str, bytes]] = {}
        if root.is_dir():
            for path in sorted(root.rglob("*")):
                rel = path.relative_to(root)
                if not path.is_file() or any(p.startswith(".") for p in rel.parts):
                    continue
                content_type = CONTENT_TYPES.get(path.suffix.lower())
                if content_type is not None:
                    files[rel.as_posix()] = (content_type, path.read_bytes())
        else:
            logger.warning("web client directory %s is missing; / will answer 404", root)
        return cls(files)

    def __len__(self) -> int:
        return len(self._files)

    def lookup(self, url_path: str) -> HttpReply:
        name = unquote(url_path).lstrip("/") or "index.html"
        parts = name.split("/")
        if any(p in ("", ".", "..") or p.startswith(".") for p in parts) or "\\" in name:
            return HttpReply.text(HTTPStatus.BAD_REQUEST, "bad path\n")
        found = self._files.get(name)
        if found is None:
            return HttpReply.text(HTTPStatus.NOT_FOUND, "not found\n")
        content_type, body = found
        return HttpReply(HTTPStatus.OK, body, content_type, (("Cache-Control", "no-cache"),))


class _DebugInfo(logging.LoggerAdapter[logging.Logger]):
    """websockets logs every connection open/close and HTTP reply at INFO.

    For a gateway those are wire traces, which belong at DEBUG; warnings and
    errors keep their level.
    """

    def log(self, level: int, msg: object, *args: Any, **kwargs: Any) -> None:
        super().log(logging.DEBUG if level == logging.INFO else level, msg, *args, **kwargs)


class HttpServer:
    """Lifecycle: ``start()`` binds, ``close()`` stops accepting, ``wait_closed()``.

    Open WebSocket sessions are not closed by ``close()``: the gateway shuts
    them down like TCP sessions (finish the command, send the notice, close),
    and ``wait_closed()`` then waits for their connections to end.
    """

    def __init__(
        self,
        settings: GatewaySettings,
        make_session: WsSessionFactory,
        greeting: str,
        *,
        web_root: Path = WEB_ROOT,
        ping_interval: float | None = PING_INTERVAL_SECONDS,
        ping_timeout: float | None = PING_TIMEOUT_SECONDS,
    ) -> None:
        self._settings = settings
        self._make_session = make_session
        self._greeting = greeting
        self._web_root = web_root
        self._ping_interval = ping_interval
        self._ping_timeout = ping_timeout
        self._routes: dict[str, RouteHandler] = {}
        self._static = StaticFiles({})
        self._server: Server | None = None

    def add_route(self, path: str, handler: RouteHandler) -> None:
        """Answer GET ``path`` (exact, query string ignored) with ``handler``."""
        if path == WS_PATH or not path.startswith("/"):
            raise ValueError(f"cannot route {path!r}")
        self._routes[path] = handler

    @property
    def port(self) -> int:
        assert self._server is not None, "HttpServer.start() first"
        return int(self._server.sockets[0].getsockname()[1])

    async def start(self) -> None:
        self._static = await asyncio.to_thread(StaticFiles.load, self._web_root)
        max_line = self._settings.max_line_bytes
        host, port = self._settings.http_host, self._settings.http_port
        try:
            self._server = await self._serve(host, port, max_line)
        except OSError as exc:
            # Say which of the gateway's two ports failed.
            raise OSError(exc.errno, f"{exc.strerror} (HTTP port {host}:{port})") from exc
        logger.info(
            "http listening on %s:%d (websocket %s, %d web client files)",
            host,
            self.port,
            WS_PATH,
            len(self._static),
        )

    async def _serve(self, host: str, port: int, max_line: int) -> Server:
        return await serve(
            self._handle_ws,
            host,
            port,
            process_request=self._process_request,
            create_connection=MpimServerConnection,
            # Frames up to twice the line limit get the protocol's
            # "-ERR line too long"; bigger ones are refused by websockets
            # (close 1009) before they are buffered.
            max_size=2 * max_line + 2,
            write_limit=WRITE_HIGH_WATER,
            compression=None,
            ping_interval=self._ping_interval,
            ping_timeout=self._ping_timeout,
            close_timeout=CLOSE_TIMEOUT_SECONDS,
            server_header=None,
            logger=_DebugInfo(logger, {}),
            reuse_address=True,
            backlog=4096,
        )

    def close(self) -> None:
        """Stop accepting; open WebSocket connections stay up for a graceful shutdown."""
        if self._server is not None:
            self._server.close(close_connections=False)

    async def wait_closed(self) -> None:
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None

    # -- requests -------------------------------------------------------------

    async def _process_request(
        self, connection: ServerConnection, request: Request
    ) -> Response | None:
        path = request.path.split("?", 1)[0]
        if path == WS_PATH:
            return None  # go on with the WebSocket handshake
        if request.method not in ("GET", "HEAD"):
            reply = HttpReply(HTTPStatus.METHOD_NOT_ALLOWED, b"", headers=(("Allow", "GET, HEAD"),))
            return _response(reply, head=False)
        route = self._routes.get(path)
        if route is None:
            reply = self._static.lookup(path)
        else:
            result = route(request)
            reply = await result if inspect.isawaitable(result) else result
        return _response(reply, head=request.method == "HEAD")

    async def _handle_ws(self, connection: ServerConnection) -> None:
        assert isinstance(connection, MpimServerConnection)
        transport = WebSocketTransport(connection, self._settings.max_line_bytes)
        await transport.serve(self._make_session, self._greeting)


def _response(reply: HttpReply, *, head: bool) -> Response:
    """The full response; for HEAD the same headers without the body."""
    headers = Headers(
        [
            ("Date", email.utils.formatdate(usegmt=True)),
            ("Connection", "close"),
            ("Content-Type", reply.content_type),
            ("Content-Length", str(len(reply.body))),
            *SECURITY_HEADERS,
            *reply.headers,
        ]
    )
    body = b"" if head else reply.body
    return Response(reply.status.value, reply.status.phrase, headers, body)
