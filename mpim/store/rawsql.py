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

SQLite compiles each statement text before running it and keeps the last
few hundred compiled: a text it has seen costs nothing to prepare, a new
one costs a parse of every placeholder. Batches vary in size, so a statement
sized to its batch was nearly always new: preparing took a quarter of the
writer's time. On SQLite statements therefore come in power-of-two sizes:
INSERTs in pieces of 2^k rows, key lists padded to 2^k by repeating their
last key (a repeated key matches the same row once).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from itertools import chain
from typing import Any, Final, TypeVar

from sqlalchemy import Connection
from sqlalchemy.exc import DBAPIError

from mpim.store import held_writes

CHUNK: Final = 400
# Rows of the largest SQLite INSERT, keys of the largest key list. A power of
# two; an OR of more than about 1,000 terms exceeds SQLite's expression depth.
SQLITE_PIECE: Final = 256
Row = TypeVar("Row")
_PLACEHOLDER: Final = {"qmark": "?", "format": "%s", "pyformat": "%s"}


def run(conn: Connection, sql: str, params: Sequence[Any]) -> Any:
    """Execute driver SQL; on SQLite straight on the driver's connection.

    SQLAlchemy's way to the driver (execution context, events, a result
    object) costs about 17 µs a statement where the driver takes 2 µs (a
    4-row INSERT, measured), and a commit of the SQLite writer runs 10 to 25
    of these. The driver's errors are raised as SQLAlchemy's, as
    ``exec_driver_sql`` raises them, so failures are told apart as before
    (``store/failures.py``), and keep their parameters out of their text
    when the engine hides them. Returns a DB-API cursor (or SQLAlchemy's
    result, which has the same ``fetchone``, ``fetchall`` and iteration).
    """
    if conn.dialect.name != "sqlite":
        return conn.exec_driver_sql(sql, tuple(params))
    if not conn.in_transaction():
        # What SQLAlchemy's autobegin would do: its begin event opens SQLite's
        # transaction, so a job's reads share one snapshot.
        conn.begin()
    try:
        return conn.connection.driver_connection.execute(sql, tuple(params))  # type: ignore[union-attr]
    except sqlite3.Error as exc:
        raise DBAPIError.instance(
            sql, params, exc, sqlite3.Error, hide_parameters=conn.engine.hide_parameters
        ) from exc


def write(conn: Connection, sql: str, params: Sequence[Any]) -> None:
    """Driver SQL whose result nobody reads: held to go with the transaction's
    other writes where the connection sends them together (``held_writes``),
    otherwise run now."""
    if not held_writes.hold(conn, sql, params):
        run(conn, sql, params)


def _placeholder(conn: Connection) -> str:
    paramstyle = conn.dialect.paramstyle
    placeholder = _PLACEHOLDER.get(paramstyle)
    if placeholder is None:
        raise NotImplementedError(f"driver paramstyle {paramstyle!r} is not supported")
    return placeholder


def _chunks(rows: Sequence[Row]) -> list[Sequence[Row]]:
    return [rows[i : i + CHUNK] for i in range(0, len(rows), CHUNK)]


def _key_chunks(conn: Connection, keys: Sequence[Row]) -> list[Sequence[Row]]:
    """Chunks of keys for one statement each; on SQLite at most ``SQLITE_PIECE``,
    padded to a power of two."""
    if not is_sqlite(conn):
        return _chunks(keys)
    chunks = [keys[i : i + SQLITE_PIECE] for i in range(0, len(keys), SQLITE_PIECE)]
    return [list(c) + [c[-1]] * ((1 << (len(c) - 1).bit_length()) - len(c)) for c in chunks]


def _row_pieces(conn: Connection, rows: Sequence[Row]) -> list[Sequence[Row]]:
    """Rows for one INSERT each; on SQLite pieces of 2^k rows (400 = 256 + 128 + 16)."""
    if not is_sqlite(conn):
        return _chunks(rows)
    pieces = []
    start = 0
    while start < len(rows):
        size = min(SQLITE_PIECE, 1 << ((len(rows) - start).bit_length() - 1))
        pieces.append(rows[start : start + size])
        start += size
    return pieces


