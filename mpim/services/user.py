"""User service: accounts, passwords, tokens, friends."""

from __future__ import annotations

import hashlib
import logging
import secrets
import time

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


def hash_token(token: str) -> str:
    """Tokens are stored only as their sha256: a leaked table grants nothing."""
    return hashlib.sha256(token.encode()).hexdigest()


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
    ) -> None:
        self._store = store
        self._cache = cache
        self._hasher = hasher
        self._throttle = throttle
        self._token_ttl_ms = token_ttl_seconds * 1000
        self._cache_ttl = cache_ttl_seconds

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
        now = now_ms()
        await self._store.add_token(hash_token(token), uid, now, now + self._token_ttl_ms)
        return user_pb2.LoginReply(uid=uid, token=token, username=username)

    async def Authenticate(
        self, request: user_pb2.AuthenticateRequest
    ) -> user_pb2.AuthenticateReply:
        row = await self._store.get_token(hash_token(request.token))
        if row is None or row.revoked or row.expires_at_ms <= now_ms():
            raise MpimError(ErrorCode.AUTH_FAILED)
        user = await self._user(row.uid)
        if user is None:
            raise MpimError(ErrorCode.AUTH_FAILED)
        return user_pb2.AuthenticateReply(uid=user.uid, username=user.username)

    async def Logout(self, request: user_pb2.LogoutRequest) -> common_pb2.Empty:
        await self._store.revoke_token(hash_token(request.token))
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
