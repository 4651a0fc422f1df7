"""A TCP forwarder a test can cut: the fault injector for outages of a shared server.

The machine's MariaDB is shared, so a test cannot stop it. Instead the
cluster's store URL points at a ``FaultProxy`` that forwards to the real
server byte for byte, and the test switches it ``down`` (every open
connection is reset at once; new ones are refused, as when mysqld died, or
accepted and never answered, as when it hangs; or, ``freeze``, open
connections stay open and go silent, as when mysqld is stopped or a network
drops packets without a reset) and ``up`` again.
The server behind it stays real: nothing is mocked.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
from typing import Literal

from sqlalchemy.engine import make_url

Mode = Literal["refuse", "blackhole", "freeze"]
_CHUNK = 1 << 16


class FaultProxy:
    """Forwards ``127.0.0.1:<port>`` to ``target``; ``down()`` / ``up()`` switch it."""

    def __init__(self, target_host: str, target_port: int, port: int = 0) -> None:
        self.target = (target_host, target_port)
        self.port = port
        self.is_up = False
        self._server: asyncio.Server | None = None
        self._handlers: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()
        self._flowing = asyncio.Event()  # cleared while frozen
        self._flowing.set()

    @classmethod
    def for_url(cls, url: str) -> FaultProxy:
        """A proxy in front of the server a SQLAlchemy URL names."""
        parsed = make_url(url)
        return cls(parsed.host or "127.0.0.1", parsed.port or 3306)

    def proxied(self, url: str) -> str:
        """``url`` with its host and port replaced by this proxy's."""
        return make_url(url).set(host="127.0.0.1", port=self.port).render_as_string(False)

    async def start(self) -> None:
        await self._listen()
        self.is_up = True

    async def down(self, mode: Mode = "refuse") -> None:
        """Until ``up()``: close every open connection and refuse new ones,
        or (``blackhole``) accept them and never answer; or (``freeze``)
        forward nothing more on the open ones and never answer new ones."""
        self.is_up = False
        if mode == "refuse":
            await self._close_listener()
        elif mode == "blackhole":
            self._drop_all()
        else:
            self._flowing.clear()

    async def up(self) -> None:
        """Forward again; connections held by a blackhole or a freeze are closed."""
        self._drop_all()
        self._flowing.set()
        if self._server is None:
            await self._listen()
        self.is_up = True

    async def stop(self) -> None:
        self.is_up = False
        await self._close_listener()
        # Every handler ends once its sockets are gone; none is left pending.
        if self._handlers:
            await asyncio.wait(self._handlers, timeout=5)

    # -- internals -----------------------------------------------------------

    async def _listen(self) -> None:
        # The same port every time: the store URL the cluster was given must
        # keep working after an outage.
        self._server = await asyncio.start_server(
            self._accept, "127.0.0.1", self.port, reuse_address=True
        )
        self.port = int(self._server.sockets[0].getsockname()[1])

    async def _close_listener(self) -> None:
        """Stop listening (connects are refused from here on) and drop every connection."""
        server, self._server = self._server, None
        if server is not None:
            server.close()
        self._drop_all()
        if server is not None:
            await server.wait_closed()

    def _drop_all(self) -> None:
        """Reset every connection at once (SO_LINGER 0: RST, like a dead peer)."""
        for writer in list(self._writers):
            sock = writer.get_extra_info("socket")
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            writer.transport.abort()
        self._writers.clear()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        try:
            await self._serve(reader, writer)
        finally:
            self._handlers.discard(task)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        if not self.is_up:  # blackhole: hold the connection silently until up()
            try:
                await reader.read()  # returns when up() or the client closes it
            finally:
                self._writers.discard(writer)
                writer.transport.abort()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            self._writers.discard(writer)
            writer.transport.abort()
            return
        self._writers.add(up_writer)
        pumps = [
            asyncio.create_task(self._pump(reader, up_writer)),
            asyncio.create_task(self._pump(up_reader, writer)),
        ]
        try:
            await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for pump in pumps:
                pump.cancel()
            await asyncio.gather(*pumps, return_exceptions=True)
            for w in (writer, up_writer):
                self._writers.discard(w)
                w.transport.abort()

    async def _pump(self, src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, OSError):
            while data := await src.read(_CHUNK):
                await self._flowing.wait()
                if dst.is_closing():
                    return  # dropped by up() while frozen: what was held goes
                dst.write(data)
                await dst.drain()
