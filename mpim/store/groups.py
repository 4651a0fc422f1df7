"""Groups and memberships in the Store."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from sqlalchemy import Connection, delete, insert, select

from mpim.store.database import Database
from mpim.store.schema import chat_groups, group_members


@dataclass(frozen=True, slots=True)
class GroupRow:
    group_id: int
    name: str
    description: str
    owner_uid: int
    created_at_ms: int


class MembershipChange(Enum):
    DONE = "done"
    NO_SUCH_GROUP = "no such group"
    UNCHANGED = "unchanged"  # already a member (join) / not a member (leave)


class GroupStore:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def create_group(self, owner_uid: int, name: str, description: str, now_ms: int) -> int:
        return await self._db.write(_create_group, owner_uid, name, description, now_ms)

    async def add_member(self, group_id: int, uid: int, now_ms: int) -> MembershipChange:
        return await self._db.write(_add_member, group_id, uid, now_ms)

    async def remove_member(self, group_id: int, uid: int) -> MembershipChange:
        return await self._db.write(_remove_member, group_id, uid)

    async def members(self, group_id: int) -> list[int] | None:
        """Ascending member uids, or None when the group does not exist."""

        def job(conn: Connection) -> list[int] | None:
            if not _group_exists(conn, group_id):
                return None
            rows = conn.execute(
                select(group_members.c.uid)
                .where(group_members.c.group_id == group_id)
                .order_by(group_members.c.uid)
            ).scalars()
            return [int(r) for r in rows]

        return await self._db.read(job)

    async def groups_of(self, uid: int) -> list[int]:
        def job(conn: Connection) -> list[int]:
            rows = conn.execute(
                select(group_members.c.group_id)
                .where(group_members.c.uid == uid)
                .order_by(group_members.c.group_id)
            ).scalars()
            return [int(r) for r in rows]

        return await self._db.read(job)

    async def info(self, group_id: int) -> GroupRow | None:
        def job(conn: Connection) -> GroupRow | None:
            row = conn.execute(
                select(
                    chat_groups.c.group_id,
                    chat_groups.c.name,
                    chat_groups.c.description,
                    chat_groups.c.owner_uid,
                    chat_groups.c.created_at_ms,
                ).where(chat_groups.c.group_id == group_id)
            ).first()
            return GroupRow(*row) if row else None

        return await self._db.read(job)


def _group_exists(conn: Connection, group_id: int) -> bool:
    found = conn.execute(
        select(chat_groups.c.group_id).where(chat_groups.c.group_id == group_id)
    ).first()
    return found is not None


def _is_member(conn: Connection, group_id: int, uid: int) -> bool:
    found = conn.execute(
        select(group_members.c.uid).where(
            (group_members.c.group_id == group_id) & (group_members.c.uid == uid)
        )
    ).first()
    return found is not None


# -- write calls: module-level, so they can cross to the writer process -----


def _create_group(
    conn: Connection, owner_uid: int, name: str, description: str, now_ms: int
) -> int:
    result = conn.execute(
        insert(chat_groups).values(
            name=name, description=description, owner_uid=owner_uid, created_at_ms=now_ms
        )
    )
    group_id = int(result.inserted_primary_key[0])  # type: ignore[index]
    conn.execute(
        insert(group_members).values(group_id=group_id, uid=owner_uid, joined_at_ms=now_ms)
    )
    return group_id


def _add_member(conn: Connection, group_id: int, uid: int, now_ms: int) -> MembershipChange:
    if not _group_exists(conn, group_id):
        return MembershipChange.NO_SUCH_GROUP
    if _is_member(conn, group_id, uid):
        return MembershipChange.UNCHANGED
    conn.execute(insert(group_members).values(group_id=group_id, uid=uid, joined_at_ms=now_ms))
    return MembershipChange.DONE


def _remove_member(conn: Connection, group_id: int, uid: int) -> MembershipChange:
    if not _group_exists(conn, group_id):
        return MembershipChange.NO_SUCH_GROUP
    result = conn.execute(
        delete(group_members).where(
            (group_members.c.group_id == group_id) & (group_members.c.uid == uid)
        )
    )
    return MembershipChange.DONE if result.rowcount else MembershipChange.UNCHANGED
