"""The embedded store's conversation index, written in batches (SQLite).

HISTORY finds a conversation's messages by (conv, msg_id). As an index on
``messages`` that cost every message one random leaf page per commit: a
busy conversation's entries sit together, but one commit's messages belong
to many conversations, so it wrote nearly one leaf per message. In
embedded c2c at 10,000 msg/s offered that was half of what the writer
process wrote, to the log and by its checkpoints (70 MB/s with the index,
35 MB/s without).

So a new message's (msg_id, conv) is appended to ``conv_pending``, in
arrival order, where a commit's entries share a page or two. Once it holds
``MERGE_ROWS`` entries, the commit that crosses the mark moves them all,
sorted, into ``conv_index``: each conversation's entries land together at
the end of its range, one leaf for many messages (50 MB/s written). HISTORY
reads both in one statement, so it sees one snapshot: every message exactly
once, whether or not a merge committed meanwhile. The pending part is
scanned, which is one reason it is kept small.

SQLite only. Its write lock makes every append and merge one after the
other, so no entry can arrive while a merge reads and empties the table.
Servers interleave transactions, and InnoDB already buffers changes to
secondary indexes: they keep the index (``schema.CONV_INDEX``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

from sqlalchemy import Connection, Select, select, union_all

from mpim.store import rawsql
from mpim.store.schema import conv_index, conv_pending

#: Entries waiting at most (a few more: the crossing commit's own). The
#: commit that merges them stalls the sends behind it: about 3.5 us an entry
#: (``scripts/store_bench.py``), 3.7 ms at 1,024 and 10 ms at 4,096. Fewer
#: merge more often and save fewer pages: 200 busy conversations take about
#: 200 leaves a merge, however many entries it moves.
MERGE_ROWS: Final = 1024


def record(conn: Connection, entries: Sequence[tuple[int, str]]) -> None:
    """Queue (msg_id, conv) of messages stored in this transaction."""
    rawsql.insert_rows(conn, conv_pending.name, ("msg_id", "conv"), entries)
    waiting = rawsql.run(conn, "SELECT max(pos) FROM conv_pending", ()).fetchone()[0]
    if waiting is not None and waiting >= MERGE_ROWS:
        merge(conn)


def merge(conn: Connection) -> None:
    """Move every pending entry into the index, in key order."""
    rawsql.run(
        conn,
        "INSERT INTO conv_index (conv, msg_id) "
        "SELECT conv, msg_id FROM conv_pending ORDER BY conv, msg_id",
        (),
    )
    # Without WHERE SQLite frees the pages at once, and pos restarts at 1.
    rawsql.run(conn, "DELETE FROM conv_pending", ())


def newest_ids(conv: str, limit: int, before_id: int | None) -> Select[tuple[int]]:
    """The ids of ``conv``'s newest ``limit`` messages (below ``before_id``):
    the index's newest and every pending one, to be ordered and cut by the
    caller (the pending ones are nearly always the newer, but ids need not
    grow in the order their messages commit)."""
    indexed = select(conv_index.c.msg_id).where(conv_index.c.conv == conv)
    pending = select(conv_pending.c.msg_id).where(conv_pending.c.conv == conv)
    if before_id is not None:
        indexed = indexed.where(conv_index.c.msg_id < before_id)
        pending = pending.where(conv_pending.c.msg_id < before_id)
    newest = indexed.order_by(conv_index.c.msg_id.desc()).limit(limit).subquery()
    return union_all(select(newest.c.msg_id), pending)  # type: ignore[return-value]