def insert_rows(
    conn: Connection,
    table: str,
    columns: Sequence[str],
    rows: Sequence[tuple[Any, ...]],
    *,
    ignore: bool = False,
) -> None:
    """``INSERT INTO table (columns) VALUES (...), (...), ...`` in chunks.

    ``ignore``: rows whose key is taken are skipped, not an error.
    """
    p = _placeholder(conn)
    one = "(" + ", ".join([p] * len(columns)) + ")"
    verb, tail = _INSERT_IGNORING[conn.dialect.name] if ignore else ("INSERT INTO", "")
    head = f"{verb} {table} ({', '.join(columns)}) VALUES "
    for chunk in _row_pieces(conn, rows):
        params = tuple(chain.from_iterable(chunk))
        write(conn, head + ", ".join([one] * len(chunk)) + tail, params)


_INSERT_IGNORING: Final = {
    "sqlite": ("INSERT OR IGNORE INTO", ""),
    "mysql": ("INSERT IGNORE INTO", ""),
    "mariadb": ("INSERT IGNORE INTO", ""),
    "postgresql": ("INSERT INTO", " ON CONFLICT DO NOTHING"),
}


def cid_owners(conn: Connection, pairs: Sequence[tuple[int, str]]) -> list[tuple[int, str, int]]:
    """(sender, cid, msg_id) of the stored messages among ``pairs`` (sender, cid).

    One OR of (sender, cid) equalities per chunk: each term is a lookup in
    the unique (sender, client_msg_id) index. Built as text: as an SQLAlchemy
    expression its construction cost more than the rest of a direct
    message's storing (the SQLite writer's CPU per message: 145 us with a
    cid, 81 us as text, 55 us without a cid). Nearly always empty: rows come
    back only for retried sends.
    """
    p = _placeholder(conn)
    found: list[tuple[int, str, int]] = []
    for chunk in _key_chunks(conn, pairs):
        where = " OR ".join([f"(sender = {p} AND client_msg_id = {p})"] * len(chunk))
        rows = run(
            conn,
            f"SELECT sender, client_msg_id, msg_id FROM messages WHERE {where}",
            tuple(chain.from_iterable(chunk)),
        )
        found.extend((int(sender), str(cid), int(msg_id)) for sender, cid, msg_id in rows)
    return found


def lock_last_seqs(conn: Connection, uids: Sequence[int]) -> list[tuple[int, int]]:
    """(uid, last_seq) of those of ``uids`` that have an inbox, their rows
    locked (servers), in uid order: the order every writer locks them in.

    As text rather than an SQLAlchemy expression, whose construction and
    compilation were a fifth of a server writer's CPU (``py-spy`` at 5,000
    msg/s).
    """
    p = _placeholder(conn)
    found: list[tuple[int, int]] = []
    for chunk in _chunks(sorted(uids)):
        keys = ", ".join([p] * len(chunk))
        rows = run(
            conn,
            f"SELECT uid, last_seq FROM inbox_state WHERE uid IN ({keys}) ORDER BY uid FOR UPDATE",
            chunk,
        )
        found.extend((int(uid), int(seq)) for uid, seq in rows)
    return found


def advance_last_seqs(conn: Connection, advances: Sequence[tuple[int, int]]) -> None:
    """(uid, n) pairs: add n to each uid's last_seq, one UPDATE per distinct n and chunk.

    A group message advances all its members by the same n, so this is a
    handful of ``uid IN (...)`` statements where a CASE would compare every
    row against every uid of its chunk. (SQLite: ``sqlite_set_state``.)
    """
    p = _placeholder(conn)
    by_step: dict[int, list[int]] = {}
    for uid, step in advances:
        by_step.setdefault(step, []).append(uid)
    for step, uids in by_step.items():
        for chunk in _chunks(uids):
            keys = ", ".join([p] * len(chunk))
            write(
                conn,
                f"UPDATE inbox_state SET last_seq = last_seq + {p} WHERE uid IN ({keys})",
                (step, *chunk),
            )


