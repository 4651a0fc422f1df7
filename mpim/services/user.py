"""User service: accounts, passwords, tokens, friends."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import random
import secrets
import time
from collections import OrderedDict

from mpim.cache import keys
from mpim.cache.base import Cache, cache_aside
from mpim.errors import ErrorCode, MpimError
from mpim.proto import common_pb2, user_pb2
from mpim.protocol.commands import parse_password, parse_username
from mpim.services.clock import now_ms
from mpim.services.passwords import PasswordHasher
from mpim.services.throttle import LoginThrottle
from mpim.store.users import UserRow, UserStore, username_key

logger = logging.getLogger(__name__)

_EMPTY = common_pb2.Empty()

# The cached value of a revoked token (``user:token:{hash}``). A live token is
# cached as ``b"<uid>:<expires_at_ms>"``.
TOKEN_REVOKED = b"revoked"
_TOKEN_KIND = keys.user_token("x").rpartition(":")[0]  # "user:token", as cache_aside counts


def hash_token(token: str) -> str:
    """Tokens are stored only as their sha256: a leaked table grants nothing."""
    return hashlib.sha256(token.encode()).hexdigest()


def _encode_token(uid: int, expires_at_ms: int) -> bytes:
    return b"%d:%d" % (uid, expires_at_ms)


def _decode_token(raw: bytes) -> tuple[int, int] | None:
    """(uid, expires_at_ms) of a cached live token; None for anything unreadable."""
    uid, sep, expires = raw.partition(b":")
    if not sep or not uid.isdigit() or not expires.isdigit():
        return None
    return int(uid), int(expires)


class RecentRevocations:
    """Token hashes this process revoked, remembered while a stale cache entry could live.

    A fill from a Store read that began before a revoke never replaces the
    revoke's tombstone (``Cache.add``), but it can land where the tombstone
    is missing: written while Redis was unreachable, the tombstone is dropped
    (only the delete is replayed). Such an entry lives at most the cache TTL,
    so remembering the revocation for twice that keeps every AUTH this
    process answers right even then.
    """

    def __init__(self, keep_seconds: float, max_entries: int = 100_000) -> None:
        self._keep = keep_seconds
        self._max = max_entries
        self._until: OrderedDict[str, float] = OrderedDict()

    def add(self, token_hash: str) -> None:
        now = time.monotonic()
        self._until[token_hash] = now + self._keep
        self._until.move_to_end(token_hash)
        # Insertion order is deadline order (one keep time), so expired ones lead.
        while self._until and (
            len(self._until) > self._max or next(iter(self._until.values())) <= now
        ):
            self._until.popitem(last=False)

    def __contains__(self, token_hash: str) -> bool:
        until = self._until.get(token_hash)
        return until is not None and until > time.monotonic()

    def __len__(self) -> int:
        return len(self._until)


class UserServiceImpl:
    """Implements mpim.proto.interfaces.UserService."""

    def __init__(
        self,
        store: UserStore,
        cache: Cache,
        hasher: PasswordHasher,
        throttle: LoginThrottle,
        *,
        token_ttl_seconds: int,
        cache_ttl_seconds: float,
        purge_interval_seconds: float = 600.0,
        purge_batch: int = 1000,
    ) -> None:
        self._store = store
        self._cache = cache
        self._hasher = hasher
        self._throttle = throttle
        self._token_ttl_ms = token_ttl_seconds * 1000
        self._cache_ttl = cache_ttl_seconds
        self._revoked = RecentRevocations(2 * cache_ttl_seconds)
        self._purge_interval = purge_interval_seconds
        self._purge_batch = purge_batch
        self._purger: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Start purging expired tokens in the background (the table only grows otherwise)."""
        if self._purger is None:
            self._purger = asyncio.create_task(self._purge_loop(), name="mpim-token-purge")

    async def stop(self) -> None:
        """Stop the purge before the Store stops; a batch in flight still commits."""
        task, self._purger = self._purger, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _purge_loop(self) -> None:
        # Jittered, so several user-service instances do not purge in step.
        await asyncio.sleep(self._purge_interval * random.uniform(0.1, 1.0))
        while True:
            try:
                purged = await self.purge_expired_tokens()
            except Exception as exc:  # the Store is the one to say; try again later
                logger.warning("token purge failed: %r", exc)
            else:
                if purged:
                    logger.info("purged %d expired tokens", purged)
            await asyncio.sleep(self._purge_interval)

    async def purge_expired_tokens(self) -> int:
        """Delete every expired token row, ``purge_batch`` at a time; how many went.

        Bounded batches keep each write short, so sends queued on the single
        writer interleave with a large purge instead of waiting for all of it.
        """
        total = 0
        while True:
            deleted = await self._store.delete_expired_tokens(now_ms(), self._purge_batch)
            total += deleted
            if deleted < self._purge_batch:
                return total

    async def Register(self, request: user_pb2.RegisterRequest) -> user_pb2.LoginReply:
        username = parse_username(request.username)
        password = parse_password(request.password)
        if await self._store.get_by_name(username) is not None:
            raise MpimError(ErrorCode.USER_EXISTS)
        password_hash = await self._hasher.hash(password)
        uid = await self._store.create_user(username, password_hash, now_ms())
        if uid is None:
            raise MpimError(ErrorCode.USER_EXISTS)
        logger.info("registered uid=%d", uid)
        return await self._issue_token(uid, username)

    async def Login(self, request: user_pb2.LoginRequest) -> user_pb2.LoginReply:
        key = username_key(request.username)
        if self._throttle.is_locked(key, time.monotonic()):
            raise MpimError(ErrorCode.TOO_MANY_ATTEMPTS)
        row = await self._store.get_by_name(request.username) if len(key) <= 32 else None
        ok = await self._hasher.verify(row.password_hash if row else None, request.password)
        if not ok or row is None:
            self._throttle.failed(key, time.monotonic())
            raise MpimError(ErrorCode.AUTH_FAILED)
        self._throttle.succeeded(key)
        if self._hasher.needs_rehash(row.password_hash):
            await self._store.update_password_hash(
                row.uid, await self._hasher.hash(request.password)
            )
        return await self._issue_token(row.uid, row.username)

    async def _issue_token(self, uid: int, username: str) -> user_pb2.LoginReply:
        token = secrets.token_urlsafe(32)
        token_hash = hash_token(token)
        now = now_ms()
        expires_at_ms = now + self._token_ttl_ms
        await self._store.add_token(token_hash, uid, now, expires_at_ms)
        # Nobody has the token yet, so nothing can revoke it before this write:
        # the AUTH a reconnecting client makes next is served from the cache.
        await self._cache_token(keys.user_token(token_hash), uid, expires_at_ms)
        return user_pb2.LoginReply(uid=uid, token=token, username=username)

    async def _cache_token(
        self, key: str, uid: int, expires_at_ms: int, *, fill: bool = False
    ) -> None:
        """Cache a live token for no longer than the cache TTL or its own remaining life.

        A ``fill`` (from a Store read) only goes where the key holds nothing, so
        a LOGOUT's tombstone written meanwhile, by any instance, stays.
        """
        ttl = min(self._cache_ttl, (expires_at_ms - now_ms()) / 1000)
        if ttl <= 0:
            return
        value = _encode_token(uid, expires_at_ms)
        if fill:
            await self._cache.add(key, value, ttl)
        else:
            await self._cache.set(key, value, ttl)

    async def _token_owner(self, token_hash: str) -> int | None:
        """The uid of a live token; None if unknown, revoked or expired.

        Cache-aside on ``user:token:{hash}``, since AUTH is what every
        reconnecting client sends and the Store read was its whole cost.
        """
        if token_hash in self._revoked:
            return None
        key = keys.user_token(token_hash)
        raw = await self._cache.get(key)
        cached = _decode_token(raw) if raw is not None else None
        self._cache.metrics.lookup(_TOKEN_KIND, hit=raw == TOKEN_REVOKED or cached is not None)
        if raw == TOKEN_REVOKED:
            return None
        if cached is not None:
            uid, expires_at_ms = cached
            return uid if expires_at_ms > now_ms() else None
        row = await self._store.get_token(token_hash)
        if row is None or row.revoked or row.expires_at_ms <= now_ms():
            return None
        # A LOGOUT may have committed while the Store was read: its tombstone
        # wins and is not overwritten with the stale "valid".
        if await self._cache.get(key) == TOKEN_REVOKED or token_hash in self._revoked:
            return None
        await self._cache_token(key, row.uid, row.expires_at_ms, fill=True)
        return row.uid

    async def Authenticate(
        self, request: user_pb2.AuthenticateRequest
    ) -> user_pb2.AuthenticateReply:
        uid = await self._token_owner(hash_token(request.token))
        if uid is None:
            raise MpimError(ErrorCode.AUTH_FAILED)
        user = await self._user(uid)
        if user is None:
            raise MpimError(ErrorCode.AUTH_FAILED)
        return user_pb2.AuthenticateReply(uid=user.uid, username=user.username)

    async def Logout(self, request: user_pb2.LogoutRequest) -> common_pb2.Empty:
        """Revoke in the Store first (the truth), then in this process and the cache."""
        token_hash = hash_token(request.token)
        await self._store.revoke_token(token_hash)
        self._revoked.add(token_hash)
        key = keys.user_token(token_hash)
        # Delete first: RedisCache replays a delete lost in an outage before it
        # serves reads again. Then a tombstone, which other instances check
        # before they cache a token they read from the Store.
        await self._cache.delete(key)
        await self._cache.set(key, TOKEN_REVOKED, self._cache_ttl)
        return _EMPTY

    async def GetUsers(self, request: user_pb2.GetUsersRequest) -> user_pb2.GetUsersReply:
        reply = user_pb2.GetUsersReply()
        for uid in request.uids:
            info = await self._user(uid)
            if info is not None:
                reply.users.append(info)
        return reply

    async def _user(self, uid: int) -> user_pb2.UserInfo | None:
        async def load() -> user_pb2.UserInfo | None:
            rows = await self._store.get_users([uid])
            row: UserRow | None = rows.get(uid)
            if row is None:
                return None
            return user_pb2.UserInfo(
                uid=row.uid, username=row.username, created_at_ms=row.created_at_ms
            )

        return await cache_aside(
            self._cache,
            keys.user_by_uid(uid),
            self._cache_ttl,
            load,
            user_pb2.UserInfo.SerializeToString,
            user_pb2.UserInfo.FromString,
        )

    async def AddFriend(self, request: user_pb2.FriendRequest) -> common_pb2.Empty:
        if request.uid == request.friend_uid:
            raise MpimError(ErrorCode.CANNOT_FRIEND_SELF)
        if await self._user(request.friend_uid) is None:
            raise MpimError(ErrorCode.NO_SUCH_USER)
        added = await self._store.add_friendship(request.uid, request.friend_uid, now_ms())
        await self._cache.delete(
            keys.user_friends(request.uid), keys.user_friends(request.friend_uid)
        )
        if not added:
            raise MpimError(ErrorCode.ALREADY_FRIENDS)
        return _EMPTY

    async def RemoveFriend(self, request: user_pb2.FriendRequest) -> common_pb2.Empty:
        removed = await self._store.remove_friendship(request.uid, request.friend_uid)
        await self._cache.delete(
            keys.user_friends(request.uid), keys.user_friends(request.friend_uid)
        )
        if not removed:
            raise MpimError(ErrorCode.NOT_FRIENDS)
        return _EMPTY

    async def GetFriends(self, request: user_pb2.GetFriendsRequest) -> user_pb2.GetFriendsReply:
        async def load() -> user_pb2.GetFriendsReply:
            return user_pb2.GetFriendsReply(friend_uids=await self._store.friends_of(request.uid))

        reply = await cache_aside(
            self._cache,
            keys.user_friends(request.uid),
            self._cache_ttl,
            load,
            user_pb2.GetFriendsReply.SerializeToString,
            user_pb2.GetFriendsReply.FromString,
        )
        assert reply is not None
        return reply
