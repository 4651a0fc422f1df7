"""One handler per client command: only that command's own logic.

Parsing, the login check, rate limiting and error replies happen once, in
the dispatcher. A handler returns its final reply line; multi-line replies
write their message lines first, inside ``session.holding_pushes()``.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any, TypeVar

from mpim.config import GatewaySettings
from mpim.errors import ErrorCode, MpimError
from mpim.gateway.hub import SessionHub
from mpim.gateway.session import Session
from mpim.metrics.families import GatewayMetrics
from mpim.proto import common_pb2, group_pb2, message_pb2, presence_pb2, user_pb2
from mpim.protocol import commands as c
from mpim.protocol.messages import format_message
from mpim.services.bundle import Services

logger = logging.getLogger(__name__)


@dataclass(slots=True)
class GatewayContext:
    """What handlers may use: the services, this gateway's sessions, its settings."""

    services: Services
    hub: SessionHub
    settings: GatewaySettings
    gateway_id: str
    metrics: GatewayMetrics
    # Before a PULL: the marks of what every gateway has written, stored
    # (Gateway.settle_marks).
    settle_marks: Callable[[], Awaitable[None]]


C = TypeVar("C", bound=c.Command)
Handler = Callable[[GatewayContext, Session, Any, str | None], Awaitable[str | None]]
HANDLERS: dict[type[c.Command], Handler] = {}


TypedHandler = Callable[[GatewayContext, Session, C, str | None], Awaitable[str | None]]


def handles(command: type[C]) -> Callable[[TypedHandler[C]], TypedHandler[C]]:
    """Register the handler of ``command``; it returns its reply line, or None
    when it wrote a multi-line reply itself."""

    def register(fn: TypedHandler[C]) -> TypedHandler[C]:
        HANDLERS[command] = fn
        return fn

    return register


def _uid(session: Session) -> int:
    assert session.uid is not None, "dispatcher checks login first"
    return session.uid


# -- session lifecycle --------------------------------------------------------


async def attach(ctx: GatewayContext, session: Session, uid: int, token: str) -> None:
    """Make ``session`` logged in as ``uid`` (replacing any earlier login)."""
    if session.uid == uid:
        # Same user again (e.g. AUTH with a fresh token): the route stands,
        # so no Disconnect/Connect round trip to presence.
        session.token = token
        return
    await detach(ctx, session)
    session.uid = uid
    session.token = token
    ctx.hub.add(uid, session)
    await ctx.services.presence.Connect(_route(ctx, session, uid))


async def detach(ctx: GatewayContext, session: Session) -> None:
    uid = session.uid
    if uid is None:
        return
    session.uid = None
    session.token = None
    ctx.hub.remove(uid, session)
    await ctx.services.presence.Disconnect(_route(ctx, session, uid))


def _route(ctx: GatewayContext, session: Session, uid: int) -> presence_pb2.ConnectionRef:
    return presence_pb2.ConnectionRef(uid=uid, gateway_id=ctx.gateway_id, conn_id=session.conn_id)


@handles(c.Register)
async def register(ctx: GatewayContext, s: Session, cmd: c.Register, cid: str | None) -> str:
    reply = await ctx.services.user.Register(
        user_pb2.RegisterRequest(username=cmd.username, password=cmd.password)
    )
    await attach(ctx, s, reply.uid, reply.token)
    return f"+OK uid={reply.uid} token={reply.token}"


@handles(c.Login)
async def login(ctx: GatewayContext, s: Session, cmd: c.Login, cid: str | None) -> str:
    reply = await ctx.services.user.Login(
        user_pb2.LoginRequest(username=cmd.username, password=cmd.password)
    )
    await attach(ctx, s, reply.uid, reply.token)
    return f"+OK uid={reply.uid} token={reply.token}"


@handles(c.Auth)
async def auth(ctx: GatewayContext, s: Session, cmd: c.Auth, cid: str | None) -> str:
    reply = await ctx.services.user.Authenticate(user_pb2.AuthenticateRequest(token=cmd.token))
    await attach(ctx, s, reply.uid, cmd.token)
    return f"+OK uid={reply.uid}"


@handles(c.Logout)
async def logout(ctx: GatewayContext, s: Session, cmd: c.Logout, cid: str | None) -> str:
    if s.token is not None:
        await ctx.services.user.Logout(user_pb2.LogoutRequest(token=s.token))
    await detach(ctx, s)
    return "+OK logout success"


# -- messages -----------------------------------------------------------------


@handles(c.Send)
async def send(ctx: GatewayContext, s: Session, cmd: c.Send, cid: str | None) -> str:
    reply = await ctx.services.message.Send(
        message_pb2.SendRequest(
            from_uid=_uid(s), to_uid=cmd.to_uid, text=cmd.text, client_msg_id=cid or ""
        )
    )
    return f"+OK msg_id={reply.msg_id}"


@handles(c.SendGroup)
async def send_group(ctx: GatewayContext, s: Session, cmd: c.SendGroup, cid: str | None) -> str:
    reply = await ctx.services.message.SendGroup(
        message_pb2.SendGroupRequest(
            from_uid=_uid(s), group_id=cmd.group_id, text=cmd.text, client_msg_id=cid or ""
        )
    )
    return f"+OK group_msg_id={reply.msg_id}"


def _lines(messages: Iterable[common_pb2.Message]) -> list[tuple[int, str]]:
    return [(m.seq, format_message(m, m.seq)) for m in messages]


