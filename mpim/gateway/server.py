"""The gateway: accepts TCP clients, runs their sessions, routes pushes to them."""

from __future__ import annotations

import asyncio
import functools
import itertools
import logging

from mpim import __version__
from mpim.bus.base import BarrierBus, Bus
from mpim.config import GatewaySettings
from mpim.errors import ErrorCode
from mpim.gateway.dispatcher import Dispatcher
from mpim.gateway.handlers import GatewayContext, detach
from mpim.gateway.http import HttpServer
from mpim.gateway.hub import SessionHub
from mpim.gateway.pull_barrier import PullBarrier
from mpim.gateway.session import Session
from mpim.gateway.tcp import TcpConnection, prepare_listener
from mpim.gateway.transport import Transport
from mpim.metrics.families import GatewayMetrics
from mpim.services.bundle import Services

logger = logging.getLogger(__name__)


class Gateway:
    """Lifecycle: ``start()`` binds and serves, ``stop()`` drains and closes."""

    def __init__(
        self,
        settings: GatewaySettings,
        services: Services,
        bus: Bus,
        *,
        pipeline_sends: bool = True,
        several_gateways: bool = False,
        metrics: GatewayMetrics | None = None,
    ) -> None:
        """``pipeline_sends``: the message service commits sends in submission
        order, so one connection's sends may overlap. ``several_gateways``:
        several message services push to this gateway, and a PULL waits for
        every gateway's marks (``pull_barrier.py``), which needs a bus that
        carries barriers."""
        self.settings = settings
        self._bus = bus
        self.metrics = metrics if metrics is not None else GatewayMetrics()
        self.hub = SessionHub(
            services.message, reorder_pushes=several_gateways, metrics=self.metrics
        )
        self.pull_barrier: PullBarrier | None = None
        if several_gateways:
            if not isinstance(bus, BarrierBus):
                raise TypeError("several gateways need a bus that carries mark barriers")
            rounds = self.metrics.pull_barriers
            self.pull_barrier = PullBarrier(
                bus,
                settings.gateway_id,
                self.hub.flush_marks,
                count_round=lambda outcome: rounds.labels(outcome).inc(),
            )
        self.ctx = GatewayContext(
            services, self.hub, settings, settings.gateway_id, self.metrics, self.settle_marks
        )
        self.dispatcher = Dispatcher(self.ctx, pipeline_sends=pipeline_sends)
        self.sessions: set[Session] = set()
        self.metrics.track_connections(lambda: len(self.sessions))
        self._ids = itertools.count(1)
        self._server: asyncio.Server | None = None
        self._idle_sweeper: asyncio.Task[None] | None = None
        self._greeting = f"+OK welcome mpim {__version__}"
        # Bound once, not per connection: every session and connection keeps
        # references to these, and a bound method is a new object each time.
        self._make_session = self._new_session
        self._dispatch = self.dispatcher.begin
        self._closed_callback = self._session_closed
        self._protocol_factory = functools.partial(
            TcpConnection,
            self._make_session,
            settings.max_line_bytes,
            self._greeting.encode() + b"\n",
            settings.tcp_keepalive_seconds,
        )
        # WebSocket at /ws and the web client (settings.http_enabled).
        self.http: HttpServer | None = None

    async def settle_marks(self) -> None:
        """Before a PULL (a client's, or the repair's): every gateway's marks
        stored, this one's last (the barrier may take a while, and this
        gateway keeps pushing meanwhile)."""
        if self.pull_barrier is not None:
            await self.pull_barrier.everyone_stored()
        await self.hub.flush_marks()

    @property
    def port(self) -> int:
        assert self._server is not None
        return int(self._server.sockets[0].getsockname()[1])

    @property
    def http_port(self) -> int:
        """The bound HTTP/WebSocket port (useful when settings ask for port 0)."""
        assert self.http is not None, "HTTP endpoint not enabled or not started"
        return self.http.port

    async def start(self) -> None:
        barrier = self.pull_barrier
        await self._bus.subscribe(
            self.settings.gateway_id,
            self.hub.on_push,
            on_barrier=barrier.asked if barrier is not None else None,
        )
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            self._protocol_factory,
            self.settings.host,
            self.settings.port,
            reuse_address=True,
            backlog=4096,
            start_serving=False,
        )
        for sock in self._server.sockets:
            prepare_listener(sock, self.settings.tcp_keepalive_seconds)
        await self._server.start_serving()
        if self.settings.http_enabled:
            self.http = HttpServer(self.settings, self._make_session, self._greeting)
            await self.http.start()
        if self.settings.idle_timeout_seconds > 0:
            self._idle_sweeper = loop.create_task(self._sweep_idle(), name="mpim-idle-sweep")

    async def _sweep_idle(self) -> None:
        """Close logged-in connections silent for a whole timeout.

        One task for all connections rather than a timer each: a sweep every
        half timeout, and a session silent for two sweeps in a row is closed,
        so a silent client goes after between 1 and 1.5 timeouts.
        """
        notice = f"-ERR {ErrorCode.IDLE_TIMEOUT.value}"
        while True:
            await asyncio.sleep(self.settings.idle_timeout_seconds / 2)
            for session in list(self.sessions):
                if session.uid is None:
                    continue  # the login timeout covers these
                session.idle_sweeps += 1
                if session.idle_sweeps >= 2:
                    logger.info("idle timeout", extra={"conn": session.conn_id, "uid": session.uid})
                    session.close_with(notice)

    def _new_session(self, conn: Transport) -> Session:
        refuse = None
        if len(self.sessions) >= self.settings.max_connections:
            logger.warning(
                "gateway full (%d connections); refusing a connection",
                len(self.sessions),
                extra={"peer": conn.peer},
            )
            refuse = f"-ERR {ErrorCode.SERVER_BUSY.value}"
        session = Session(
            f"{self.settings.gateway_id}-{next(self._ids)}",
            conn,
            self.settings,
            self._dispatch,
            self._closed_callback,
            refuse=refuse,
        )
        self.sessions.add(session)
        self.metrics.connections.labels(conn.kind).inc()
        return session

    async def _session_closed(self, session: Session) -> None:
        self.sessions.discard(session)
        if session.dropped_slow:
            self.metrics.slow_consumer_disconnects.inc()
        try:
            await detach(self.ctx, session)
        except Exception:
            logger.exception("cleanup failed", extra={"conn": session.conn_id})

    async def stop(self) -> None:
        """Stop accepting, let in-flight commands finish, tell clients, close."""
        if self._idle_sweeper is not None:
            self._idle_sweeper.cancel()
        if self._server is not None:
            self._server.close()
        if self.http is not None:
            self.http.close()
        notice = f"-ERR {ErrorCode.SERVER_SHUTTING_DOWN.value}"
        grace = self.settings.shutdown_grace_seconds
        await asyncio.gather(*(s.shutdown(grace, notice) for s in list(self.sessions)))
        # Sessions are closed: nothing more is written. Store the marks while
        # still subscribed, so a PULL elsewhere can ask for them until then.
        await self.hub.stop()
        if self.pull_barrier is not None:
            await self.pull_barrier.stop()
        await self._bus.unsubscribe(self.settings.gateway_id)
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None
        if self.http is not None:
            await self.http.wait_closed()
            self.http = None
