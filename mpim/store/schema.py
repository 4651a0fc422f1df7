"""The relational schema (SQLAlchemy Core) and its versioned upgrade path."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, Final

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Connection,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    SmallInteger,
    String,
    Table,
    Text,
    inspect,
    select,
    text,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.schema import SchemaItem
from sqlalchemy.sql.compiler import DDLCompiler
from sqlalchemy.sql.ddl import BaseDDLElement

from mpim.proto import common_pb2
from mpim.store import rawsql

logger = logging.getLogger(__name__)

SCHEMA_VERSION: Final = 10
TOKENS_EXPIRY_INDEX: Final = "ix_tokens_expires_at_ms"
CID_INDEX: Final = "uq_messages_sender_cid"
CONV_INDEX: Final = "ix_messages_conv"

# SQLite only auto-increments an INTEGER PRIMARY KEY; elsewhere ids are BIGINT.
# Such a key is the row's rowid itself: the table needs no separate index for
# it (since version 8 also for keys MPIM assigns: msg_id, inbox_state.uid).
AutoId = BigInteger().with_variant(Integer(), "sqlite")

metadata = MetaData()
# Tables only the embedded store (SQLite, one writer) has.
sqlite_metadata = MetaData()


def _not_sqlite(
    ddl: BaseDDLElement,
    target: SchemaItem | str,
    bind: Connection | None,
    tables: list[Table] | None = None,
    state: Any | None = None,
    *,
    dialect: Dialect,
    compiler: DDLCompiler | None = None,
    checkfirst: bool = False,
) -> bool:
    return dialect.name != "sqlite"


schema_version = Table(
    "mpim_schema_version",
    metadata,
    Column("version", Integer, primary_key=True, autoincrement=False),
)

users = Table(
    "users",
    metadata,
    Column("uid", AutoId, primary_key=True, autoincrement=True),
    Column("username", String(32), nullable=False),
    # Lower-cased name: uniqueness ignores ASCII case.
    Column("username_key", String(32), nullable=False, unique=True),
    Column("password_hash", String(255), nullable=False),
    Column("created_at_ms", BigInteger, nullable=False),
)

tokens = Table(
    "tokens",
    metadata,
    # sha256 of the token; the token itself is never stored.
    Column("token_hash", String(64), primary_key=True),
    Column("uid", BigInteger, nullable=False, index=True),
    Column("created_at_ms", BigInteger, nullable=False),
    Column("expires_at_ms", BigInteger, nullable=False),
    Column("revoked", Boolean, nullable=False, default=False),
    # The purge of expired tokens finds its rows without a table scan.
    Index(TOKENS_EXPIRY_INDEX, "expires_at_ms"),
)

friends = Table(
    "friends",
    metadata,
    Column("uid", BigInteger, nullable=False),
    Column("friend_uid", BigInteger, nullable=False),
    Column("created_at_ms", BigInteger, nullable=False),
    PrimaryKeyConstraint("uid", "friend_uid"),
)

chat_groups = Table(
    "chat_groups",
    metadata,
    Column("group_id", AutoId, primary_key=True, autoincrement=True),
    Column("name", String(64), nullable=False),
    Column("description", String(512), nullable=False, default=""),
    Column("owner_uid", BigInteger, nullable=False),
    Column("created_at_ms", BigInteger, nullable=False),
)

group_members = Table(
    "group_members",
    metadata,
    Column("group_id", BigInteger, nullable=False),
    Column("uid", BigInteger, nullable=False),
    Column("joined_at_ms", BigInteger, nullable=False),
    PrimaryKeyConstraint("group_id", "uid"),
    Index("ix_group_members_uid", "uid", "group_id"),
)

messages = Table(
    "messages",
    metadata,
    Column("msg_id", AutoId, primary_key=True, autoincrement=False),
    Column("kind", SmallInteger, nullable=False),
    Column("sender", BigInteger, nullable=False),
    # the recipient uid (direct) or the group id (group)
    Column("target", BigInteger, nullable=False),
    # conversation key: "d:<low uid>:<high uid>" or "g:<group id>"
    Column("conv", String(48), nullable=False),
    Column("ts_ms", BigInteger, nullable=False),
    Column("text", Text, nullable=False),
    Column("client_msg_id", String(64), nullable=True),
    # a direct message's seq in its recipient's inbox (since version 7): what
    # HISTORY shows them, where an index on inbox (uid, msg_id) found it
    Column("rseq", BigInteger, nullable=True),
    # HISTORY's index. SQLite (since version 9) keeps it as a table of its
    # own, written in batches (``conv_index``): see store/batched_index.py.
    Index(CONV_INDEX, "conv", "msg_id").ddl_if(callable_=_not_sqlite),
    # Only messages sent with @cid= need an entry: where the backend has
    # partial indexes, the others cost no index page (since version 4).
    Index(
        CID_INDEX,
        "sender",
        "client_msg_id",
        unique=True,
        sqlite_where=text("client_msg_id IS NOT NULL"),
        postgresql_where=text("client_msg_id IS NOT NULL"),
    ),
)

inbox = Table(
    "inbox",
    metadata,
    Column("uid", BigInteger, nullable=False),
    Column("seq", BigInteger, nullable=False),
    Column("msg_id", BigInteger, nullable=False),
    # (version 4 and before: a ``delivered`` flag; see inbox_delivered)
    PrimaryKeyConstraint("uid", "seq"),
    # (version 6 and before: unique (uid, msg_id), for HISTORY; see
    # messages.rseq and legacy_group_seqs)
    sqlite_with_rowid=False,
)

# A member's seq of a group message stored before version 5, which reached
# them as an inbox row (copied by the upgrade to version 7). Nothing writes
# it since; HISTORY reads it for group messages no run holds.
legacy_group_seqs = Table(
    "legacy_group_seqs",
    metadata,
    Column("uid", BigInteger, nullable=False),
    Column("msg_id", BigInteger, nullable=False),
    Column("seq", BigInteger, nullable=False),
    PrimaryKeyConstraint("uid", "msg_id"),
)

# Each group message once, numbered within its group without gaps (since
# version 5). Members' inboxes point into it by run, not one row each.
group_log = Table(
    "group_log",
    metadata,
    Column("group_id", BigInteger, nullable=False),
    Column("gseq", BigInteger, nullable=False),
    Column("msg_id", BigInteger, nullable=False, index=True),
    PrimaryKeyConstraint("group_id", "gseq"),
    sqlite_with_rowid=False,
)

# A member's seqs first_seq..last_seq are the group's messages
# first_gseq..first_gseq + (last_seq - first_seq), in order (since version
# 5). A message of 1,000 members costs about 1,000 rows per commit, however
# many messages that commit holds, instead of 1,000 rows per message.
inbox_runs = Table(
    "inbox_runs",
    metadata,
    Column("uid", BigInteger, nullable=False),
    Column("first_seq", BigInteger, nullable=False),
    Column("last_seq", BigInteger, nullable=False),
    Column("group_id", BigInteger, nullable=False),
    Column("first_gseq", BigInteger, nullable=False),
    PrimaryKeyConstraint("uid", "first_seq"),
    Index("ix_inbox_runs_group", "uid", "group_id", "first_gseq"),
    sqlite_with_rowid=False,
)

# Seqs above the user's pull_floor that were delivered out of order (since
# version 5). Rows at or below the floor are deleted as it passes them.
inbox_delivered = Table(
    "inbox_delivered",
    metadata,
    Column("uid", BigInteger, nullable=False),
    Column("seq", BigInteger, nullable=False),
    PrimaryKeyConstraint("uid", "seq"),
    sqlite_with_rowid=False,
)

inbox_state = Table(
    "inbox_state",
    metadata,
    Column("uid", AutoId, primary_key=True, autoincrement=False),
    # highest seq handed out: the next message gets last_seq + 1
    Column("last_seq", BigInteger, nullable=False, default=0),
    # every seq <= pull_floor has been delivered (sent to at least one
    # connection of the user, by push or PULL); above it, inbox_delivered
    Column("pull_floor", BigInteger, nullable=False, default=0),
)

# Each message-service process takes a row: its snowflake worker id is the
# row id modulo 1024, so concurrent writers never mint the same message id.
message_workers = Table(
    "message_workers",
    metadata,
    Column("worker_seq", AutoId, primary_key=True, autoincrement=True),
    Column("instance_id", String(64), nullable=False),
    Column("started_at_ms", BigInteger, nullable=False),
)

# SQLite's conversation index (since version 9): (conv, msg_id) of every
# message but the newest, whose entries wait in index_pending, in arrival
# order, to be merged here (and into the inbox) in batches (since version
# 10; store/batched_index.py).
conv_index = Table(
    "conv_index",
    sqlite_metadata,
    Column("conv", String(48), nullable=False),
    Column("msg_id", BigInteger, nullable=False),
    PrimaryKeyConstraint("conv", "msg_id"),
    sqlite_with_rowid=False,
)

index_pending = Table(
    "index_pending",
    sqlite_metadata,
    # 1, 2, 3 ... after each merge empties the table: max(pos) is its size
    Column("pos", Integer, primary_key=True, autoincrement=True),
    Column("msg_id", BigInteger, nullable=False),
    Column("conv", String(48), nullable=False),
    # a direct message's inbox row: its recipient and their seq (NULL for a
    # group message, which reaches members by run)
    Column("uid", BigInteger, nullable=True),
    Column("seq", BigInteger, nullable=True),
)


def _upgrade_1_to_2(conn: Connection) -> None:
    message_workers.create(conn, checkfirst=True)


def _upgrade_2_to_3(conn: Connection) -> None:
    if TOKENS_EXPIRY_INDEX not in {ix["name"] for ix in inspect(conn).get_indexes("tokens")}:
        next(ix for ix in tokens.indexes if ix.name == TOKENS_EXPIRY_INDEX).create(conn)


def _upgrade_3_to_4(conn: Connection) -> None:
    """SQLite: the (sender, cid) uniqueness becomes a partial index.

    Up to version 3 it was a table constraint, which SQLite cannot drop, so
    the table is rebuilt. A message without a cid then costs no page of that
    index: in embedded c2c at 10,000 msg/s that was one random page in four
    per message, and dropping it cut the end-to-end p50 by about half. Other
    backends keep their unique key as it is; it means the same.
    """
    if conn.dialect.name != "sqlite":
        return
    constraints = {c["name"] for c in inspect(conn).get_unique_constraints("messages")}
    if CID_INDEX not in constraints:
        return  # created by this version already
    # The columns it has: later versions add some (rseq), which this rebuild creates.
    columns = ", ".join(c["name"] for c in inspect(conn).get_columns("messages"))
    conn.execute(text("DROP INDEX IF EXISTS ix_messages_conv"))
    conn.execute(text("ALTER TABLE messages RENAME TO messages_v3"))
    messages.create(conn)
    conn.execute(text(f"INSERT INTO messages ({columns}) SELECT {columns} FROM messages_v3"))
    conn.execute(text("DROP TABLE messages_v3"))


def _upgrade_4_to_5(conn: Connection) -> None:
    """Group messages move to a group log with per-member runs; delivered
    marks above the pull floor move from ``inbox.delivered`` to their own table.

    Inbox rows written before stay and keep working: reads take both.
    """
    metadata.create_all(conn, tables=[group_log, inbox_runs, inbox_delivered], checkfirst=True)
    conn.execute(
        text(
            "INSERT INTO inbox_delivered (uid, seq) SELECT i.uid, i.seq FROM inbox i "
            "JOIN inbox_state s ON s.uid = i.uid WHERE i.delivered AND i.seq > s.pull_floor"
        )
    )
    _raise_floors_over_held(conn)


def _upgrade_5_to_6(conn: Connection) -> None:
    """``inbox.delivered``, unread since version 5, is dropped.

    A version-4 message service still running would PULL past the group
    messages it cannot see and mark into a column nobody reads. Without the
    column its sends, PULLs and marks fail loudly instead (the upgrade note
    in docs/operations.md: stop them all first).
    """
    if "delivered" in {c["name"] for c in inspect(conn).get_columns("inbox")}:
        conn.execute(text("ALTER TABLE inbox DROP COLUMN delivered"))


_INBOX_MSG_KEY: Final = "uq_inbox_uid_msg"


def _upgrade_6_to_7(conn: Connection) -> None:
    """The inbox loses its unique (uid, msg_id) index.

    Only HISTORY used it, to find the reader's seq of each message, and it
    cost every direct message one more random index page per commit: in
    embedded c2c about 30 % of the log written. A direct message now
    carries its recipient's seq (``messages.rseq``); the seqs of group
    messages stored before version 5 as inbox rows move to
    ``legacy_group_seqs``.
    """
    if "rseq" not in {c["name"] for c in inspect(conn).get_columns("messages")}:
        conn.execute(text("ALTER TABLE messages ADD COLUMN rseq BIGINT"))
    legacy_group_seqs.create(conn, checkfirst=True)
    found = inspect(conn)
    constraints = {c["name"] for c in found.get_unique_constraints("inbox")}
    indexes = {ix["name"] for ix in found.get_indexes("inbox") if ix.get("unique")}
    if _INBOX_MSG_KEY not in constraints | indexes:
        return  # created without it
    kinds = {"direct": common_pb2.MESSAGE_KIND_DIRECT, "group": common_pb2.MESSAGE_KIND_GROUP}
    conn.execute(
        text(
            "UPDATE messages SET rseq = (SELECT i.seq FROM inbox i "
            "WHERE i.uid = messages.target AND i.msg_id = messages.msg_id) "
            "WHERE kind = :direct AND rseq IS NULL"
        ),
        kinds,
    )
    # MySQL commits each DDL at once: a run that failed at the DROP below
    # left these rows, and runs again from the start.
    conn.execute(text("DELETE FROM legacy_group_seqs"))
    conn.execute(
        text(
            "INSERT INTO legacy_group_seqs (uid, msg_id, seq) SELECT i.uid, i.msg_id, i.seq "
            "FROM inbox i JOIN messages m ON m.msg_id = i.msg_id WHERE m.kind = :group"
        ),
        kinds,
    )
    dialect = conn.dialect.name
    if dialect == "sqlite":  # a table constraint: SQLite rebuilds the table
        conn.execute(text("ALTER TABLE inbox RENAME TO inbox_v6"))
        inbox.create(conn)
        conn.execute(
            text("INSERT INTO inbox (uid, seq, msg_id) SELECT uid, seq, msg_id FROM inbox_v6")
        )
        conn.execute(text("DROP TABLE inbox_v6"))
    elif dialect == "postgresql" and _INBOX_MSG_KEY in constraints:
        conn.execute(text(f"ALTER TABLE inbox DROP CONSTRAINT {_INBOX_MSG_KEY}"))
    elif dialect == "postgresql":
        conn.execute(text(f"DROP INDEX {_INBOX_MSG_KEY}"))
    else:
        conn.execute(text(f"ALTER TABLE inbox DROP INDEX {_INBOX_MSG_KEY}"))


# The tables version 8 rebuilds on SQLite (what every send or mark writes).
_REKEYED_ON_SQLITE: Final = (
    "messages",
    "inbox_state",
    "inbox",
    "inbox_delivered",
    "group_log",
    "inbox_runs",
)


def _upgrade_7_to_8(conn: Connection) -> None:
    """SQLite: each hot table keeps its rows in one B-tree instead of two.

    A table whose primary key is not a lone INTEGER column stores its rows
    by a hidden rowid and the key in a separate index, so every insert
    wrote two B-trees. Keys MPIM assigns (msg_id, inbox_state.uid) become
    INTEGER, which makes them the rowid; composite keys (the inbox, runs,
    log, held marks) make their tables WITHOUT ROWID, stored in key order.
    SQLite's instructions per direct message fell 12 % (callgrind of
    ``scripts/store_bench.py``). SQLite cannot change this in place, so
    each table is copied into its new shape. Other backends already
    cluster rows by key: nothing changes there.
    """
    if conn.dialect.name != "sqlite":
        return
    for name in _REKEYED_ON_SQLITE:
        table = metadata.tables[name]
        if not _sqlite_shaped(conn, table):
            _sqlite_rebuild(conn, table)


def _sqlite_shaped(conn: Connection, table: Table) -> bool:
    """Whether ``table`` is stored as this version creates it."""
    if table.dialect_options["sqlite"]["with_rowid"] is False:
        sql = conn.execute(
            text("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = :name"),
            {"name": table.name},
        ).scalar_one()
        return "WITHOUT ROWID" in str(sql).upper()
    # A rowid key has no index of its own (origin 'pk' in index_list).
    indexes = conn.exec_driver_sql(f"PRAGMA index_list({table.name})").all()
    return not any(row[3] == "pk" for row in indexes)


def _sqlite_rebuild(conn: Connection, table: Table) -> None:
    old = f"{table.name}_v7"
    ours = {index.name for index in table.indexes}
    # Indexes an operator added go with the old table: made again after.
    added = [
        str(sql)
        for name, sql in conn.execute(
            text("SELECT name, sql FROM sqlite_master WHERE type = 'index' AND tbl_name = :t"),
            {"t": table.name},
        )
        if sql is not None and name not in ours
    ]
    for name in ours:  # names are per database: the new table takes them
        conn.execute(text(f"DROP INDEX IF EXISTS {name}"))
    conn.execute(text(f"ALTER TABLE {table.name} RENAME TO {old}"))
    table.create(conn)
    columns = ", ".join(c.name for c in table.columns)
    conn.execute(text(f"INSERT INTO {table.name} ({columns}) SELECT {columns} FROM {old}"))
    conn.execute(text(f"DROP TABLE {old}"))
    for sql in added:
        conn.execute(text(sql))


def _upgrade_8_to_9(conn: Connection) -> None:
    """SQLite: HISTORY's index on messages (conv, msg_id) becomes the
    ``conv_index`` table, which takes new entries in batches.

    Written with each message, the index cost every message a random leaf
    page per commit (store/batched_index.py). Other backends keep the
    index: InnoDB already buffers changes to secondary indexes, and two
    message services appending at once would need a lock around the
    batches.
    """
    if conn.dialect.name != "sqlite":
        return
    conv_index.create(conn, checkfirst=True)
    conn.execute(text("DELETE FROM conv_index"))
    conn.execute(
        text(
            "INSERT INTO conv_index (conv, msg_id) "
            "SELECT conv, msg_id FROM messages ORDER BY conv, msg_id"
        )
    )
    conn.execute(text(f"DROP INDEX IF EXISTS {CONV_INDEX}"))


def _upgrade_9_to_10(conn: Connection) -> None:
    """SQLite: the inbox, too, takes a direct message's row in batches.

    Both indexes' pending entries now wait in one table, ``index_pending``.
    Version 9 as first committed kept the conversation's in
    ``conv_pending``: those move into ``conv_index`` here, and the table
    goes. Inbox rows stored before stay where they are.
    """
    if conn.dialect.name != "sqlite":
        return
    index_pending.create(conn, checkfirst=True)
    if "conv_pending" in inspect(conn).get_table_names():
        conn.execute(
            text(
                "INSERT INTO conv_index (conv, msg_id) "
                "SELECT conv, msg_id FROM conv_pending ORDER BY conv, msg_id"
            )
        )
        conn.execute(text("DROP TABLE conv_pending"))


def _raise_floors_over_held(conn: Connection) -> None:
    """Keep the rule that no floor stops just below a held seq (marks rely on it)."""
    rows = conn.execute(
        text(
            "SELECT d.uid, d.seq, s.pull_floor FROM inbox_delivered d "
            "JOIN inbox_state s ON s.uid = d.uid ORDER BY d.uid, d.seq"
        )
    ).all()
    raised: dict[int, int] = {}
    for uid, seq, floor in rows:
        top = raised.get(uid, floor)
        if seq == top + 1:
            raised[uid] = seq
    for uid, top in raised.items():
        rawsql.set_pull_floor(conn, uid, top)


# version -> step that upgrades a database at that version to version + 1
UPGRADES: dict[int, Callable[[Connection], None]] = {
    1: _upgrade_1_to_2,
    2: _upgrade_2_to_3,
    3: _upgrade_3_to_4,
    4: _upgrade_4_to_5,
    5: _upgrade_5_to_6,
    6: _upgrade_6_to_7,
    7: _upgrade_7_to_8,
    8: _upgrade_8_to_9,
    9: _upgrade_9_to_10,
}


class SchemaTooNew(Exception):
    """The database was written by a newer MPIM than this one."""


def migrate(conn: Connection) -> int:
    """Create or upgrade the schema inside ``conn``'s transaction; return the version."""
    existing = set(inspect(conn).get_table_names())
    if schema_version.name not in existing:
        metadata.create_all(conn)
        if conn.dialect.name == "sqlite":
            sqlite_metadata.create_all(conn)
        conn.execute(schema_version.insert().values(version=SCHEMA_VERSION))
        logger.info("created schema version %d", SCHEMA_VERSION)
        return SCHEMA_VERSION
    version = int(conn.execute(select(schema_version.c.version)).scalar_one())
    if version > SCHEMA_VERSION:
        raise SchemaTooNew(
            f"database schema version {version} is newer than this MPIM ({SCHEMA_VERSION})"
        )
    while version < SCHEMA_VERSION:
        UPGRADES[version](conn)
        version += 1
        conn.execute(schema_version.update().values(version=version))
        logger.info("upgraded schema to version %d", version)
    return version