@handles(c.Pull)
async def pull(ctx: GatewayContext, s: Session, cmd: c.Pull, cid: str | None) -> str | None:
    with s.holding_pushes():
        # Every gateway's pushes recorded first, so PULL never repeats them;
        # before each later page, this gateway's pushes since.
        await ctx.settle_marks()
        while True:
            batch = await ctx.services.message.Pull(
                message_pb2.PullRequest(uid=_uid(s), limit=ctx.settings.pull_page_size)
            )
            s.write_message_lines(_lines(batch.messages))
            ctx.metrics.pulled.inc(len(batch.messages))
            if not batch.more:
                break
            # The next page once the client has read this one: a backlog is
            # taken from the inbox only as fast as the client reads it. A
            # closed session is not waiting to write: this returns at once.
            await s.writable()
            if s.closed:
                break
            await ctx.hub.flush_marks()
        s.write_line("+OK pull_done")
    return None


@handles(c.Sync)
async def sync(ctx: GatewayContext, s: Session, cmd: c.Sync, cid: str | None) -> str | None:
    reply = await ctx.services.message.Sync(
        message_pb2.SyncRequest(
            uid=_uid(s), after_seq=cmd.after_seq, limit=ctx.settings.sync_page_size
        )
    )
    with s.holding_pushes():
        s.write_message_lines(_lines(reply.messages))
        ctx.metrics.pulled.inc(len(reply.messages))
        more = " more=1" if reply.more else ""
        s.write_line(f"+OK sync_done seq={reply.last_seq}{more}")
    return None


@handles(c.History)
async def history(ctx: GatewayContext, s: Session, cmd: c.History, cid: str | None) -> str | None:
    request = message_pb2.HistoryRequest(uid=_uid(s), limit=cmd.limit, before_id=cmd.before_id or 0)
    if cmd.group_id is not None:
        request.group_id = cmd.group_id
    else:
        assert cmd.peer_uid is not None
        request.peer_uid = cmd.peer_uid
    reply = await ctx.services.message.History(request)
    with s.holding_pushes():
        s.write_lines([format_message(m, m.seq) for m in reply.messages])
        ctx.metrics.pulled.inc(len(reply.messages))
        s.write_line("+OK history_done")
    return None


# -- friends ------------------------------------------------------------------


@handles(c.AddFriend)
async def add_friend(ctx: GatewayContext, s: Session, cmd: c.AddFriend, cid: str | None) -> str:
    await ctx.services.user.AddFriend(user_pb2.FriendRequest(uid=_uid(s), friend_uid=cmd.uid))
    return "+OK friend added"


@handles(c.RemoveFriend)
async def remove_friend(
    ctx: GatewayContext, s: Session, cmd: c.RemoveFriend, cid: str | None
) -> str:
    await ctx.services.user.RemoveFriend(user_pb2.FriendRequest(uid=_uid(s), friend_uid=cmd.uid))
    return "+OK friend removed"


@handles(c.GetFriends)
async def get_friends(ctx: GatewayContext, s: Session, cmd: c.GetFriends, cid: str | None) -> str:
    reply = await ctx.services.user.GetFriends(user_pb2.GetFriendsRequest(uid=_uid(s)))
    return "+OK friends: " + ",".join(str(u) for u in reply.friend_uids)


# -- groups -------------------------------------------------------------------


@handles(c.CreateGroup)
async def create_group(ctx: GatewayContext, s: Session, cmd: c.CreateGroup, cid: str | None) -> str:
    reply = await ctx.services.group.CreateGroup(
        group_pb2.CreateGroupRequest(owner_uid=_uid(s), name=cmd.name, description=cmd.description)
    )
    return f"+OK group_id={reply.group_id}"


@handles(c.JoinGroup)
async def join_group(ctx: GatewayContext, s: Session, cmd: c.JoinGroup, cid: str | None) -> str:
    await ctx.services.group.JoinGroup(
        group_pb2.MembershipRequest(uid=_uid(s), group_id=cmd.group_id)
    )
    return "+OK joined group"


@handles(c.LeaveGroup)
async def leave_group(ctx: GatewayContext, s: Session, cmd: c.LeaveGroup, cid: str | None) -> str:
    await ctx.services.group.LeaveGroup(
        group_pb2.MembershipRequest(uid=_uid(s), group_id=cmd.group_id)
    )
    return "+OK left group"


@handles(c.Groups)
async def groups(ctx: GatewayContext, s: Session, cmd: c.Groups, cid: str | None) -> str:
    reply = await ctx.services.group.GetUserGroups(group_pb2.UserGroupsRequest(uid=_uid(s)))
    return "+OK groups: " + ",".join(str(g) for g in reply.group_ids)


@handles(c.Members)
async def members(ctx: GatewayContext, s: Session, cmd: c.Members, cid: str | None) -> str:
    reply = await ctx.services.group.ListMembers(
        group_pb2.MembershipRequest(uid=_uid(s), group_id=cmd.group_id)
    )
    return "+OK members: " + ",".join(str(u) for u in reply.member_uids)


# -- misc -----------------------------------------------------------------------


@handles(c.Status)
async def status(ctx: GatewayContext, s: Session, cmd: c.Status, cid: str | None) -> str:
    found = await ctx.services.user.GetUsers(user_pb2.GetUsersRequest(uids=[cmd.uid]))
    if not found.users:
        raise MpimError(ErrorCode.NO_SUCH_USER)
    routes = await ctx.services.presence.GetRoutes(presence_pb2.GetRoutesRequest(uids=[cmd.uid]))
    return f"+OK uid={cmd.uid} online={1 if routes.routes else 0}"


@handles(c.Ping)
async def ping(ctx: GatewayContext, s: Session, cmd: c.Ping, cid: str | None) -> str:
    return "+OK pong"


@handles(c.Quit)
async def quit_(ctx: GatewayContext, s: Session, cmd: c.Quit, cid: str | None) -> str:
    s.close_after_reply()
    return "+OK bye"


missing = set(c.COMMANDS.values()) - set(HANDLERS)
assert not missing, f"commands without a handler: {missing}"
