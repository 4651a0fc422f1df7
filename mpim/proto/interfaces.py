"""Async service interfaces generated from the .proto files.

Do not edit: run scripts/gen_proto.py. Embedded services implement these
directly; gRPC clients implement them over the network."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from mpim.proto import common_pb2
from mpim.proto import group_pb2
from mpim.proto import health_pb2
from mpim.proto import message_pb2
from mpim.proto import presence_pb2
from mpim.proto import user_pb2


@runtime_checkable
class GroupService(Protocol):
    """The GroupService contract from mpim/proto/group.proto."""

    async def CreateGroup(self, request: group_pb2.CreateGroupRequest) -> group_pb2.CreateGroupReply: ...

    async def JoinGroup(self, request: group_pb2.MembershipRequest) -> common_pb2.Empty: ...

    async def LeaveGroup(self, request: group_pb2.MembershipRequest) -> common_pb2.Empty: ...

    async def ListMembers(self, request: group_pb2.MembershipRequest) -> group_pb2.MembersReply: ...

    async def GetMembers(self, request: group_pb2.GroupRef) -> group_pb2.MembersReply: ...

    async def GetUserGroups(self, request: group_pb2.UserGroupsRequest) -> group_pb2.UserGroupsReply: ...

    async def GetGroupInfo(self, request: group_pb2.GroupRef) -> group_pb2.GroupInfo: ...


@runtime_checkable
class HealthService(Protocol):
    """The HealthService contract from mpim/proto/health.proto."""

    async def Ping(self, request: health_pb2.PingRequest) -> health_pb2.PingReply: ...


@runtime_checkable
class MessageService(Protocol):
    """The MessageService contract from mpim/proto/message.proto."""

    async def Send(self, request: message_pb2.SendRequest) -> message_pb2.SendReply: ...

    async def SendGroup(self, request: message_pb2.SendGroupRequest) -> message_pb2.SendReply: ...

    async def SendBatch(self, request: message_pb2.SendBatchRequest) -> message_pb2.SendBatchReply: ...

    async def Pull(self, request: message_pb2.PullRequest) -> message_pb2.MessageBatch: ...

    async def Sync(self, request: message_pb2.SyncRequest) -> message_pb2.SyncReply: ...

    async def History(self, request: message_pb2.HistoryRequest) -> message_pb2.MessageBatch: ...

    async def MarkDelivered(self, request: message_pb2.MarkDeliveredRequest) -> common_pb2.Empty: ...


@runtime_checkable
class PresenceService(Protocol):
    """The PresenceService contract from mpim/proto/presence.proto."""

    async def Connect(self, request: presence_pb2.ConnectionRef) -> common_pb2.Empty: ...

    async def Disconnect(self, request: presence_pb2.ConnectionRef) -> common_pb2.Empty: ...

    async def GetRoutes(self, request: presence_pb2.GetRoutesRequest) -> presence_pb2.GetRoutesReply: ...

    async def DropGateway(self, request: presence_pb2.DropGatewayRequest) -> common_pb2.Empty: ...


@runtime_checkable
class UserService(Protocol):
    """The UserService contract from mpim/proto/user.proto."""

    async def Register(self, request: user_pb2.RegisterRequest) -> user_pb2.LoginReply: ...

    async def Login(self, request: user_pb2.LoginRequest) -> user_pb2.LoginReply: ...

    async def Authenticate(self, request: user_pb2.AuthenticateRequest) -> user_pb2.AuthenticateReply: ...

    async def Logout(self, request: user_pb2.LogoutRequest) -> common_pb2.Empty: ...

    async def GetUsers(self, request: user_pb2.GetUsersRequest) -> user_pb2.GetUsersReply: ...

    async def AddFriend(self, request: user_pb2.FriendRequest) -> common_pb2.Empty: ...

    async def RemoveFriend(self, request: user_pb2.FriendRequest) -> common_pb2.Empty: ...

    async def GetFriends(self, request: user_pb2.GetFriendsRequest) -> user_pb2.GetFriendsReply: ...

__all__ = ["GroupService", "HealthService", "MessageService", "PresenceService", "UserService"]
