"""gRPC clients generated from the .proto files.

Do not edit: run scripts/gen_proto.py. Each class implements the matching
interface in interfaces.py, so callers cannot tell it from a local service."""

from __future__ import annotations

from mpim.proto import common_pb2
from mpim.proto import group_pb2
from mpim.proto import health_pb2
from mpim.proto import message_pb2
from mpim.proto import presence_pb2
from mpim.proto import user_pb2
from mpim.rpc.caller import RpcCaller


class GroupServiceClient(RpcCaller):
    """GroupService over gRPC; implements interfaces.GroupService."""

    IDEMPOTENT = frozenset({"GetGroupInfo", "GetMembers", "GetUserGroups", "ListMembers"})

    async def CreateGroup(self, request: group_pb2.CreateGroupRequest) -> group_pb2.CreateGroupReply:
        return await self._invoke("CreateGroup", "/mpim.v1.GroupService/CreateGroup", request, group_pb2.CreateGroupReply)

    async def JoinGroup(self, request: group_pb2.MembershipRequest) -> common_pb2.Empty:
        return await self._invoke("JoinGroup", "/mpim.v1.GroupService/JoinGroup", request, common_pb2.Empty)

    async def LeaveGroup(self, request: group_pb2.MembershipRequest) -> common_pb2.Empty:
        return await self._invoke("LeaveGroup", "/mpim.v1.GroupService/LeaveGroup", request, common_pb2.Empty)

    async def ListMembers(self, request: group_pb2.MembershipRequest) -> group_pb2.MembersReply:
        return await self._invoke("ListMembers", "/mpim.v1.GroupService/ListMembers", request, group_pb2.MembersReply)

    async def GetMembers(self, request: group_pb2.GroupRef) -> group_pb2.MembersReply:
        return await self._invoke("GetMembers", "/mpim.v1.GroupService/GetMembers", request, group_pb2.MembersReply)

    async def GetUserGroups(self, request: group_pb2.UserGroupsRequest) -> group_pb2.UserGroupsReply:
        return await self._invoke("GetUserGroups", "/mpim.v1.GroupService/GetUserGroups", request, group_pb2.UserGroupsReply)

    async def GetGroupInfo(self, request: group_pb2.GroupRef) -> group_pb2.GroupInfo:
        return await self._invoke("GetGroupInfo", "/mpim.v1.GroupService/GetGroupInfo", request, group_pb2.GroupInfo)


class HealthServiceClient(RpcCaller):
    """HealthService over gRPC; implements interfaces.HealthService."""

    IDEMPOTENT = frozenset({"Ping"})

    async def Ping(self, request: health_pb2.PingRequest) -> health_pb2.PingReply:
        return await self._invoke("Ping", "/mpim.v1.HealthService/Ping", request, health_pb2.PingReply)


class MessageServiceClient(RpcCaller):
    """MessageService over gRPC; implements interfaces.MessageService."""

    IDEMPOTENT = frozenset({"History", "Sync"})

    async def Send(self, request: message_pb2.SendRequest) -> message_pb2.SendReply:
        return await self._invoke("Send", "/mpim.v1.MessageService/Send", request, message_pb2.SendReply)

    async def SendGroup(self, request: message_pb2.SendGroupRequest) -> message_pb2.SendReply:
        return await self._invoke("SendGroup", "/mpim.v1.MessageService/SendGroup", request, message_pb2.SendReply)

    async def SendBatch(self, request: message_pb2.SendBatchRequest) -> message_pb2.SendBatchReply:
        return await self._invoke("SendBatch", "/mpim.v1.MessageService/SendBatch", request, message_pb2.SendBatchReply)

    async def Pull(self, request: message_pb2.PullRequest) -> message_pb2.MessageBatch:
        return await self._invoke("Pull", "/mpim.v1.MessageService/Pull", request, message_pb2.MessageBatch)

    async def Sync(self, request: message_pb2.SyncRequest) -> message_pb2.SyncReply:
        return await self._invoke("Sync", "/mpim.v1.MessageService/Sync", request, message_pb2.SyncReply)

    async def History(self, request: message_pb2.HistoryRequest) -> message_pb2.MessageBatch:
        return await self._invoke("History", "/mpim.v1.MessageService/History", request, message_pb2.MessageBatch)

    async def MarkDelivered(self, request: message_pb2.MarkDeliveredRequest) -> common_pb2.Empty:
        return await self._invoke("MarkDelivered", "/mpim.v1.MessageService/MarkDelivered", request, common_pb2.Empty)