def mark_delivered(conn: Connection, marks: Sequence[tuple[int, int]]) -> None:
    """(uid, seq) pairs sent to a connection of the user: PULL skips them from now on.

    A seq is delivered when it is at or below the user's ``pull_floor`` or has
    an ``inbox_delivered`` row. On SQLite the marks are in the sends'
    transaction, under the one writer's lock, and move each floor up where
    they continue it (pushes go out in seq order, so nearly always): no row
    per message, and the inbox_state pages are the ones the sends dirty
    anyway. Servers take marks in a lane of their own, beside send
    transactions that hold inbox_state rows locked until they commit; there
    each mark is a row, and PULL folds the rows into the floor.
    """
    if is_sqlite(conn):
        _sqlite_raise_floors(conn, marks)
    else:
        insert_rows(conn, "inbox_delivered", ("uid", "seq"), sorted(set(marks)), ignore=True)


def set_pull_floor(conn: Connection, uid: int, floor: int) -> None:
    """Move a user's floor up to ``floor``; the held seqs it passes go."""
    p = _placeholder(conn)
    write(conn, f"UPDATE inbox_state SET pull_floor = {p} WHERE uid = {p}", (floor, uid))
    drop_passed_marks(conn, [(uid, floor)])


def raise_pull_floors(conn: Connection, tops: Sequence[tuple[int, int]]) -> None:
    """(uid, top) pairs: each floor to at least ``top`` (``drop_passed_marks``
    then deletes the held seqs it passed).

    One statement per chunk, whatever the number of users. On servers the
    caller locks the rows first, in uid order as sends do: PostgreSQL's
    UPDATE may visit them in their physical order.
    """
    p = _placeholder(conn)
    larger = "MAX" if is_sqlite(conn) else "GREATEST"
    for chunk in _chunks(sorted(tops)):
        cases = " ".join([f"WHEN {p} THEN {p}"] * len(chunk))
        keys = ", ".join([p] * len(chunk))
        uids = tuple(uid for uid, _ in chunk)
        write(
            conn,
            f"UPDATE inbox_state SET pull_floor = "
            f"{larger}(pull_floor, CASE uid {cases} ELSE pull_floor END) WHERE uid IN ({keys})",
            (*chain.from_iterable(chunk), *uids),
        )


def drop_passed_marks(conn: Connection, floors: Sequence[tuple[int, int]]) -> None:
    """(uid, floor) pairs: delete each user's held seqs at or below the floor,
    which covers them."""
    p = _placeholder(conn)
    for chunk in _key_chunks(conn, floors):
        where = " OR ".join([f"(uid = {p} AND seq <= {p})"] * len(chunk))
        write(
            conn,
            f"DELETE FROM inbox_delivered WHERE {where}",
            tuple(chain.from_iterable(chunk)),
        )


def _sqlite_raise_floors(conn: Connection, marks: Sequence[tuple[int, int]]) -> None:
    marked: dict[int, set[int]] = {}
    for uid, seq in marks:
        marked.setdefault(uid, set()).add(seq)
    floors = dict(_sqlite_state_pairs(conn, "pull_floor", sorted(marked)))
    tops: dict[int, int] = {}  # a uid without a floor is not a user
    for uid, floor in floors.items():
        top, seqs = floor, marked[uid]
        while top + 1 in seqs:
            top += 1
        if top > floor:
            tops[uid] = top
    # A floor that moved may now meet seqs held from earlier marks. The floor
    # never stops just below a held seq, so a floor that did not move needs
    # no read, however many seqs its user holds.
    absorbed = _sqlite_absorb_held(conn, tops, marked)
    drop_passed_marks(conn, [(uid, tops[uid]) for uid in sorted(absorbed)])
    sqlite_set_state(conn, "pull_floor", sorted(tops.items()))
    above = [
        (uid, seq)
        for uid, floor in floors.items()
        for seq in sorted(marked[uid])
        if seq > tops.get(uid, floor)
    ]
    insert_rows(conn, "inbox_delivered", ("uid", "seq"), above, ignore=True)


