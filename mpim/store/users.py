"""Accounts, tokens and friendships in the Store."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Connection, and_, delete, insert, select, update

from mpim.store.database import Database
from mpim.store.schema import friends, inbox_state, tokens, users


@dataclass(frozen=True, slots=True)
class UserRow:
    uid: int
    username: str
    password_hash: str
    created_at_ms: int


@dataclass(frozen=True, slots=True)
class TokenRow:
    uid: int
    expires_at_ms: int
    revoked: bool


def username_key(username: str) -> str:
    """Usernames are unique ignoring ASCII case (they are ASCII by rule)."""
    return username.lower()


class UserStore:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def create_user(self, username: str, password_hash: str, now_ms: int) -> int | None:
        """The new uid, or None when the name is taken."""
        return await self._db.write(_create_user, username, password_hash, now_ms)

    async def get_by_name(self, username: str) -> UserRow | None:
        def job(conn: Connection) -> UserRow | None:
            row = conn.execute(
                select(
                    users.c.uid, users.c.username, users.c.password_hash, users.c.created_at_ms
                ).where(users.c.username_key == username_key(username))
            ).first()
            return UserRow(*row) if row else None

        return await self._db.read(job)

    async def get_users(self, uids: list[int]) -> dict[int, UserRow]:
        def job(conn: Connection) -> dict[int, UserRow]:
            rows = conn.execute(
                select(
                    users.c.uid, users.c.username, users.c.password_hash, users.c.created_at_ms
                ).where(users.c.uid.in_(uids))
            ).all()
            return {row.uid: UserRow(*row) for row in rows}

        return await self._db.read(job)

    async def update_password_hash(self, uid: int, password_hash: str) -> None:
        await self._db.write(_update_password_hash, uid, password_hash)

    async def add_token(self, token_hash: str, uid: int, now_ms: int, expires_at_ms: int) -> None:
        await self._db.write(_add_token, token_hash, uid, now_ms, expires_at_ms)

    async def get_token(self, token_hash: str) -> TokenRow | None:
        def job(conn: Connection) -> TokenRow | None:
            row = conn.execute(
                select(tokens.c.uid, tokens.c.expires_at_ms, tokens.c.revoked).where(
                    tokens.c.token_hash == token_hash
                )
            ).first()
            return TokenRow(row.uid, row.expires_at_ms, bool(row.revoked)) if row else None

        return await self._db.read(job)

    async def revoke_token(self, token_hash: str) -> None:
        await self._db.write(_revoke_token, token_hash)

    async def delete_expired_tokens(self, now_ms: int, limit: int) -> int:
        """Delete up to ``limit`` tokens that expired before ``now_ms``; how many went.

        The scan for expired rows runs on a reader thread, so only a
        primary-key delete of at most ``limit`` rows occupies the single
        writer and message commits never wait behind a table scan. The
        delete repeats the expiry test, so it can only remove expired rows
        whatever happened since the scan (expiry never moves).
        """

        def scan(conn: Connection) -> list[str]:
            rows = conn.execute(
                select(tokens.c.token_hash).where(tokens.c.expires_at_ms < now_ms).limit(limit)
            ).scalars()
            return [str(r) for r in rows]

        hashes = await self._db.read(scan)
        if not hashes:
            return 0
        return await self._db.write(_delete_expired_tokens, hashes, now_ms)

    async def add_friendship(self, uid: int, friend_uid: int, now_ms: int) -> bool:
        """Both directions; False when they were already friends."""
        return await self._db.write(_add_friendship, uid, friend_uid, now_ms)

    async def remove_friendship(self, uid: int, friend_uid: int) -> bool:
        """Both directions; False when they were not friends."""
        return await self._db.write(_remove_friendship, uid, friend_uid)

    async def friends_of(self, uid: int) -> list[int]:
        def job(conn: Connection) -> list[int]:
            rows = conn.execute(
                select(friends.c.friend_uid)
                .where(friends.c.uid == uid)
                .order_by(friends.c.friend_uid)
            ).scalars()
            return [int(r) for r in rows]

        return await self._db.read(job)


# -- write calls: module-level, so they can cross to the writer process -----


def _create_user(conn: Connection, username: str, password_hash: str, now_ms: int) -> int | None:
    key = username_key(username)
    taken = conn.execute(select(users.c.uid).where(users.c.username_key == key)).first()
    if taken is not None:
        return None
    result = conn.execute(
        insert(users).values(
            username=username,
            username_key=key,
            password_hash=password_hash,
            created_at_ms=now_ms,
        )
    )
    uid = int(result.inserted_primary_key[0])  # type: ignore[index]
    conn.execute(insert(inbox_state).values(uid=uid, last_seq=0, pull_floor=0))
    return uid


def _update_password_hash(conn: Connection, uid: int, password_hash: str) -> None:
    conn.execute(update(users).where(users.c.uid == uid).values(password_hash=password_hash))


def _add_token(
    conn: Connection, token_hash: str, uid: int, now_ms: int, expires_at_ms: int
) -> None:
    conn.execute(
        insert(tokens).values(
            token_hash=token_hash,
            uid=uid,
            created_at_ms=now_ms,
            expires_at_ms=expires_at_ms,
            revoked=False,
        )
    )


def _revoke_token(conn: Connection, token_hash: str) -> None:
    conn.execute(update(tokens).where(tokens.c.token_hash == token_hash).values(revoked=True))


def _delete_expired_tokens(conn: Connection, hashes: list[str], now_ms: int) -> int:
    result = conn.execute(
        delete(tokens).where(tokens.c.token_hash.in_(hashes), tokens.c.expires_at_ms < now_ms)
    )
    return int(result.rowcount)


def _add_friendship(conn: Connection, uid: int, friend_uid: int, now_ms: int) -> bool:
    exists = conn.execute(
        select(friends.c.uid).where(and_(friends.c.uid == uid, friends.c.friend_uid == friend_uid))
    ).first()
    if exists is not None:
        return False
    conn.execute(
        insert(friends),
        [
            {"uid": uid, "friend_uid": friend_uid, "created_at_ms": now_ms},
            {"uid": friend_uid, "friend_uid": uid, "created_at_ms": now_ms},
        ],
    )
    return True


def _remove_friendship(conn: Connection, uid: int, friend_uid: int) -> bool:
    result = conn.execute(
        delete(friends).where(
            ((friends.c.uid == uid) & (friends.c.friend_uid == friend_uid))
            | ((friends.c.uid == friend_uid) & (friends.c.friend_uid == uid))
        )
    )
    return bool(result.rowcount)
