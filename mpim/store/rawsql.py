"""Pre-rendered driver SQL for the per-message statements.

SQLAlchemy Core costs 2-5x the driver's own time at these batch sizes (see
docs/architecture.md), so the inserts and updates every message pays for go
straight to the driver's ``executemany``. Everything else stays in Core.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

from sqlalchemy import Connection

_STATEMENTS: Final = {
    "insert_messages": (
        "INSERT INTO messages (msg_id, kind, sender, target, conv, ts_ms, text, client_msg_id)"
        " VALUES ({p}, {p}, {p}, {p}, {p}, {p}, {p}, {p})"
    ),
    "insert_inbox": "INSERT INTO inbox (uid, seq, msg_id, delivered) VALUES ({p}, {p}, {p}, {p})",
    "set_last_seq": "UPDATE inbox_state SET last_seq = {p} WHERE uid = {p}",
    "mark_delivered": "UPDATE inbox SET delivered = {p} WHERE uid = {p} AND seq = {p}",
}
_PLACEHOLDER: Final = {"qmark": "?", "format": "%s", "pyformat": "%s"}
_rendered: dict[tuple[str, str], str] = {}


def executemany(conn: Connection, name: str, rows: Sequence[tuple[Any, ...]]) -> None:
    """Run statement ``name`` once per row with the driver's executemany."""
    if not rows:
        return
    paramstyle = conn.dialect.paramstyle
    sql = _rendered.get((name, paramstyle))
    if sql is None:
        placeholder = _PLACEHOLDER.get(paramstyle)
        if placeholder is None:
            raise NotImplementedError(f"driver paramstyle {paramstyle!r} is not supported")
        sql = _STATEMENTS[name].format(p=placeholder)
        _rendered[(name, paramstyle)] = sql
    conn.exec_driver_sql(sql, list(rows))
