"""SQLite's one-row reads on the writer's path give what a row-per-value SELECT gives."""

from __future__ import annotations

import pytest
from sqlalchemy import create_engine, event, insert, select
from sqlalchemy.exc import IntegrityError

from mpim.store import rawsql
from mpim.store.failures import is_conflict
from mpim.store.schema import chat_groups, group_members, inbox_delivered, inbox_state, metadata


def test_last_seqs_and_members_match_plain_selects_across_chunks() -> None:
    engine = create_engine("sqlite://")
    metadata.create_all(engine)
    with engine.begin() as conn:
        known = list(range(1, 2 * rawsql.CHUNK + 50))
        conn.execute(
            insert(inbox_state),
            [{"uid": uid, "last_seq": uid * 7 % 1000, "pull_floor": 0} for uid in known],
        )
        conn.execute(
            insert(chat_groups),
            [{"group_id": 5, "name": "g", "description": "", "owner_uid": 1, "created_at_ms": 0}],
        )
        conn.execute(
            insert(group_members),
            [{"group_id": 5, "uid": uid, "joined_at_ms": 0} for uid in (3, 1, 2_000_000_000_123)],
        )

        asked = [*known, 9_999_999_999]  # one uid without an inbox: left out
        expected = dict(conn.execute(select(inbox_state.c.uid, inbox_state.c.last_seq)).all())
        assert dict(rawsql.sqlite_last_seqs(conn, asked)) == expected
        assert rawsql.sqlite_last_seqs(conn, []) == []

        assert sorted(rawsql.sqlite_group_member_uids(conn, 5)) == [1, 3, 2_000_000_000_123]
        assert rawsql.sqlite_group_member_uids(conn, 6) == []


def test_marks_raise_floors_where_they_continue_them_and_keep_the_rest() -> None:
    engine = create_engine("sqlite://")
    metadata.create_all(engine)
    uids = list(range(1, 2 * rawsql.CHUNK + 50))
    with engine.begin() as conn:
        conn.execute(
            insert(inbox_state), [{"uid": uid, "last_seq": 10, "pull_floor": 2} for uid in uids]
        )
        conn.execute(insert(inbox_delivered), [{"uid": 1, "seq": 5}, {"uid": 2, "seq": 9}])
        marks = [(uid, seq) for uid in uids for seq in (3, 4)]  # continue every floor
        marks += [(1, 7), (2, 6), (2, 6), (9_999, 3)]  # gaps; a duplicate; not a user
        rawsql.mark_delivered(conn, marks)

        floors = dict(conn.execute(select(inbox_state.c.uid, inbox_state.c.pull_floor)).all())
        held = sorted(tuple(r) for r in conn.execute(select(inbox_delivered)).all())
        rawsql.sqlite_set_state(conn, "last_seq", [(uid, uid) for uid in uids])
        last = dict(conn.execute(select(inbox_state.c.uid, inbox_state.c.last_seq)).all())
    assert floors == {uid: 5 if uid == 1 else 4 for uid in uids}  # uid 1: 3, 4 and the held 5
    assert held == [(1, 7), (2, 6), (2, 9)]
    assert last == {uid: uid for uid in uids}


def test_a_floor_held_back_by_a_hole_reads_nothing_until_the_hole_is_marked() -> None:
    engine = create_engine("sqlite://")
    metadata.create_all(engine)
    statements: list[str] = []
    event.listen(engine, "before_cursor_execute", lambda *a: statements.append(a[2]))
    with engine.begin() as conn:
        conn.execute(insert(inbox_state), [{"uid": 1, "last_seq": 2000, "pull_floor": 0}])
        # seq 1 was never delivered: every later mark is held
        for start in range(2, 1500, 300):
            rawsql.mark_delivered(conn, [(1, seq) for seq in range(start, start + 300)])
        statements.clear()
        rawsql.mark_delivered(conn, [(1, 1600)])
        assert not any("FROM inbox_delivered" in sql for sql in statements)
        rawsql.mark_delivered(conn, [(1, 1)])  # the hole is filled: 1..1501 all delivered
        floor = conn.execute(select(inbox_state.c.pull_floor)).scalar_one()
        held = conn.execute(select(inbox_delivered.c.seq)).scalars().all()
    assert floor == 1501 and held == [1600]


def test_driver_errors_come_as_sqlalchemys_and_keep_their_parameters_hidden() -> None:
    # rawsql.run skips SQLAlchemy on SQLite: failures must still be told apart
    # by SQLAlchemy's classes (store/failures.py), and no value may reach a log.
    engine = create_engine("sqlite://", hide_parameters=True)
    metadata.create_all(engine)
    with engine.connect() as conn:
        rawsql.insert_rows(conn, "inbox_delivered", ("uid", "seq"), [(1, 424242)])
        with pytest.raises(IntegrityError) as caught:
            rawsql.insert_rows(conn, "inbox_delivered", ("uid", "seq"), [(1, 424242)])
        assert "424242" not in str(caught.value)
        assert is_conflict(caught.value)


def test_reads_on_a_fresh_connection_share_one_transaction() -> None:
    # As SQLAlchemy's autobegin would: the first statement opens a transaction.
    engine = create_engine("sqlite://")
    metadata.create_all(engine)
    with engine.connect() as conn:
        assert not conn.in_transaction()
        assert rawsql.sqlite_last_seqs(conn, [1]) == []
        assert conn.in_transaction()