class PresenceServiceClient(RpcCaller):
    """PresenceService over gRPC; implements interfaces.PresenceService."""

    IDEMPOTENT = frozenset({"GetRoutes"})

    async def Connect(self, request: presence_pb2.ConnectionRef) -> common_pb2.Empty:
        return await self._invoke("Connect", "/mpim.v1.PresenceService/Connect", request, common_pb2.Empty)

    async def Disconnect(self, request: presence_pb2.ConnectionRef) -> common_pb2.Empty:
        return await self._invoke("Disconnect", "/mpim.v1.PresenceService/Disconnect", request, common_pb2.Empty)

    async def GetRoutes(self, request: presence_pb2.GetRoutesRequest) -> presence_pb2.GetRoutesReply:
        return await self._invoke("GetRoutes", "/mpim.v1.PresenceService/GetRoutes", request, presence_pb2.GetRoutesReply)

    async def DropGateway(self, request: presence_pb2.DropGatewayRequest) -> common_pb2.Empty:
        return await self._invoke("DropGateway", "/mpim.v1.PresenceService/DropGateway", request, common_pb2.Empty)


class UserServiceClient(RpcCaller):
    """UserService over gRPC; implements interfaces.UserService."""

    IDEMPOTENT = frozenset({"Authenticate", "GetFriends", "GetUsers"})

    async def Register(self, request: user_pb2.RegisterRequest) -> user_pb2.LoginReply:
        return await self._invoke("Register", "/mpim.v1.UserService/Register", request, user_pb2.LoginReply)

    async def Login(self, request: user_pb2.LoginRequest) -> user_pb2.LoginReply:
        return await self._invoke("Login", "/mpim.v1.UserService/Login", request, user_pb2.LoginReply)

    async def Authenticate(self, request: user_pb2.AuthenticateRequest) -> user_pb2.AuthenticateReply:
        return await self._invoke("Authenticate", "/mpim.v1.UserService/Authenticate", request, user_pb2.AuthenticateReply)

    async def Logout(self, request: user_pb2.LogoutRequest) -> common_pb2.Empty:
        return await self._invoke("Logout", "/mpim.v1.UserService/Logout", request, common_pb2.Empty)

    async def GetUsers(self, request: user_pb2.GetUsersRequest) -> user_pb2.GetUsersReply:
        return await self._invoke("GetUsers", "/mpim.v1.UserService/GetUsers", request, user_pb2.GetUsersReply)

    async def AddFriend(self, request: user_pb2.FriendRequest) -> common_pb2.Empty:
        return await self._invoke("AddFriend", "/mpim.v1.UserService/AddFriend", request, common_pb2.Empty)

    async def RemoveFriend(self, request: user_pb2.FriendRequest) -> common_pb2.Empty:
        return await self._invoke("RemoveFriend", "/mpim.v1.UserService/RemoveFriend", request, common_pb2.Empty)

    async def GetFriends(self, request: user_pb2.GetFriendsRequest) -> user_pb2.GetFriendsReply:
        return await self._invoke("GetFriends", "/mpim.v1.UserService/GetFriends", request, user_pb2.GetFriendsReply)

__all__ = ["GroupServiceClient", "HealthServiceClient", "MessageServiceClient", "PresenceServiceClient", "UserServiceClient"]
