"""Write calls for tests of the SQLite writer process.

Module-level functions, so they cross to the writer process by name as the
store's own calls do; they touch only a table of their own.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

from sqlalchemy import Connection, text

from mpim.errors import ErrorCode, MpimError


def note(conn: Connection, key: str, value: str) -> int:
    """Insert a row; the writer process's pid (which process committed it)."""
    conn.exec_driver_sql("CREATE TABLE IF NOT EXISTS test_notes (k TEXT PRIMARY KEY, v TEXT)")
    conn.exec_driver_sql("INSERT INTO test_notes (k, v) VALUES (?, ?)", (key, value))
    return os.getpid()


def wal_autocheckpoint(conn: Connection) -> int:
    """The writer connection's automatic checkpoint limit, in pages (0: never)."""
    return int(conn.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar_one())


def notes(conn: Connection) -> list[tuple[str, str]]:
    """Every row, in the order they were committed."""
    conn.exec_driver_sql("CREATE TABLE IF NOT EXISTS test_notes (k TEXT PRIMARY KEY, v TEXT)")
    rows = conn.exec_driver_sql("SELECT k, v FROM test_notes ORDER BY rowid").all()
    return [(str(k), str(v)) for k, v in rows]


def wait_for_file(conn: Connection, path: str, timeout: float = 10.0) -> None:
    """Hold the writer (and so the batch after it) until ``path`` exists."""
    deadline = time.monotonic() + timeout
    while not Path(path).exists():
        if time.monotonic() > deadline:
            raise TimeoutError(path)
        time.sleep(0.005)


def refuse(conn: Connection, code: str) -> None:
    raise MpimError(ErrorCode(code))


def unpicklable(conn: Connection) -> threading.Lock:
    return threading.Lock()


def die(conn: Connection) -> None:
    """The writer process ends mid-transaction, as a crash would."""
    os._exit(3)


_transactions: list[object] = []  # kept, so no id is reused


def begin_id(conn: Connection) -> int:
    """Which transaction the call ran in."""
    transaction = conn.get_transaction()
    _transactions.append(transaction)
    return id(transaction)


def writer_children() -> list[int]:
    """Live writer processes started by this one."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            cmdline = (stat.parent / "cmdline").read_bytes()
        except OSError:
            continue
        if int(fields[1]) == os.getpid() and fields[0] != "Z" and b"writer_child" in cmdline:
            found.append(int(stat.parent.name))
    return found


def server_note(conn: Connection, key: str) -> int:
    """``note`` for MySQL/MariaDB and PostgreSQL: a row, and the committing pid."""
    conn.execute(text("CREATE TABLE IF NOT EXISTS test_notes (k VARCHAR(64) PRIMARY KEY)"))
    conn.execute(text("INSERT INTO test_notes (k) VALUES (:k)"), {"k": key})
    return os.getpid()


def server_notes(conn: Connection) -> list[str]:
    conn.execute(text("CREATE TABLE IF NOT EXISTS test_notes (k VARCHAR(64) PRIMARY KEY)"))
    return [str(k) for (k,) in conn.execute(text("SELECT k FROM test_notes ORDER BY k"))]


def pause(conn: Connection, seconds: float) -> None:
    """Hold the commit with the writer blocked, as a slow fsync would."""
    time.sleep(seconds)


def spin(conn: Connection, seconds: float) -> None:
    """Hold the commit with the writer running, as slow Python would."""
    deadline = time.thread_time() + seconds
    while time.thread_time() < deadline:
        pass
