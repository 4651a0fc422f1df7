"""Write statements of one transaction sent to MySQL/MariaDB together.

A send's commit on a server runs a read (the recipients' seqs, locked) and
then three writes whose results nobody reads: the messages, the inbox rows,
the new seqs. Each statement alone is a round trip, and a round trip under
load costs more than the server's work: the writer sleeps until the
answer comes, then waits for a core (and, as a thread, for the GIL). Sent
together, the three cost one round trip. (On the bench cluster the wait
for these answers was mostly MariaDB's own work and the wait for a core,
which this does not shorten: bench/analysis.md.)

Inside ``together(conn)`` a write handed to ``hold`` is kept, and the kept
writes go as one multi-statement query (MySQL's ``CLIENT.MULTI_STATEMENTS``)
before the next statement of any kind on that connection and at the end of
the block, so every read still sees the writes before it; and, so that
no query nears the server's packet limit (16 MiB by default), before the
kept ones would pass ``MAX_HELD_BYTES``. An error in any
of them fails the query at that point (the server stops at the failing
statement), and the transaction then rolls back as before.

Only connections made by an engine passed to ``enable`` take part: they
accept several statements per query. Every statement is parametrised by
the driver, so a client's text cannot add statements.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from itertools import chain
from typing import Any, Final

from sqlalchemy import Connection, Engine, event
from sqlalchemy.exc import DBAPIError

_HELD: Final = "mpim.held_writes"
_ACCEPTS: Final = "mpim.several_statements"
_MULTI_STATEMENTS: Final = 1 << 16  # CLIENT.MULTI_STATEMENTS in MySQL's protocol
# About how much held SQL and parameters may wait before going out.
MAX_HELD_BYTES: Final = 4 * 1024 * 1024


def enable(engine: Engine) -> None:
    """Let ``engine``'s MySQL/MariaDB connections take held writes (other backends: no-op)."""
    if engine.dialect.name not in ("mysql", "mariadb") or engine.dialect.driver != "pymysql":
        return

    @event.listens_for(engine, "do_connect")
    def _several_statements(dialect: Any, conn_rec: Any, cargs: Any, cparams: Any) -> None:
        cparams["client_flag"] = cparams.get("client_flag", 0) | _MULTI_STATEMENTS
        conn_rec.info[_ACCEPTS] = True

    @event.listens_for(engine, "before_cursor_execute")
    def _send_first(conn: Connection, *_: Any) -> None:
        send(conn)


@contextlib.contextmanager
def together(conn: Connection) -> Iterator[None]:
    """Hold writes inside the block; the held ones are sent before it ends."""
    info = conn.info  # a broken connection no longer answers for it
    if not info.get(_ACCEPTS) or _HELD in info:
        yield
        return
    info[_HELD] = _Held()
    try:
        yield
        send(conn)
    finally:
        info.pop(_HELD, None)


def hold(conn: Connection, sql: str, params: Sequence[Any]) -> bool:
    """Keep a write for later if ``conn`` is inside ``together``; False: run it now."""
    held: _Held | None = conn.info.get(_HELD)
    if held is None:
        return False
    size = len(sql) + sum(len(p) if isinstance(p, (str, bytes)) else 8 for p in params)
    if held.statements and held.size + size > MAX_HELD_BYTES:
        send(conn)
    held.statements.append((sql, tuple(params)))
    held.size += size
    return True


class _Held:
    """The writes kept so far, and about how many bytes they will take."""

    __slots__ = ("size", "statements")

    def __init__(self) -> None:
        self.statements: list[tuple[str, tuple[Any, ...]]] = []
        self.size = 0


def send(conn: Connection) -> None:
    """Send the held writes in one query and read every answer."""
    held: _Held | None = conn.info.get(_HELD)
    if held is None or not held.statements:
        return
    sql = ";\n".join(s for s, _ in held.statements)
    params = tuple(chain.from_iterable(p for _, p in held.statements))
    held.statements.clear()
    held.size = 0
    dbapi = conn.dialect.loaded_dbapi
    cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
    try:
        cursor.execute(sql, params)
        while cursor.nextset():  # a failing statement raises here
            pass
    except dbapi.Error as exc:
        raise DBAPIError.instance(
            sql, params, exc, dbapi.Error, hide_parameters=conn.engine.hide_parameters
        ) from exc
    finally:
        with contextlib.suppress(dbapi.Error):
            cursor.close()
