"""Group service: groups, membership and the member lists fan-out reads."""

from __future__ import annotations

from mpim.cache import keys
from mpim.cache.base import Cache, cache_aside
from mpim.errors import ErrorCode, MpimError
from mpim.proto import common_pb2, group_pb2
from mpim.protocol.commands import GROUP_DESCRIPTION_MAX_CHARS, GROUP_NAME_MAX_CHARS
from mpim.services.clock import now_ms
from mpim.store.groups import GroupStore, MembershipChange

_EMPTY = common_pb2.Empty()


class GroupServiceImpl:
    """Implements mpim.proto.interfaces.GroupService."""

    def __init__(self, store: GroupStore, cache: Cache, *, cache_ttl_seconds: float) -> None:
        self._store = store
        self._cache = cache
        self._ttl = cache_ttl_seconds

    async def CreateGroup(
        self, request: group_pb2.CreateGroupRequest
    ) -> group_pb2.CreateGroupReply:
        name = request.name
        if not name or len(name) > GROUP_NAME_MAX_CHARS or not name.isprintable() or " " in name:
            raise MpimError(ErrorCode.BAD_GROUP_NAME)
        if len(request.description) > GROUP_DESCRIPTION_MAX_CHARS:
            raise MpimError(ErrorCode.DESCRIPTION_TOO_LONG)
        group_id = await self._store.create_group(
            request.owner_uid, name, request.description, now_ms()
        )
        await self._cache.delete(keys.user_groups(request.owner_uid))
        return group_pb2.CreateGroupReply(group_id=group_id)

    async def JoinGroup(self, request: group_pb2.MembershipRequest) -> common_pb2.Empty:
        change = await self._store.add_member(request.group_id, request.uid, now_ms())
        await self._invalidate(request.group_id, request.uid)
        if change is MembershipChange.NO_SUCH_GROUP:
            raise MpimError(ErrorCode.NO_SUCH_GROUP)
        if change is MembershipChange.UNCHANGED:
            raise MpimError(ErrorCode.ALREADY_MEMBER)
        return _EMPTY

    async def LeaveGroup(self, request: group_pb2.MembershipRequest) -> common_pb2.Empty:
        change = await self._store.remove_member(request.group_id, request.uid)
        await self._invalidate(request.group_id, request.uid)
        if change is MembershipChange.NO_SUCH_GROUP:
            raise MpimError(ErrorCode.NO_SUCH_GROUP)
        if change is MembershipChange.UNCHANGED:
            raise MpimError(ErrorCode.NOT_MEMBER)
        return _EMPTY

    async def _invalidate(self, group_id: int, uid: int) -> None:
        await self._cache.delete(keys.group_members(group_id), keys.user_groups(uid))

    async def ListMembers(self, request: group_pb2.MembershipRequest) -> group_pb2.MembersReply:
        reply = await self.GetMembers(group_pb2.GroupRef(group_id=request.group_id))
        if request.uid not in reply.member_uids:
            raise MpimError(ErrorCode.NOT_MEMBER)
        return reply

    async def GetMembers(self, request: group_pb2.GroupRef) -> group_pb2.MembersReply:
        async def load() -> group_pb2.MembersReply | None:
            members = await self._store.members(request.group_id)
            return None if members is None else group_pb2.MembersReply(member_uids=members)

        reply = await cache_aside(
            self._cache,
            keys.group_members(request.group_id),
            self._ttl,
            load,
            group_pb2.MembersReply.SerializeToString,
            group_pb2.MembersReply.FromString,
        )
        if reply is None:
            raise MpimError(ErrorCode.NO_SUCH_GROUP)
        return reply

    async def GetUserGroups(
        self, request: group_pb2.UserGroupsRequest
    ) -> group_pb2.UserGroupsReply:
        async def load() -> group_pb2.UserGroupsReply:
            return group_pb2.UserGroupsReply(group_ids=await self._store.groups_of(request.uid))

        reply = await cache_aside(
            self._cache,
            keys.user_groups(request.uid),
            self._ttl,
            load,
            group_pb2.UserGroupsReply.SerializeToString,
            group_pb2.UserGroupsReply.FromString,
        )
        assert reply is not None
        return reply

    async def GetGroupInfo(self, request: group_pb2.GroupRef) -> group_pb2.GroupInfo:
        async def load() -> group_pb2.GroupInfo | None:
            row = await self._store.info(request.group_id)
            if row is None:
                return None
            return group_pb2.GroupInfo(
                group_id=row.group_id,
                name=row.name,
                description=row.description,
                owner_uid=row.owner_uid,
                created_at_ms=row.created_at_ms,
            )

        info = await cache_aside(
            self._cache,
            keys.group_info(request.group_id),
            self._ttl,
            load,
            group_pb2.GroupInfo.SerializeToString,
            group_pb2.GroupInfo.FromString,
        )
        if info is None:
            raise MpimError(ErrorCode.NO_SUCH_GROUP)
        return info
