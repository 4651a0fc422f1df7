"""A writer lane's server connection, kept from one commit to the next.

Checking a connection out of the pool for every commit costs two round trips
on MySQL/MariaDB and PostgreSQL besides the commit's own: the pool's
pre-ping at checkout and the rollback that resets the connection when it
goes back. A lane commits back to back under load, so it keeps its
connection while it is busy. A connection idle for longer than
``FRESH_SECONDS`` goes back to the pool, and the next commit checks out one
the pre-ping has vouched for, as before: a server restart or an idle
timeout is still noticed before a commit fails on it. So does a failed
transaction, whose connection may be the broken part.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from typing import Final

from sqlalchemy import Connection, Engine

# A connection that answered this recently is taken to be alive.
FRESH_SECONDS: Final = 1.0


class LaneConnection:
    """One thread's connection; ``begin()`` is ``Engine.begin()`` without the
    checkout and return per transaction. Not thread-safe: one lane, one thread."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._conn: Connection | None = None
        self._last_used = 0.0

    @contextlib.contextmanager
    def begin(self) -> Iterator[Connection]:
        """A transaction on the kept connection, committed when the block ends."""
        conn = self._connection()
        try:
            with conn.begin():
                yield conn
        except BaseException:
            self.release()
            raise
        self._last_used = time.monotonic()

    def release(self) -> None:
        """Give the connection back to the pool (which resets it)."""
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):  # a broken one is invalidated by the pool
                conn.close()

    def _connection(self) -> Connection:
        if self._conn is not None and time.monotonic() - self._last_used > FRESH_SECONDS:
            self.release()
        if self._conn is None:
            self._conn = self._engine.connect()
        return self._conn
