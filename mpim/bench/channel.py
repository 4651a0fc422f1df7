"""Messages between the parent and its workers over one ``multiprocessing`` pipe each.

A message is ``(kind, payload)``. Worker → parent: ``progress``, ``ready``,
``sent``, ``result``, ``error``. Parent → worker: ``go``, ``expect``, ``stop``.
The worker side plugs the pipe into its event loop with ``add_reader`` so
waiting for the parent never blocks the connections it is holding.
"""

from __future__ import annotations

import asyncio
import logging
from multiprocessing.connection import Connection
from typing import Any, Final

logger = logging.getLogger(__name__)

PROGRESS: Final = "progress"
READY: Final = "ready"
SENT: Final = "sent"
RESULT: Final = "result"
ERROR: Final = "error"
GO: Final = "go"
EXPECT: Final = "expect"
STOP: Final = "stop"

Message = tuple[str, Any]


class WorkerChannel:
    """The worker's end: ``send`` is immediate, ``receive`` awaits the parent."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn
        self._inbox: asyncio.Queue[Message] = asyncio.Queue()
        self._loop = asyncio.get_running_loop()
        self._loop.add_reader(conn.fileno(), self._readable)

    def _readable(self) -> None:
        try:
            while self._conn.poll():
                self._inbox.put_nowait(self._conn.recv())
        except (EOFError, OSError):
            # The parent is gone: stop as if told to.
            self._loop.remove_reader(self._conn.fileno())
            self._inbox.put_nowait((STOP, None))

    def send(self, kind: str, payload: Any = None) -> None:
        self._conn.send((kind, payload))

    async def receive(self, *kinds: str) -> Message:
        """The next message; ``RuntimeError`` if it is not one of ``kinds``."""
        kind, payload = await self._inbox.get()
        if kinds and kind not in kinds:
            if kind == STOP:
                raise WorkerStopped
            raise RuntimeError(f"expected {'/'.join(kinds)} from the parent, got {kind}")
        return kind, payload

    def close(self) -> None:
        self._loop.remove_reader(self._conn.fileno())


class WorkerStopped(Exception):
    """The parent said stop (or went away) in the middle of a round."""
