"""The embedded store's two per-message indexes, written in batches (SQLite).

A direct message has two entries keyed by something other than its id:
HISTORY's (conv, msg_id) and its recipient's inbox row (uid, seq). Written
with the message, each cost a random leaf page per commit: a busy
conversation's or user's entries sit together, but one commit's messages
belong to many conversations and users, so nearly every message wrote two
leaves of its own. In embedded c2c at 10,000 msg/s offered the writer
process wrote 64-75 MB/s, to the log and by its checkpoints; with both
indexes in batches 31-34 MB/s, and p99 fell by about half.

So a new message's entries are appended to ``index_pending``, one row in
arrival order, where a commit's entries share a page or two. Once it holds
``MERGE_ROWS`` rows, the commit that crosses the mark moves them all,
sorted, into ``conv_index`` and ``inbox``: each conversation's and user's
entries land together at the end of their range, one leaf for many
messages. Readers (HISTORY; SYNC and PULL through ``inbox_window``) read
both in one statement, so they see one snapshot: every entry exactly once,
whether or not a merge committed meanwhile. The pending rows are scanned,
which is one reason there are few of them.

SQLite only. Its write lock puts every append and merge one after the
other, so no entry can arrive while a merge reads and empties the table.
Servers interleave transactions, and InnoDB already buffers changes to
secondary indexes: they write both as before.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Final

from sqlalchemy import Connection, Select, Subquery, select, union_all

from mpim.store import rawsql
from mpim.store.schema import conv_index, inbox, index_pending

logger = logging.getLogger(__name__)

#: Rows waiting at most (a few more: the crossing commit's own). The commit
#: that merges them stalls the sends behind it: about 7 us a direct message,
#: one entry in each index (``scripts/store_bench.py``), 7 ms at 1,024. Fewer
#: merge more often and save fewer pages: 200 busy conversations take about
#: 200 leaves a merge, however many entries it moves.
MERGE_ROWS: Final = 1024

#: (msg_id, conv, recipient uid or None, recipient seq or None)
Entry = tuple[int, str, int | None, int | None]


def record(conn: Connection, entries: Sequence[Entry]) -> None:
    """Queue the entries of messages stored in this transaction."""
    rawsql.insert_rows(conn, index_pending.name, ("msg_id", "conv", "uid", "seq"), entries)
    waiting = rawsql.run(conn, "SELECT max(pos) FROM index_pending", ()).fetchone()[0]
    if waiting is not None and waiting >= MERGE_ROWS:
        merge(conn)


def merge(conn: Connection) -> None:
    """Move every pending entry into its index, in key order.

    A key can only be taken already if the store was changed from outside
    (a restored or hand-edited table): seqs come from inbox_state under the
    write lock and ids are the messages' keys. Should it happen, a plain
    INSERT would fail the merge in every commit from then on, and so refuse
    every send, not just the one at fault: the existing row is kept
    instead, and the skipped entries are reported.
    """
    entries = _pending_entries(conn)
    conv = rawsql.run(
        conn,
        "INSERT OR IGNORE INTO conv_index (conv, msg_id) "
        "SELECT conv, msg_id FROM index_pending ORDER BY conv, msg_id",
        (),
    )
    inbox_rows = rawsql.run(
        conn,
        "INSERT OR IGNORE INTO inbox (uid, seq, msg_id) SELECT uid, seq, msg_id "
        "FROM index_pending WHERE uid IS NOT NULL ORDER BY uid, seq",
        (),
    )
    skipped = entries - int(conv.rowcount) - int(inbox_rows.rowcount)
    if skipped:
        logger.error(
            "index merge: %d of %d entries had a key already taken in conv_index or inbox; "
            "the existing rows were kept (the store was changed from outside MPIM?)",
            skipped,
            entries,
        )
    # Without WHERE SQLite frees the pages at once, and pos restarts at 1.
    rawsql.run(conn, "DELETE FROM index_pending", ())


def _pending_entries(conn: Connection) -> int:
    """Entries waiting: one in conv_index per row, one in inbox per direct message."""
    row = rawsql.run(conn, "SELECT count(*) + count(uid) FROM index_pending", ()).fetchone()
    return int(row[0])


def newest_ids(conv: str, limit: int, before_id: int | None) -> Select[tuple[int]]:
    """The ids of ``conv``'s newest ``limit`` messages (below ``before_id``):
    the index's newest and every pending one, to be ordered and cut by the
    caller (the pending ones are nearly always the newer, but ids need not
    grow in the order their messages commit)."""
    indexed = select(conv_index.c.msg_id).where(conv_index.c.conv == conv)
    pending = select(index_pending.c.msg_id).where(index_pending.c.conv == conv)
    if before_id is not None:
        indexed = indexed.where(conv_index.c.msg_id < before_id)
        pending = pending.where(index_pending.c.msg_id < before_id)
    newest = indexed.order_by(conv_index.c.msg_id.desc()).limit(limit).subquery()
    return union_all(select(newest.c.msg_id), pending)  # type: ignore[return-value]


def inbox_window(uid: int, lo: int, hi: int) -> Subquery:
    """(seq, msg_id) of the user's inbox rows with lo < seq <= hi, merged or not."""
    merged = select(inbox.c.seq, inbox.c.msg_id).where(
        inbox.c.uid == uid, inbox.c.seq > lo, inbox.c.seq <= hi
    )
    pending = select(index_pending.c.seq, index_pending.c.msg_id).where(
        index_pending.c.uid == uid, index_pending.c.seq > lo, index_pending.c.seq <= hi
    )
    return union_all(merged, pending).subquery()
