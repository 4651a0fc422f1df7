"""Driver SQL for the statements every message pays for, in few round trips.

SQLAlchemy Core costs 2-5x the driver's own time at these batch sizes, and a
per-row ``executemany`` is worse for us than it looks: the driver releases
the GIL around every row, and getting it back from a busy event loop costs up
to a switch interval (5 ms) each time. So each statement here carries up to
``CHUNK`` rows: multi-row INSERTs, and UPDATEs keyed by a CASE or an OR list.
The SQL is plain and portable (SQLite, MySQL/MariaDB, PostgreSQL).

Reads on the writer's path have the same problem in a different place:
Python's sqlite3 releases the GIL around each *row* it steps through, so a
SELECT returning 400 rows costs 400 GIL hand-offs, each up to a switch
interval while the event loop is busy (measured: a 1,000-message append
took 7 ms alone and 140 ms beside a busy thread). On SQLite those reads
return one row: the values joined by ``group_concat`` and split here.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final, TypeVar

from sqlalchemy import Connection

CHUNK: Final = 400
Row = TypeVar("Row")
_PLACEHOLDER: Final = {"qmark": "?", "format": "%s", "pyformat": "%s"}


def _placeholder(conn: Connection) -> str:
    paramstyle = conn.dialect.paramstyle
    placeholder = _PLACEHOLDER.get(paramstyle)
    if placeholder is None:
        raise NotImplementedError(f"driver paramstyle {paramstyle!r} is not supported")
    return placeholder


def _chunks(rows: Sequence[Row]) -> list[Sequence[Row]]:
    return [rows[i : i + CHUNK] for i in range(0, len(rows), CHUNK)]


def insert_rows(
    conn: Connection, table: str, columns: Sequence[str], rows: Sequence[tuple[Any, ...]]
) -> None:
    """``INSERT INTO table (columns) VALUES (...), (...), ...`` in chunks."""
    p = _placeholder(conn)
    one = "(" + ", ".join([p] * len(columns)) + ")"
    head = f"INSERT INTO {table} ({', '.join(columns)}) VALUES "
    for chunk in _chunks(rows):
        params = tuple(value for row in chunk for value in row)
        conn.exec_driver_sql(head + ", ".join([one] * len(chunk)), params)


def advance_last_seqs(conn: Connection, advances: Sequence[tuple[int, int]]) -> None:
    """(uid, n) pairs: add n to each uid's last_seq, one UPDATE per distinct n and chunk.

    A group message advances all its members by the same n, so this is a
    handful of ``uid IN (...)`` statements where a CASE would compare every
    row against every uid of its chunk.
    """
    p = _placeholder(conn)
    by_step: dict[int, list[int]] = {}
    for uid, step in advances:
        by_step.setdefault(step, []).append(uid)
    for step, uids in by_step.items():
        for chunk in _chunks(uids):
            keys = ", ".join([p] * len(chunk))
            conn.exec_driver_sql(
                f"UPDATE inbox_state SET last_seq = last_seq + {p} WHERE uid IN ({keys})",
                (step, *chunk),
            )


def mark_delivered(conn: Connection, marks: Sequence[tuple[int, int]]) -> None:
    """(uid, seq) inbox rows flagged delivered: one UPDATE per chunk."""
    p = _placeholder(conn)
    for chunk in _chunks(marks):
        where = " OR ".join(f"(uid = {p} AND seq = {p})" for _ in chunk)
        params = (True, *(value for uid, seq in chunk for value in (uid, seq)))
        conn.exec_driver_sql(f"UPDATE inbox SET delivered = {p} WHERE {where}", params)


def is_sqlite(conn: Connection) -> bool:
    return conn.dialect.name == "sqlite"


def sqlite_int_pairs(conn: Connection, sql: str, params: Sequence[Any]) -> list[tuple[int, int]]:
    """Run ``SELECT group_concat(a || ',' || b, ';') ...`` and split its one row."""
    joined = conn.exec_driver_sql(sql, tuple(params)).scalar()
    if not joined:
        return []
    pairs = []
    for pair in str(joined).split(";"):
        a, _, b = pair.partition(",")
        pairs.append((int(a), int(b)))
    return pairs


def sqlite_ints(conn: Connection, sql: str, params: Sequence[Any]) -> list[int]:
    """Run ``SELECT group_concat(a) ...`` and split its one row."""
    joined = conn.exec_driver_sql(sql, tuple(params)).scalar()
    return [int(v) for v in str(joined).split(",")] if joined else []


def sqlite_last_seqs(conn: Connection, uids: Sequence[int]) -> list[tuple[int, int]]:
    """(uid, last_seq) of those of ``uids`` that have an inbox, in one row per chunk."""
    out: list[tuple[int, int]] = []
    for chunk in _chunks(uids):
        keys = ", ".join(["?"] * len(chunk))
        out.extend(
            sqlite_int_pairs(
                conn,
                "SELECT group_concat(uid || ',' || last_seq, ';') FROM inbox_state "
                f"WHERE uid IN ({keys})",
                chunk,
            )
        )
    return out


def sqlite_group_member_uids(conn: Connection, group_id: int) -> list[int]:
    return sqlite_ints(
        conn, "SELECT group_concat(uid) FROM group_members WHERE group_id = ?", (group_id,)
    )
