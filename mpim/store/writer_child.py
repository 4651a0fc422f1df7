"""The store writer process: group commits, away from the server's GIL.

In one process the writer thread gave the GIL up around every SQLite call
and waited for the busy event loop to hand it back: under load a commit took
two to three times its own CPU time in waiting, and that wait was most of
a message's latency. Here nothing else wants this interpreter's GIL. A
distributed message service's writer to MySQL/MariaDB or PostgreSQL has the
same wait around every round trip, and runs here too (one kept connection,
``lane_connection``; writes sent together, ``held_writes``); the server has
its own checkpoints, so there is no ``Checkpointer``.

Run by ``mpim.store.writer_process`` as
``python -m mpim.store.writer_child FD CONFIG_JSON``: calls arrive as frames
on the socket FD, each batch of them is committed in one transaction
(``mpim.store.group_commit``), and one frame per batch answers with the
outcomes in order. EOF or the STOP frame ends it after what is queued.
"""

from __future__ import annotations

import contextlib
import json
import logging
import pickle
import signal
import socket
import sys
from collections.abc import Callable
from typing import Any

from sqlalchemy import Connection, Engine
from sqlalchemy.engine import make_url

from mpim.store import held_writes
from mpim.store.checkpointer import Checkpointer
from mpim.store.commit_timing import CommitTimer
from mpim.store.database import server_engine, sqlite_engine
from mpim.store.frames import READY, STOP, FrameBuffer, encode, frame
from mpim.store.group_commit import (
    BatchOutcome,
    Begin,
    Outcome,
    WriteCall,
    commit_calls,
    next_batch,
)
from mpim.store.lane_connection import LaneConnection
from mpim.tuning import tune_for_server

logger = logging.getLogger("mpim.store.writer")

_READ_BYTES = 256 * 1024