_HELD_READ: Final = 256


def _sqlite_absorb_held(
    conn: Connection, tops: dict[int, int], marked: dict[int, set[int]]
) -> set[int]:
    """Raise ``tops`` over the held seqs (and marks) that continue them.

    Reads at most ``_HELD_READ`` seqs above each top per round, one statement
    per chunk of users; returns the users whose held seqs were passed.
    """
    absorbed: set[int] = set()
    probe = dict(tops)
    while probe:
        again: dict[int, int] = {}
        for chunk in _key_chunks(conn, sorted(probe)):
            where = " OR ".join(["(uid = ? AND seq > ? AND seq <= ?)"] * len(chunk))
            params = [v for uid in chunk for v in (uid, probe[uid], probe[uid] + _HELD_READ)]
            held: dict[int, set[int]] = {}
            for uid, seq in sqlite_int_pairs(
                conn,
                f"SELECT group_concat(uid || ',' || seq, ';') FROM inbox_delivered WHERE {where}",
                params,
            ):
                held.setdefault(uid, set()).add(seq)
            for uid, seqs in held.items():
                start = top = tops[uid]
                while top + 1 in seqs or top + 1 in marked[uid]:
                    top += 1
                if top > start:
                    absorbed.add(uid)
                    tops[uid] = top
                if top >= probe[uid] + _HELD_READ:
                    again[uid] = top
        probe = again
    return absorbed


def sqlite_set_state(conn: Connection, column: str, values: Sequence[tuple[int, int]]) -> None:
    """(uid, value) pairs: set an inbox_state column, one statement per chunk.

    ``UPDATE ... FROM (VALUES ...)`` joins each pair to its row by key, where
    an update per distinct step would take one statement per step, and a
    c2c commit has many.
    """
    for chunk in _key_chunks(conn, values):
        pairs = ", ".join(["(?, ?)"] * len(chunk))
        write(
            conn,
            f"UPDATE inbox_state SET {column} = v.column2 FROM (VALUES {pairs}) AS v "
            "WHERE inbox_state.uid = v.column1",
            tuple(chain.from_iterable(chunk)),
        )


def is_sqlite(conn: Connection) -> bool:
    return conn.dialect.name == "sqlite"


def sqlite_int_pairs(conn: Connection, sql: str, params: Sequence[Any]) -> list[tuple[int, int]]:
    """Run ``SELECT group_concat(a || ',' || b, ';') ...`` and split its one row."""
    joined = run(conn, sql, params).fetchone()[0]
    if not joined:
        return []
    pairs = []
    for pair in str(joined).split(";"):
        a, _, b = pair.partition(",")
        pairs.append((int(a), int(b)))
    return pairs


def sqlite_ints(conn: Connection, sql: str, params: Sequence[Any]) -> list[int]:
    """Run ``SELECT group_concat(a) ...`` and split its one row."""
    joined = run(conn, sql, params).fetchone()[0]
    return [int(v) for v in str(joined).split(",")] if joined else []


def sqlite_last_seqs(conn: Connection, uids: Sequence[int]) -> list[tuple[int, int]]:
    """(uid, last_seq) of those of ``uids`` that have an inbox, in one row per chunk."""
    return _sqlite_state_pairs(conn, "last_seq", uids)


def _sqlite_state_pairs(
    conn: Connection, column: str, uids: Sequence[int]
) -> list[tuple[int, int]]:
    """(uid, an inbox_state column) for those of ``uids`` that have a row."""
    out: list[tuple[int, int]] = []
    for chunk in _key_chunks(conn, uids):
        keys = ", ".join(["?"] * len(chunk))
        out.extend(
            sqlite_int_pairs(
                conn,
                f"SELECT group_concat(uid || ',' || {column}, ';') FROM inbox_state "
                f"WHERE uid IN ({keys})",
                chunk,
            )
        )
    return out


def sqlite_group_member_uids(conn: Connection, group_id: int) -> list[int]:
    return sqlite_ints(
        conn, "SELECT group_concat(uid) FROM group_members WHERE group_id = ?", (group_id,)
    )
