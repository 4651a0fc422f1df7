"""Typed client commands: one small class per command and a name -> class map.

Parsing is pure: a decoded line becomes a ``Request`` or raises ``MpimError``
with the specific code the client is told. The dispatcher does the rest.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import ClassVar, Final, Self

from mpim.errors import ErrorCode, MpimError

MAX_ID: Final = 2**63 - 1
HISTORY_DEFAULT_LIMIT: Final = 50
HISTORY_MAX_LIMIT: Final = 500
GROUP_NAME_MAX_CHARS: Final = 64
GROUP_DESCRIPTION_MAX_CHARS: Final = 512
DEFAULT_MAX_TEXT_BYTES: Final = 16 * 1024

_SEQ_RE: Final = re.compile(r"0|[1-9][0-9]{0,18}")
_USERNAME_RE: Final = re.compile(r"[A-Za-z0-9_.\-]{1,32}")
_CID_RE: Final = re.compile(r"[A-Za-z0-9_\-]{1,64}")
_TOKEN_RE: Final = re.compile(r"[A-Za-z0-9_\-]{16,128}")
_PASSWORD_MIN: Final = 6
_PASSWORD_MAX: Final = 128


@dataclass(frozen=True, slots=True)
class ParseLimits:
    """Limits applied while parsing; configurable per gateway."""

    max_text_bytes: int = DEFAULT_MAX_TEXT_BYTES


def parse_id(token: str, code: ErrorCode) -> int:
    """A positive 63-bit decimal id, or ``code``."""
    # String tests, not a regex: every SEND parses one (0.25 against 0.64 µs).
    # isascii() first: isdigit() alone would take other scripts' digits.
    if not (token.isascii() and token.isdigit()) or token[0] == "0" or len(token) > 19:
        raise MpimError(code)
    value = int(token)
    if value > MAX_ID:
        raise MpimError(code)
    return value


def parse_seq(token: str) -> int:
    if not _SEQ_RE.fullmatch(token) or int(token) > MAX_ID:
        raise MpimError(ErrorCode.BAD_SEQ)
    return int(token)


def parse_username(token: str) -> str:
    if not _USERNAME_RE.fullmatch(token):
        raise MpimError(ErrorCode.BAD_USERNAME)
    return token


def parse_password(token: str) -> str:
    if not _PASSWORD_MIN <= len(token) <= _PASSWORD_MAX:
        raise MpimError(ErrorCode.BAD_PASSWORD)
    return token


def parse_text(text: str, limits: ParseLimits) -> str:
    if not text:
        raise MpimError(ErrorCode.EMPTY_TEXT)
    # A character is at most 4 bytes of UTF-8: most texts need no encoding
    # to know they fit.
    n, limit = len(text), limits.max_text_bytes
    if n * 4 > limit and (n > limit or len(text.encode()) > limit):
        raise MpimError(ErrorCode.TEXT_TOO_LONG)
    return text


def split_args(args: str, count: int, optional: int = 0) -> list[str]:
    """Split on runs of spaces into ``count`` required and up to ``optional`` more."""
    tokens = args.split(" ")
    tokens = [t for t in tokens if t]
    if len(tokens) < count:
        raise MpimError(ErrorCode.MISSING_ARGUMENT)
    if len(tokens) > count + optional:
        raise MpimError(ErrorCode.TOO_MANY_ARGUMENTS)
    return tokens


def split_rest(args: str, fixed: int) -> tuple[list[str], str]:
    """``fixed`` space-separated tokens, then the rest of the line byte for byte.

    The rest starts at the first non-space after the last fixed token and keeps
    inner and trailing spaces. It is "" when absent.
    """
    # str methods, not a loop over characters: SEND and SENDGROUP split one
    # token off every message (0.5 against 1.5 µs).
    tokens: list[str] = []
    rest = args
    for _ in range(fixed):
        rest = rest.lstrip(" ")
        if not rest:
            raise MpimError(ErrorCode.MISSING_ARGUMENT)
        token, _, rest = rest.partition(" ")
        tokens.append(token)
    return tokens, rest.lstrip(" ")


class Command:
    """Base of every client command."""

    NAME: ClassVar[str]
    NEEDS_LOGIN: ClassVar[bool] = True
    ACCEPTS_CID: ClassVar[bool] = False

    @classmethod
    def parse(cls, args: str, limits: ParseLimits) -> Self:
        split_args(args, 0)
        return cls()


@dataclass(frozen=True, slots=True)
class _UidCommand(Command):
    """A command whose only argument is a user id."""

    uid: int

    @classmethod
    def parse(cls, args: str, limits: ParseLimits) -> Self:
        (uid,) = split_args(args, 1)
        return cls(parse_id(uid, ErrorCode.BAD_UID))


@dataclass(frozen=True, slots=True)
class _GroupIdCommand(Command):
    """A command whose only argument is a group id."""

    group_id: int

    @classmethod
    def parse(cls, args: str, limits: ParseLimits) -> Self:
        (gid,) = split_args(args, 1)
        return cls(parse_id(gid, ErrorCode.BAD_GROUP_ID))


@dataclass(frozen=True, slots=True)
class Register(Command):
    NAME: ClassVar[str] = "REGISTER"
    NEEDS_LOGIN: ClassVar[bool] = False
    username: str
    password: str

    @classmethod
    def parse(cls, args: str, limits: ParseLimits) -> Self:
        user, pwd = split_args(args, 2)
        return cls(parse_username(user), parse_password(pwd))


@dataclass(frozen=True, slots=True)
class Login(Command):
    NAME: ClassVar[str] = "LOGIN"
    NEEDS_LOGIN: ClassVar[bool] = False
    username: str
    password: str

    @classmethod
    def parse(cls, args: str, limits: ParseLimits) -> Self:
        # A malformed name or password cannot match an account: same reply as
        # a wrong one, so LOGIN never reveals which part was wrong.
        user, pwd = split_args(args, 2)
        return cls(user, pwd)


@dataclass(frozen=True, slots=True)
class Auth(Command):
    NAME: ClassVar[str] = "AUTH"
    NEEDS_LOGIN: ClassVar[bool] = False
    token: str

    @classmethod
    def parse(cls, args: str, limits: ParseLimits) -> Self:
        (token,) = split_args(args, 1)
        if not _TOKEN_RE.fullmatch(token):
            raise MpimError(ErrorCode.AUTH_FAILED)
        return cls(token)


@dataclass(frozen=True, slots=True)
class Logout(Command):
    NAME: ClassVar[str] = "LOGOUT"


# Send and SendGroup are not frozen, unlike the other commands: one is built
# per message, and a frozen dataclass costs twice as much to build (0.51
# against 0.28 µs). Nothing changes a command once parsed, and nothing
# hashes one (not frozen, they are unhashable).
@dataclass(slots=True)
class Send(Command):
    NAME: ClassVar[str] = "SEND"
    ACCEPTS_CID: ClassVar[bool] = True
    to_uid: int
    text: str

    @classmethod
    def parse(cls, args: str, limits: ParseLimits) -> Self:
        (uid,), text = split_rest(args, 1)
        return cls(parse_id(uid, ErrorCode.BAD_UID), parse_text(text, limits))


@dataclass(slots=True)
class SendGroup(Command):
    NAME: ClassVar[str] = "SENDGROUP"
    ACCEPTS_CID: ClassVar[bool] = True
    group_id: int
    text: str

    @classmethod
    def parse(cls, args: str, limits: ParseLimits) -> Self:
        (gid,), text = split_rest(args, 1)
        return cls(parse_id(gid, ErrorCode.BAD_GROUP_ID), parse_text(text, limits))


@dataclass(frozen=True, slots=True)
class Pull(Command):
    NAME: ClassVar[str] = "PULL"


@dataclass(frozen=True, slots=True)
class AddFriend(_UidCommand):
    NAME: ClassVar[str] = "ADDFRIEND"


@dataclass(frozen=True, slots=True)
class RemoveFriend(_UidCommand):
    NAME: ClassVar[str] = "REMOVEFRIEND"


@dataclass(frozen=True, slots=True)
class GetFriends(Command):
    NAME: ClassVar[str] = "GETFRIENDS"


@dataclass(frozen=True, slots=True)
class CreateGroup(Command):
    NAME: ClassVar[str] = "CREATEGROUP"
    name: str
    description: str

    @classmethod
    def parse(cls, args: str, limits: ParseLimits) -> Self:
        (name,), description = split_rest(args, 1)
        if len(name) > GROUP_NAME_MAX_CHARS or not name.isprintable():
            raise MpimError(ErrorCode.BAD_GROUP_NAME)
        if len(description) > GROUP_DESCRIPTION_MAX_CHARS:
            raise MpimError(ErrorCode.DESCRIPTION_TOO_LONG)
        return cls(name, description)


@dataclass(frozen=True, slots=True)
class JoinGroup(_GroupIdCommand):
    NAME: ClassVar[str] = "JOINGROUP"


@dataclass(frozen=True, slots=True)
class LeaveGroup(_GroupIdCommand):
    NAME: ClassVar[str] = "LEAVEGROUP"


@dataclass(frozen=True, slots=True)
class Groups(Command):
    NAME: ClassVar[str] = "GROUPS"


@dataclass(frozen=True, slots=True)
class Members(_GroupIdCommand):
    NAME: ClassVar[str] = "MEMBERS"


@dataclass(frozen=True, slots=True)
class Sync(Command):
    NAME: ClassVar[str] = "SYNC"
    after_seq: int

    @classmethod
    def parse(cls, args: str, limits: ParseLimits) -> Self:
        (seq,) = split_args(args, 1)
        return cls(parse_seq(seq))


@dataclass(frozen=True, slots=True)
class History(Command):
    """``HISTORY <uid>|g<gid> [limit] [before_id]``; exactly one of the ids is set."""

    NAME: ClassVar[str] = "HISTORY"
    peer_uid: int | None
    group_id: int | None
    limit: int
    before_id: int | None

    @classmethod
    def parse(cls, args: str, limits: ParseLimits) -> Self:
        tokens = split_args(args, 1, optional=2)
        target = tokens[0]
        peer: int | None = None
        group: int | None = None
        if target[:1] in ("g", "G"):
            group = parse_id(target[1:], ErrorCode.BAD_GROUP_ID)
        else:
            peer = parse_id(target, ErrorCode.BAD_UID)
        limit = HISTORY_DEFAULT_LIMIT
        if len(tokens) > 1:
            limit = min(parse_id(tokens[1], ErrorCode.BAD_LIMIT), HISTORY_MAX_LIMIT)
        before = parse_id(tokens[2], ErrorCode.BAD_BEFORE_ID) if len(tokens) > 2 else None
        return cls(peer, group, limit, before)


@dataclass(frozen=True, slots=True)
class Status(_UidCommand):
    NAME: ClassVar[str] = "STATUS"


@dataclass(frozen=True, slots=True)
class Ping(Command):
    NAME: ClassVar[str] = "PING"
    NEEDS_LOGIN: ClassVar[bool] = False


@dataclass(frozen=True, slots=True)
class Quit(Command):
    NAME: ClassVar[str] = "QUIT"
    NEEDS_LOGIN: ClassVar[bool] = False


COMMANDS: Final[dict[str, type[Command]]] = {
    cls.NAME: cls
    for cls in (
        Register,
        Login,
        Auth,
        Logout,
        Send,
        Pull,
        AddFriend,
        RemoveFriend,
        GetFriends,
        CreateGroup,
        JoinGroup,
        LeaveGroup,
        SendGroup,
        Groups,
        Members,
        Sync,
        History,
        Status,
        Ping,
        Quit,
    )
}


@dataclass(frozen=True, slots=True)
class Request:
    """One parsed client line: an optional client message id and a command."""

    command: Command
    cid: str | None = None


def split_command(line: str) -> tuple[str | None, type[Command], str]:
    """Identify ``[@cid=X] WORD rest`` without parsing the arguments.

    Lets the dispatcher check login before argument errors, so a logged-out
    client is told ``not login`` rather than how its arguments were wrong.
    """
    line = line.lstrip(" ")
    cid: str | None = None
    if line.startswith("@"):
        head, _, line = line.partition(" ")
        if not head.startswith("@cid="):
            raise MpimError(ErrorCode.BAD_CID)
        cid = head[5:]
        if not _CID_RE.fullmatch(cid):
            raise MpimError(ErrorCode.BAD_CID)
        line = line.lstrip(" ")
    word, _, rest = line.partition(" ")
    cls = COMMANDS.get(word.upper()) if word.isascii() else None
    if cls is None:
        raise MpimError(ErrorCode.UNKNOWN_COMMAND)
    if cid is not None and not cls.ACCEPTS_CID:
        raise MpimError(ErrorCode.CID_NOT_ALLOWED)
    return cid, cls, rest


def parse_request(line: str, limits: ParseLimits | None = None) -> Request:
    """Parse a whole decoded line (no terminator, not blank)."""
    cid, cls, rest = split_command(line)
    return Request(cls.parse(rest, limits or ParseLimits()), cid)
