"""PostgreSQL connections that give up on a server that stops answering.

psycopg has no read timeout, and TCP keepalives do not help when the
server's host is up but the server is not answering (stopped, stuck, or a
proxy in between that froze): the kernel still acknowledges every packet.
Such a server held a store thread, and the requests queued behind it,
forever. psycopg 3.3 can bound each wait for the server; this connection
bounds every statement and commit, and when the bound passes it closes
itself (half a conversation was had: its state is unknown), so the pool
drops it and the caller sees the server as unreachable, as with MySQL's
read timeout.

Imported only for a PostgreSQL store: psycopg is an optional dependency.
"""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg import errors
from psycopg.abc import RV, PQGen

# psycopg's own default: how often a wait wakes to let Ctrl-C through.
_WAIT_INTERVAL = 0.1


class AnsweringConnection(psycopg.Connection[Any]):
    """A connection whose every wait for the server ends after ``answer_timeout`` s."""

    answer_timeout: float | None = None

    def wait(
        self, gen: PQGen[RV], interval: float = _WAIT_INTERVAL, timeout: float | None = None
    ) -> RV:
        if timeout is not None:  # psycopg's own bound (notifies, say): its rules
            return super().wait(gen, interval, timeout)
        limit = self.answer_timeout
        try:
            return super().wait(gen, interval, limit)
        except errors._WaitTimeout as exc:  # psycopg's, raised only when ``limit`` passes
            self.pgconn.finish()
            raise psycopg.OperationalError(f"the server did not answer within {limit:g} s") from exc


def connect_answering(
    _dialect: Any, _record: Any, cargs: Any, cparams: Any, *, seconds: float
) -> AnsweringConnection:
    """SQLAlchemy's ``do_connect`` hook: open an AnsweringConnection instead."""
    conn = AnsweringConnection.connect(*cargs, **cparams)
    conn.answer_timeout = seconds
    return conn
