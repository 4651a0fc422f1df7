"""Messages, per-user inboxes with gap-free seq, and the delivered marks.

Every write here runs inside the Database writer's transaction, so a batch
of sends costs one commit. Per-recipient seqs are assigned under a row lock
on ``inbox_state`` (FOR UPDATE where the backend has it; SQLite has a single
writer), taken in ascending uid order, so they stay gap-free and unique even
with several message-service processes writing for the same users.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import (
    BigInteger,
    Connection,
    Select,
    and_,
    func,
    insert,
    literal,
    select,
)

from mpim.errors import ErrorCode
from mpim.proto import common_pb2
from mpim.store import batched_index, rawsql
from mpim.store.database import Database
from mpim.store.schema import (
    chat_groups,
    group_log,
    group_members,
    inbox,
    inbox_delivered,
    inbox_runs,
    inbox_state,
    legacy_group_seqs,
    message_workers,
    messages,
)

DIRECT = common_pb2.MESSAGE_KIND_DIRECT
GROUP = common_pb2.MESSAGE_KIND_GROUP


@dataclass(slots=True)
class NewMessage:
    """A message to store.

    Recipients are decided inside the storing transaction (the target user,
    or the group's members at commit time, never the sender), so the checks
    and the write see the same state and a send needs no round trip before
    it is queued: sends are committed in the order they were submitted.
    """

    msg_id: int
    kind: common_pb2.MessageKind
    sender: int
    target: int
    ts_ms: int
    text: str
    cid: str | None


@dataclass(slots=True)
class StoredMessage:
    """The outcome of one NewMessage: its id and each recipient's seq.

    ``error`` is set when it was refused (no such user or group, not a
    member); nothing was stored for it. ``duplicate`` marks a retry of an
    earlier (sender, cid): ``msg_id`` is the original's and ``deliveries`` is
    empty (it was delivered the first time).
    """

    msg_id: int
    duplicate: bool
    message: NewMessage
    deliveries: list[tuple[int, int]] = field(default_factory=list)
    error: ErrorCode | None = None


def conversation_key(kind: common_pb2.MessageKind, sender: int, target: int) -> str:
    if kind == GROUP:
        return f"g:{target}"
    low, high = sorted((sender, target))
    return f"d:{low}:{high}"


def direct_conversation(uid: int, peer: int) -> str:
    return conversation_key(DIRECT, uid, peer)


def group_conversation(group_id: int) -> str:
    return conversation_key(GROUP, 0, group_id)


_MESSAGE_COLUMNS = (
    messages.c.msg_id,
    messages.c.kind,
    messages.c.sender,
    messages.c.target,
    messages.c.ts_ms,
    messages.c.text,
)


def _group_members(conn: Connection, group_id: int) -> list[int] | None:
    """Members at this moment, or None when the group does not exist."""
    if rawsql.is_sqlite(conn):
        members = rawsql.sqlite_group_member_uids(conn, group_id)
    else:
        members = [
            int(uid)
            for uid in conn.execute(
                select(group_members.c.uid).where(group_members.c.group_id == group_id)
            ).scalars()
        ]
    if members:
        return members
    found = conn.execute(
        select(chat_groups.c.group_id).where(chat_groups.c.group_id == group_id)
    ).first()
    return [] if found is not None else None


def _to_pb(row: Any, seq: int) -> common_pb2.Message:
    msg = common_pb2.Message(
        id=int(row.msg_id),
        kind=GROUP if row.kind == GROUP else DIRECT,
        from_uid=int(row.sender),
        ts_ms=int(row.ts_ms),
        seq=seq,
        text=str(row.text),
    )
    if row.kind == GROUP:
        msg.group_id = int(row.target)
    else:
        msg.to_uid = int(row.target)
    return msg


class _RunBuilder:
    """Each member's runs in one batch: consecutive seqs that are consecutive
    messages of one group. A direct message or the member's own group message
    in between ends a run (its seq or gseq no longer follows)."""

    __slots__ = ("_closed", "_open")

    def __init__(self) -> None:
        self._open: dict[int, list[int]] = {}
        self._closed: list[tuple[int, ...]] = []

    def add(self, uid: int, seq: int, group_id: int, gseq: int) -> None:
        run = self._open.get(uid)
        if run is not None:
            if run[1] == seq - 1 and run[2] == group_id and run[3] + (seq - run[0]) == gseq:
                run[1] = seq
                return
            self._closed.append((uid, *run))
        self._open[uid] = [seq, seq, group_id, gseq]

    def rows(self) -> list[tuple[int, ...]]:
        """(uid, first_seq, last_seq, group_id, first_gseq) for every run."""
        return self._closed + [(uid, *run) for uid, run in self._open.items()]


_RUN_SEQ = (inbox_runs.c.first_seq + (group_log.c.gseq - inbox_runs.c.first_gseq)).label("seq")


def _window(conn: Connection, uid: int, lo: int, hi: int) -> list[Any]:
    """The user's messages with lo < seq <= hi, in seq order, each row with ``seq``.

    ``hi`` must not pass the user's last_seq: the run arithmetic below is
    done by the database, where a BIGINT overflow is an error.

    Direct messages (and group messages stored before version 5) have an
    inbox row; group messages are found through the user's runs in the
    group log.
    """
    rows = list(conn.execute(_inbox_query(conn, uid, lo, hi)).all())
    # Runs are disjoint and ordered by first_seq: the one holding lo + 1 starts
    # at or before it, every later one after it.
    start = (
        select(func.coalesce(func.max(inbox_runs.c.first_seq), 0))
        .where(inbox_runs.c.uid == uid, inbox_runs.c.first_seq <= lo + 1)
        .scalar_subquery()
    )
    runs = inbox_runs
    # BIGINT: PostgreSQL would otherwise cast the bounds to INTEGER.
    low, high = literal(lo, BigInteger), literal(hi, BigInteger)
    joined = runs.join(
        group_log,
        and_(
            group_log.c.group_id == runs.c.group_id,
            group_log.c.gseq >= runs.c.first_gseq,
            group_log.c.gseq <= runs.c.first_gseq + (runs.c.last_seq - runs.c.first_seq),
            group_log.c.gseq > runs.c.first_gseq + (low - runs.c.first_seq),
            group_log.c.gseq <= runs.c.first_gseq + (high - runs.c.first_seq),
        ),
    ).join(messages, messages.c.msg_id == group_log.c.msg_id)
    rows.extend(
        conn.execute(
            select(*_MESSAGE_COLUMNS, _RUN_SEQ)
            .select_from(joined)
            .where(runs.c.uid == uid, runs.c.first_seq >= start, runs.c.first_seq <= hi)
        ).all()
    )
    rows.sort(key=lambda row: int(row.seq))
    return rows


def _inbox_query(conn: Connection, uid: int, lo: int, hi: int) -> Select[Any]:
    if rawsql.is_sqlite(conn):
        rows = batched_index.inbox_window(uid, lo, hi)
        return select(*_MESSAGE_COLUMNS, rows.c.seq).select_from(
            rows.join(messages, messages.c.msg_id == rows.c.msg_id)
        )
    return (
        select(*_MESSAGE_COLUMNS, inbox.c.seq)
        .select_from(inbox.join(messages, messages.c.msg_id == inbox.c.msg_id))
        .where(inbox.c.uid == uid, inbox.c.seq > lo, inbox.c.seq <= hi)
    )


def _history_query(conn: Connection, conv: str, limit: int, before_id: int | None) -> Select[Any]:
    columns = (*_MESSAGE_COLUMNS, messages.c.rseq)
    if rawsql.is_sqlite(conn):
        ids = batched_index.newest_ids(conv, limit, before_id).subquery()
        return (
            select(*columns)
            .select_from(ids.join(messages, messages.c.msg_id == ids.c.msg_id))
            .order_by(messages.c.msg_id.desc())
            .limit(limit)
        )
    query = select(*columns).where(messages.c.conv == conv)
    if before_id is not None:
        query = query.where(messages.c.msg_id < before_id)
    return query.order_by(messages.c.msg_id.desc()).limit(limit)


def _group_seqs(conn: Connection, uid: int, msg_ids: list[int]) -> dict[int, int]:
    """msg_id -> the reader's seq, for group messages that reached them by run."""
    if not msg_ids:
        return {}
    by_group: dict[int, dict[int, int]] = {}
    for msg_id, group_id, gseq in conn.execute(
        select(group_log.c.msg_id, group_log.c.group_id, group_log.c.gseq).where(
            group_log.c.msg_id.in_(msg_ids)
        )
    ).all():
        by_group.setdefault(int(group_id), {})[int(gseq)] = int(msg_id)
    out: dict[int, int] = {}
    for group_id, wanted in by_group.items():
        low, high = min(wanted), max(wanted)
        result = conn.execute(
            select(inbox_runs.c.first_seq, inbox_runs.c.last_seq, inbox_runs.c.first_gseq)
            .where(
                inbox_runs.c.uid == uid,
                inbox_runs.c.group_id == group_id,
                inbox_runs.c.first_gseq <= high,
            )
            .order_by(inbox_runs.c.first_gseq.desc())
        )
        for first_seq, last_seq, first_gseq in result:
            end = first_gseq + (last_seq - first_seq)
            if end < low:
                break
            for gseq, msg_id in wanted.items():
                if first_gseq <= gseq <= end:
                    out[msg_id] = int(first_seq + (gseq - first_gseq))
        result.close()
    return out


def _legacy_group_seqs(conn: Connection, uid: int, msg_ids: list[int]) -> dict[int, int]:
    """msg_id -> the reader's seq, for group messages stored before version 5."""
    if not msg_ids:
        return {}
    rows = conn.execute(
        select(legacy_group_seqs.c.msg_id, legacy_group_seqs.c.seq).where(
            legacy_group_seqs.c.uid == uid, legacy_group_seqs.c.msg_id.in_(msg_ids)
        )
    ).all()
    return {int(msg_id): int(seq) for msg_id, seq in rows}


def _reader_seq(row: Any, uid: int, group_seqs: dict[int, int]) -> int:
    """The reader's seq of a HISTORY row: 0 for what they sent or never received."""
    if row.kind == GROUP:
        return group_seqs.get(int(row.msg_id), 0)
    return int(row.rseq or 0) if int(row.target) == uid else 0


_HELD_PAGE = 500
# Undelivered stretches closer than this are read in one window, with the
# delivered seqs between them filtered out.
_SPAN_JOIN = 64


def _undelivered_spans(
    conn: Connection, uid: int, floor: int, last: int, wanted: int
) -> tuple[list[tuple[int, int]], set[int]]:
    """The first ``wanted`` undelivered seqs above the floor, as (low, high] windows.

    Walks the user's delivered seqs above the floor in order, a page at a
    time, so a long stretch of them costs a read per page, not per seq.
    Returns the windows and the delivered seqs inside them.
    """
    spans: list[tuple[int, int]] = []
    delivered: set[int] = set()
    position, after = floor, floor  # every seq <= position is accounted for
    while wanted > 0 and position < last:
        page = _held_page(conn, uid, after, last)
        ends = list(page)
        if len(page) < _HELD_PAGE:
            ends.append(last + 1)  # the undelivered rest, up to last
        for end in ends:
            take = min(end - position - 1, wanted)
            if take > 0:
                if spans and position - spans[-1][1] <= _SPAN_JOIN:
                    spans[-1] = (spans[-1][0], position + take)
                else:
                    spans.append((position, position + take))
                wanted -= take
            if wanted == 0:
                break
            position = end
            if end <= last:
                delivered.add(end)
        if ends:
            after = ends[-1]
    return spans, delivered


def _held_page(conn: Connection, uid: int, after: int, upto: int) -> list[int]:
    """The user's delivered seqs in (after, upto], ascending, at most a page."""
    return [
        int(seq)
        for seq in conn.execute(
            select(inbox_delivered.c.seq)
            .where(
                inbox_delivered.c.uid == uid,
                inbox_delivered.c.seq > after,
                inbox_delivered.c.seq <= upto,
            )
            .order_by(inbox_delivered.c.seq)
            .limit(_HELD_PAGE)
        ).scalars()
    ]


def _held_run_end(conn: Connection, uid: int, top: int) -> int:
    """``top`` raised over the delivered seqs that continue it."""
    while True:
        page = _held_page(conn, uid, top, top + _HELD_PAGE)
        start = top
        for seq in page:
            if seq != top + 1:
                break
            top = seq
        if top - start < _HELD_PAGE:
            return top


def _fold_marks(
    conn: Connection, after_uid: int, window: int, max_users: int
) -> tuple[int, list[tuple[int, int]]]:
    """Raise pull floors over the marks that continue them, for users in a
    window of ``window`` uids after ``after_uid``; (last uid looked at, the
    (uid, new floor) pairs). The last uid is 0 once the window passes the end.

    Servers store each delivered mark as a row and fold them into the floor
    at PULL: a user who is always online and never PULLs would keep one row
    per message. The reads take no locks and one UPDATE moves the floors: a
    floor only rises (to the end of a run of marked seqs, which stay
    delivered), so it needs no lock taken before. The rows it passes are
    deleted afterwards, in a transaction that locks no ``inbox_state`` row.
    """
    window_uids = list(
        conn.execute(
            select(inbox_state.c.uid)
            .where(inbox_state.c.uid > after_uid)
            .order_by(inbox_state.c.uid)
            .limit(window)
        ).scalars()
    )
    if not window_uids:
        return 0, []
    last = int(window_uids[-1])
    candidates = conn.execute(
        select(inbox_state.c.uid, inbox_state.c.pull_floor)
        .join(
            inbox_delivered,
            and_(
                inbox_delivered.c.uid == inbox_state.c.uid,
                inbox_delivered.c.seq == inbox_state.c.pull_floor + 1,
            ),
        )
        .where(
            inbox_state.c.uid > after_uid,
            inbox_state.c.uid <= last,
            inbox_delivered.c.uid > after_uid,
            inbox_delivered.c.uid <= last,
        )
        .order_by(inbox_state.c.uid)
        .limit(max_users)
    ).all()
    if len(candidates) == max_users:
        last = int(candidates[-1].uid)  # the rest of the window comes next time
    tops: list[tuple[int, int]] = []
    for uid, floor in candidates:
        top = _held_run_end(conn, int(uid), int(floor))
        if top > floor:
            tops.append((int(uid), top))
    _lock_seqs(conn, [uid for uid, _ in tops])  # servers: in uid order, as sends lock them
    rawsql.raise_pull_floors(conn, tops)
    return last, tops


class MessageStore:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def fold_marks(self, after_uid: int, window: int, max_users: int) -> tuple[int, int]:
        """See ``_fold_marks``; beside sends and marks, never in front of them."""
        last, tops = await self._db.write_beside(_fold_marks, after_uid, window, max_users)
        if tops:
            # Rows at or below a floor say nothing more; left behind by a
            # failure here, they cost only their space.
            await self._db.write_beside(rawsql.drop_passed_marks, tops)
        return last, len(tops)

    async def claim_worker_id(self, instance_id: str, now_ms: int) -> int:
        """A snowflake worker id no other live message service holds."""
        return await self._db.write(_claim_worker_id, instance_id, now_ms)

    async def append(
        self, batch: list[NewMessage], marks: Sequence[tuple[int, int]] = ()
    ) -> list[StoredMessage]:
        """Store a batch in one transaction; results in batch order.

        ``marks`` ((uid, seq) pairs, see ``mark_delivered``) ride in the same
        transaction: one commit, one fsync, instead of two.
        """
        # Plain tuples: pickled to the writer process six times faster than
        # the dataclasses (6 % of the event loop's time at 38,000 msg/s).
        rows = [(m.msg_id, m.kind, m.sender, m.target, m.ts_ms, m.text, m.cid) for m in batch]
        outcomes = await self._db.write(_append_and_mark, rows, marks)
        return [
            StoredMessage(msg_id, duplicate, msg, deliveries, error)
            for msg, (msg_id, duplicate, deliveries, error) in zip(batch, outcomes, strict=True)
        ]

    async def pull(self, uid: int, limit: int) -> tuple[list[common_pb2.Message], bool]:
        """Claim up to ``limit`` undelivered messages, oldest first; (messages, more)."""
        # Alone on servers: batched after a PULL, a send would take its group
        # rows after this user's inbox_state row, the reverse of every other
        # send's order, and two message services could deadlock on them.
        return await self._db.write(_pull, uid, limit, alone=not self._db.is_sqlite)

    async def sync(
        self, uid: int, after_seq: int, limit: int
    ) -> tuple[list[common_pb2.Message], int, bool]:
        """Messages with seq > after_seq; (messages, reported seq, more)."""

        def job(conn: Connection) -> tuple[list[common_pb2.Message], int, bool]:
            current = int(
                conn.execute(
                    select(inbox_state.c.last_seq).where(inbox_state.c.uid == uid)
                ).scalar()
                or 0
            )
            if after_seq >= current:
                return [], current, False
            # Seqs have no gaps: the next limit + 1 seqs are the page and its
            # "more". Bounded by last_seq, so no seq arithmetic can overflow.
            rows = _window(conn, uid, after_seq, min(after_seq + limit + 1, current))
            more = len(rows) > limit
            rows = rows[:limit]
            return [_to_pb(r, int(r.seq)) for r in rows], int(rows[-1].seq), more

        return await self._db.read(job)

    async def history(
        self, uid: int, conv: str, limit: int, before_id: int | None
    ) -> list[common_pb2.Message]:
        """Newest first; seq is the reader's own (0 for what they sent or never received)."""

        def job(conn: Connection) -> list[common_pb2.Message]:
            rows = conn.execute(_history_query(conn, conv, limit, before_id)).all()
            received = [int(r.msg_id) for r in rows if r.kind == GROUP and r.sender != uid]
            group_seqs = _group_seqs(conn, uid, received)
            group_seqs.update(
                _legacy_group_seqs(conn, uid, [m for m in received if m not in group_seqs])
            )
            return [_to_pb(r, _reader_seq(r, uid, group_seqs)) for r in rows]

        return await self._db.read(job)

    @property
    def marks_ride_with_sends(self) -> bool:
        """Whether marks are best stored with the next sends (one writer: SQLite)
        rather than alone in the side lane, beside them (see Database)."""
        return self._db.is_sqlite

    async def mark_delivered(self, marks: list[tuple[int, int]]) -> None:
        """Record (uid, seq) as sent to a connection of the user, so PULL skips them."""

        if marks:
            await self._db.write(rawsql.mark_delivered, marks, side=True)


# -- write calls: module-level, so they can cross to the writer process -----


def _claim_worker_id(conn: Connection, instance_id: str, now_ms: int) -> int:
    result = conn.execute(
        insert(message_workers).values(instance_id=instance_id, started_at_ms=now_ms)
    )
    return int(result.inserted_primary_key[0]) % 1024  # type: ignore[index]


# (msg_id, duplicate, deliveries, error) of each message, in batch order: the
# messages themselves stay with the caller instead of crossing back.
AppendOutcome = tuple[int, bool, list[tuple[int, int]], ErrorCode | None]


# msg_id, kind, sender, target, ts_ms, text, cid: a NewMessage's fields in order
MessageRow = tuple[int, common_pb2.MessageKind, int, int, int, str, str | None]


def _append_and_mark(
    conn: Connection, rows: list[MessageRow], marks: Sequence[tuple[int, int]]
) -> list[AppendOutcome]:
    results = _append(conn, [NewMessage(*row) for row in rows]) if rows else []
    if marks:
        rawsql.mark_delivered(conn, marks)
    return [(r.msg_id, r.duplicate, r.deliveries, r.error) for r in results]


def _append(conn: Connection, batch: list[NewMessage]) -> list[StoredMessage]:
    existing = _existing_cids(conn, batch)
    results: list[StoredMessage] = []
    fresh: list[StoredMessage] = []
    seen: dict[tuple[int, str], int] = {}
    for msg in batch:
        if msg.cid is not None:
            key = (msg.sender, msg.cid)
            earlier = existing.get(key, seen.get(key))
            if earlier is not None:
                results.append(StoredMessage(earlier, True, msg))
                continue
            seen[key] = msg.msg_id
        stored = StoredMessage(msg.msg_id, False, msg)
        results.append(stored)
        fresh.append(stored)
    if not fresh:
        return results
    recipients = _recipients(conn, fresh)
    next_gseq = _lock_groups(conn, fresh)
    uids = sorted({uid for targets in recipients.values() for uid in targets})
    last_seq = _lock_seqs(conn, uids)
    first_seq = dict(last_seq)
    accepted: list[StoredMessage] = []
    inbox_rows: list[tuple[int, int, int]] = []
    log_rows: list[tuple[int, int, int]] = []
    runs = _RunBuilder()
    for stored in fresh:
        targets = recipients[stored.msg_id]
        msg = stored.message
        if stored.error is None and msg.kind == DIRECT and targets[0] not in last_seq:
            stored.error = ErrorCode.NO_SUCH_USER
        if stored.error is not None:
            continue
        accepted.append(stored)
        deliveries = stored.deliveries
        if msg.kind == DIRECT:
            uid = targets[0]
            seq = last_seq[uid] + 1
            last_seq[uid] = seq
            deliveries.append((uid, seq))
            inbox_rows.append((uid, seq, stored.msg_id))
            continue
        gseq = next_gseq[msg.target]
        next_gseq[msg.target] = gseq + 1
        log_rows.append((msg.target, gseq, stored.msg_id))
        for uid in targets:
            seq = last_seq[uid] + 1
            last_seq[uid] = seq
            deliveries.append((uid, seq))
            runs.add(uid, seq, msg.target, gseq)
    failed = {s.msg_id: s.error for s in fresh if s.error is not None}
    for result in results:
        if result.duplicate and result.msg_id in failed:
            result.error = failed[result.msg_id]  # a retry of a refused send
    fresh = accepted
    if not fresh:
        return results
    convs = [conversation_key(s.message.kind, s.message.sender, s.message.target) for s in fresh]
    rawsql.insert_rows(
        conn,
        "messages",
        ("msg_id", "kind", "sender", "target", "conv", "ts_ms", "text", "client_msg_id", "rseq"),
        [
            (
                s.msg_id,
                int(s.message.kind),
                s.message.sender,
                s.message.target,
                conv,
                s.message.ts_ms,
                s.message.text,
                s.message.cid,
                s.deliveries[0][1] if s.message.kind == DIRECT else None,
            )
            for s, conv in zip(fresh, convs, strict=True)
        ],
    )
    if rawsql.is_sqlite(conn):
        batched_index.record(conn, [_entry(s, conv) for s, conv in zip(fresh, convs, strict=True)])
    elif inbox_rows:
        rawsql.insert_rows(conn, "inbox", ("uid", "seq", "msg_id"), inbox_rows)
    if log_rows:
        rawsql.insert_rows(conn, "group_log", ("group_id", "gseq", "msg_id"), log_rows)
        rawsql.insert_rows(
            conn,
            "inbox_runs",
            ("uid", "first_seq", "last_seq", "group_id", "first_gseq"),
            runs.rows(),
        )
    touched = sorted(uid for uid in last_seq if last_seq[uid] != first_seq[uid])
    if rawsql.is_sqlite(conn):
        rawsql.sqlite_set_state(conn, "last_seq", [(uid, last_seq[uid]) for uid in touched])
    else:
        rawsql.advance_last_seqs(conn, [(uid, last_seq[uid] - first_seq[uid]) for uid in touched])
    return results


def _entry(stored: StoredMessage, conv: str) -> batched_index.Entry:
    if stored.message.kind == DIRECT:
        uid, seq = stored.deliveries[0]
        return (stored.msg_id, conv, uid, seq)
    return (stored.msg_id, conv, None, None)


def _lock_groups(conn: Connection, fresh: list[StoredMessage]) -> dict[int, int]:
    """group_id -> the next gseq, for the groups this batch writes to.

    Servers lock the groups' rows first (before any inbox_state row, the
    order every writer keeps), so two message services number a group's
    log one after the other. SQLite's writer lock already covers it.
    """
    group_ids = sorted(
        {s.message.target for s in fresh if s.message.kind == GROUP and s.error is None}
    )
    if not group_ids:
        return {}
    if not rawsql.is_sqlite(conn):
        conn.execute(
            select(chat_groups.c.group_id)
            .where(chat_groups.c.group_id.in_(group_ids))
            .order_by(chat_groups.c.group_id)
            .with_for_update()
        ).all()
    return {
        gid: int(
            conn.execute(
                select(func.coalesce(func.max(group_log.c.gseq), 0)).where(
                    group_log.c.group_id == gid
                )
            ).scalar_one()
        )
        + 1
        for gid in group_ids
    }


def _recipients(conn: Connection, fresh: list[StoredMessage]) -> dict[int, list[int]]:
    """msg_id -> who gets an inbox row; sets ``error`` on refused group sends."""
    out: dict[int, list[int]] = {}
    members_of: dict[int, list[int] | None] = {}
    for stored in fresh:
        msg = stored.message
        if msg.kind == DIRECT:
            out[msg.msg_id] = [msg.target]
            continue
        if msg.target not in members_of:
            members_of[msg.target] = _group_members(conn, msg.target)
        members = members_of[msg.target]
        if members is None:
            stored.error = ErrorCode.NO_SUCH_GROUP
        elif msg.sender not in members:
            stored.error = ErrorCode.NOT_MEMBER
        out[msg.msg_id] = [] if members is None else [u for u in members if u != msg.sender]
    return out


def _existing_cids(conn: Connection, batch: list[NewMessage]) -> dict[tuple[int, str], int]:
    wanted = [(m.sender, m.cid) for m in batch if m.cid is not None]
    return {(sender, cid): msg_id for sender, cid, msg_id in rawsql.cid_owners(conn, wanted)}


def _lock_seqs(conn: Connection, uids: list[int]) -> dict[int, int]:
    if rawsql.is_sqlite(conn):
        # BEGIN IMMEDIATE already holds the write lock: nothing to lock per row.
        return dict(rawsql.sqlite_last_seqs(conn, uids))
    # A uid without a row is not a user (every account gets one at birth).
    return dict(rawsql.lock_last_seqs(conn, uids))


def _pull(conn: Connection, uid: int, limit: int) -> tuple[list[common_pb2.Message], bool]:
    state = conn.execute(
        select(inbox_state.c.pull_floor, inbox_state.c.last_seq)
        .where(inbox_state.c.uid == uid)
        .with_for_update()
    ).first()
    if state is None:
        return [], False
    floor, last = int(state.pull_floor), int(state.last_seq)
    spans, delivered = _undelivered_spans(conn, uid, floor, last, limit + 1)
    found = [
        row
        for low, high in spans
        for row in _window(conn, uid, low, high)
        if row.seq not in delivered
    ]
    more = len(found) > limit
    found = found[:limit]
    # Every seq up to the new floor is now returned or was delivered before.
    new_floor = _held_run_end(conn, uid, int(found[-1].seq)) if more else last
    if new_floor > floor:
        rawsql.set_pull_floor(conn, uid, new_floor)
    return [_to_pb(row, int(row.seq)) for row in found], more