class _CallReader:
    """Calls from the socket: ``wait`` blocks for one, ``poll`` takes only what arrived."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._buffer = FrameBuffer()
        self.closed = False  # EOF or STOP seen

    def wait(self) -> WriteCall | None:
        while not self.closed:
            call = self._take()
            if call is not None or self.closed:
                return call
            self._read(blocking=True)
        return None

    def poll(self) -> WriteCall | None:
        call = self._take()
        if call is None and not self.closed and self._read(blocking=False):
            call = self._take()
        return call

    def _take(self) -> WriteCall | None:
        payload = self._buffer.next()
        if payload is None:
            return None
        if payload == STOP:
            self.closed = True
            return None
        try:
            call = pickle.loads(payload)
        except Exception as exc:  # its function cannot be imported here, say
            return WriteCall(_undecodable, (f"{type(exc).__name__}: {exc}",))
        assert isinstance(call, WriteCall)
        return call

    def _read(self, *, blocking: bool) -> bool:
        try:
            data = self._sock.recv(_READ_BYTES, 0 if blocking else socket.MSG_DONTWAIT)
        except BlockingIOError:
            return False
        if not data:
            self.closed = True
            return False
        self._buffer.feed(data)
        return True


def _undecodable(conn: Connection, reason: str) -> None:
    """Stands in for a call this process could not unpickle, keeping the order."""
    raise RuntimeError(f"the store writer could not read this call: {reason}")


def _answer(outcome: BatchOutcome, size: int, seconds: float, blocked: float | None) -> bytes:
    """The reply frame; what pickle cannot carry is replaced by its description
    (and counted as an error: a caller gets an exception for a write that stands)."""
    try:
        return encode((outcome.outcomes, outcome.errors, size, seconds, blocked))
    except Exception:
        safe = [_portable(o) for o in outcome.outcomes]
        replaced = sum(a is not b for a, b in zip(safe, outcome.outcomes, strict=True))
        return encode((safe, outcome.errors + replaced, size, seconds, blocked))


def _portable(outcome: Outcome) -> Outcome:
    try:
        pickle.loads(pickle.dumps(outcome))  # both ways: a custom __init__ may refuse
        return outcome
    except Exception as problem:
        exc = outcome[1]
        shown = exc if exc is not None else problem
        return None, RuntimeError(f"{type(shown).__name__}: {shown}")


def serve(
    sock: socket.socket, begin: Begin, max_batch: int, checkpointer: Checkpointer | None = None
) -> None:
    calls = _CallReader(sock)
    carried: WriteCall | None = None
    more: Callable[[], WriteCall | None] = calls.poll
    timer = CommitTimer()
    try:
        while True:
            first = carried if carried is not None else calls.wait()
            if first is None:
                return
            batch, carried = next_batch(first, more, max_batch)
            timer.start()
            outcome = commit_calls(begin, batch)
            sock.sendall(_answer(outcome, len(batch), *timer.stop()))
            if checkpointer is not None:
                checkpointer.after_commit()
    finally:
        timer.close()


# The writer's own automatic checkpoint, at this many times the log size the
# Checkpointer restarts at: never reached while the Checkpointer works, and a
# bound on the log if it stops.
_SAFETY_NET_RESTARTS = 32


def _main_file(engine: Engine) -> str | None:
    """The database file's path as SQLite opened it (a URI's too); None in memory."""
    raw = engine.raw_connection()
    try:
        rows = raw.driver_connection.execute("PRAGMA database_list").fetchall()  # type: ignore[union-attr]
    finally:
        raw.close()
    return next((str(file) for _, name, file in rows if name == "main" and file), None)


def main(argv: list[str]) -> int:
    fd, config = int(argv[0]), json.loads(argv[1])
    logging.basicConfig(
        level=config.get("log_level", "WARNING"),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    tune_for_server()
    # Ctrl-C reaches the whole process group, and the server, shutting down,
    # still has its last writes to make: this process ends at STOP or EOF.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    sock = socket.socket(fileno=fd)
    sock.setblocking(True)
    try:
        with contextlib.ExitStack() as cleanup:  # undone in reverse: the socket last
            cleanup.callback(sock.close)
            if make_url(config["url"]).get_backend_name() == "sqlite":
                begin, checkpointer = _open_sqlite(config, cleanup)
            else:
                begin, checkpointer = _open_server(config, cleanup), None
            sock.sendall(frame(READY))
            serve(sock, begin, int(config["max_batch"]), checkpointer)
    except (BrokenPipeError, ConnectionResetError):
        return 0  # the server went away; it has no one to answer
    return 0


def _open_sqlite(
    config: dict[str, Any], cleanup: contextlib.ExitStack
) -> tuple[Begin, Checkpointer | None]:
    """The file's writer engine, opened and set up before saying ready, and
    the Checkpointer beside it (none in memory)."""
    restart_bytes = int(config["wal_restart_bytes"])
    engine = sqlite_engine(
        config["url"],
        config["synchronous"],
        immediate=True,
        autocheckpoint_bytes=_SAFETY_NET_RESTARTS * restart_bytes,
    )
    cleanup.callback(engine.dispose)
    path = _main_file(engine)  # also opens the file and sets it up
    if not path:
        return engine.begin, None
    checkpointer = Checkpointer(
        path,
        config["synchronous"],
        restart_bytes,
        interval=float(config["wal_checkpoint_interval"]),
    )
    checkpointer.start()
    cleanup.callback(checkpointer.stop)
    return engine.begin, checkpointer


def _open_server(config: dict[str, Any], cleanup: contextlib.ExitStack) -> Begin:
    """A MySQL/MariaDB or PostgreSQL writer: one kept connection, writes sent
    together. The server is reached at the first commit."""
    engine = server_engine(config["url"], float(config["server_timeout_seconds"]), pool_size=1)
    cleanup.callback(engine.dispose)
    held_writes.enable(engine)
    lane = LaneConnection(engine)
    cleanup.callback(lane.release)
    return lane.begin


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
