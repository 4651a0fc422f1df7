"""SQLite's write-ahead log checkpointed beside the writer, not inside its commits.

With automatic checkpoints, the commit that pushes the log past its limit
also copies every page changed since the last checkpoint into the database
file and syncs it: under load that commit took 20-50 ms, and every message
behind it waited as long (embedded c2c at 5,000 msg/s offered: end-to-end
p99 15-42 ms, 9-13 ms with checkpoints held off altogether). Here the writer's
connection does not checkpoint (save as a safety net far above the
restart size); a thread of the writer process does, on its
own connection, every ``interval`` seconds. A checkpoint and a commit run at
the same time: SQLite copies only frames that are already committed, and the
thread holds no lock a commit needs (PASSIVE mode).

A log is restarted from its start only by a commit that begins when every
frame is already copied, which a checkpoint running beside a busy writer
rarely manages. So once the log passes ``restart_bytes`` the thread copies
again at once, until at most ``_WRITER_SHARE_FRAMES`` are left (a commit or
two of c2c's); then the writer copies that rest itself, after its next
commit, and the commit after restarts the log (unless a reader still reads
an older snapshot from the log then: the writer tries again after its next
commit). The log stays near ``restart_bytes``; the writer's share is a few
commits' pages and two fsyncs (log and database file) per restart.

The checkpoint connection syncs as the writer's does (``synchronous``): a
restarted log must not be the only copy of a commit the disk has not kept.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from typing import Final

from mpim.store.database import SQLITE_BUSY_SECONDS

logger = logging.getLogger(__name__)

INTERVAL_SECONDS: Final = 0.25
# When the log is this close to fully copied, the writer copies the rest.
_WRITER_SHARE_FRAMES: Final = 256
# Between catch-up rounds, so a log that cannot be copied (a reader holds an
# old snapshot) does not spin the thread.
_CATCH_UP_PAUSE_SECONDS: Final = 0.002


class Checkpointer:
    """Background checkpoints of one SQLite file's log; see the module doc."""

    def __init__(
        self,
        path: str,
        synchronous: str,
        restart_bytes: int,
        *,
        interval: float = INTERVAL_SECONDS,
    ) -> None:
        self._conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._conn.execute(f"PRAGMA busy_timeout={int(SQLITE_BUSY_SECONDS * 1000)}")
        self._conn.execute(f"PRAGMA synchronous={synchronous}")
        # Opens the file in WAL mode; until then a checkpoint reports no log.
        self._conn.execute("PRAGMA journal_mode").fetchone()
        page_size = int(self._conn.execute("PRAGMA page_size").fetchone()[0])
        self._restart_frames = max(1, restart_bytes // page_size)
        self._interval = interval
        self._lock = threading.Lock()  # one checkpoint at a time on the connection
        self._stop = threading.Event()
        # The log as the last checkpoint left it: frames in it, frames copied.
        self.log_frames = 0
        self.copied_frames = 0
        self._thread = threading.Thread(target=self._run, name="mpim-checkpoint", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.ident is not None:  # started
            self._thread.join()
        with self._lock:
            self._conn.close()

    def after_commit(self) -> None:
        """Called by the writer between its commits: once the thread has nearly
        caught up with a log due for a restart, copy the rest, so that the
        writer's next transaction restarts the log. (Only a checkpoint between
        two of the writer's transactions can: one that ends while a
        transaction is open sees it add frames at its commit.)"""
        left = self._left_before_restart()
        if left is None or left > _WRITER_SHARE_FRAMES:
            return
        if self._lock.acquire(blocking=False):  # else the thread is copying now
            try:
                if self._checkpoint():
                    self.log_frames = self.copied_frames = 0  # restarted by the next commit
            except sqlite3.Error as exc:  # the commit stands; the thread tries again
                logger.warning("checkpoint failed: %s", exc)
            finally:
                self._lock.release()

    def _run(self) -> None:
        pause = self._interval
        while not self._stop.wait(pause):
            try:
                with self._lock:
                    self._checkpoint()
            except Exception:  # a full disk, say: the writer will say so too
                logger.warning("checkpoint failed", exc_info=True)
                pause = self._interval
                continue
            left = self._left_before_restart()
            chasing = left is not None and left > _WRITER_SHARE_FRAMES
            pause = _CATCH_UP_PAUSE_SECONDS if chasing else self._interval

    def _left_before_restart(self) -> int | None:
        """Frames still to copy in a log due for a restart; None if it is not due."""
        if self.log_frames < self._restart_frames:
            return None
        return self.log_frames - self.copied_frames

    def _checkpoint(self) -> bool:
        """One PASSIVE checkpoint; whether it copied the whole log."""
        _busy, log, copied = self._conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        self.log_frames, self.copied_frames = max(log, 0), max(copied, 0)
        return bool(log >= 0 and log == copied)
