"""Translate what a person types into one protocol line. Pure: no I/O, no state.

Two input forms are accepted for every command:

* the original MPIM client's colon form: ``chat:5:Hello World!`` — the text is
  everything after the second colon, colons inside it kept;
* a space form: ``chat 5 Hello World!``.

The form is chosen by whichever of ``:`` or a space comes first after the
command word. Arguments are checked here, so a typo gets a precise local
message with the command's usage instead of a server round trip.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from mpim.protocol.framing import DEFAULT_MAX_LINE_BYTES

logger = logging.getLogger(__name__)

MAX_ID: Final = 2**63 - 1
GROUP_NAME_MAX_CHARS: Final = 64

_USERNAME_RE: Final = re.compile(r"[A-Za-z0-9_.\-]{1,32}")
_DECIMAL_RE: Final = re.compile(r"[0-9]{1,19}")
_FORBIDDEN_INPUT: Final = ("\n", "\r", "\x00")
#: Room left for the ``@cid=<id> `` prefix the session may add to a send.
_CID_ALLOWANCE: Final = 80


@dataclass(frozen=True, slots=True)
class ServerCommand:
    """A protocol line to send, with what the session needs to know about it.

    ``retry_safe``: resending after a lost connection cannot change the outcome
    (reads, and sends that carry a client message id). ``accepts_cid``: the
    session may prefix ``@cid=<id>`` so the server stores a retried send once.
    ``args`` are the normalised arguments, e.g. the token of ``AUTH``.
    """

    word: str
    args: tuple[str, ...] = ()
    rest: str | None = None
    retry_safe: bool = False
    accepts_cid: bool = False

    @property
    def line(self) -> str:
        parts = [self.word, *self.args]
        if self.rest:
            parts.append(self.rest)
        return " ".join(parts)


@dataclass(frozen=True, slots=True)
class ShowHelp:
    text: str


@dataclass(frozen=True, slots=True)
class Quit:
    """Send ``QUIT``, then leave the client."""


@dataclass(frozen=True, slots=True)
class InputError:
    message: str


@dataclass(frozen=True, slots=True)
class Blank:
    """Nothing typed; nothing to do."""


Parsed = ServerCommand | ShowHelp | Quit | InputError | Blank


class _BadInput(Exception):
    pass


# --- argument checks: one per argument name, returning the normalised value ---


def _id(value: str, what: str) -> str:
    if not _DECIMAL_RE.fullmatch(value) or not 1 <= int(value) <= MAX_ID:
        raise _BadInput(f"{what} must be a positive whole number, got {value!r}")
    return str(int(value))


def _seq(value: str) -> str:
    if not _DECIMAL_RE.fullmatch(value) or int(value) > MAX_ID:
        raise _BadInput(f"seq must be a whole number (0 or more), got {value!r}")
    return str(int(value))


def _username(value: str) -> str:
    if not _USERNAME_RE.fullmatch(value):
        raise _BadInput("username must be 1-32 characters of A-Z a-z 0-9 _ . -")
    return value


def _password(value: str) -> str:
    if any(c.isspace() for c in value):
        raise _BadInput("password may not contain spaces")
    if not 6 <= len(value) <= 128:
        raise _BadInput("password must be 6-128 characters")
    return value


def _token(value: str) -> str:
    if any(c.isspace() for c in value):
        raise _BadInput("token may not contain spaces")
    return value


def _conversation(value: str) -> str:
    """``5`` (a user) or ``g3`` / ``#3`` (a group)."""
    if value[:1] in ("g", "G", "#"):
        return "g" + _id(value[1:], "group id")
    return _id(value, "uid")


def _group_name(value: str) -> str:
    if len(value) > GROUP_NAME_MAX_CHARS or not value.isprintable():
        raise _BadInput(f"group name must be 1-{GROUP_NAME_MAX_CHARS} printable characters")
    return value


def _text(value: str) -> str:
    if not value.strip():
        raise _BadInput("text is empty")
    return value


_CHECKS: Final[dict[str, Callable[[str], str]]] = {
    "uid": lambda v: _id(v, "uid"),
    "gid": lambda v: _id(v, "group id"),
    "limit": lambda v: _id(v, "limit"),
    "before_id": lambda v: _id(v, "before_id"),
    "seq": _seq,
    "user": _username,
    "password": _password,
    "token": _token,
    "conversation": _conversation,
    "name": _group_name,
    "text": _text,
    "description": lambda v: v,
}


_LABELS: Final = {"conversation": "uid|g<gid>"}


@dataclass(frozen=True, slots=True)
class _Spec:
    """One client command: its words, arguments, protocol word and help line."""

    words: tuple[str, ...]
    protocol: str | None
    summary: str
    args: tuple[str, ...] = ()
    optional: tuple[str, ...] = ()
    rest: str | None = None
    rest_optional: bool = False
    retry_safe: bool = False
    accepts_cid: bool = False

    def usage(self, sep: str = ":") -> str:
        out = self.words[0] + "".join(f"{sep}<{_LABELS.get(a, a)}>" for a in self.args)
        if self.rest is not None:
            rest = f"{sep}<{self.rest}>"
            out += f"[{rest}]" if self.rest_optional else rest
        tail = ""
        for name in reversed(self.optional):
            tail = f"[{sep}<{name}>{tail}]"
        return out + tail


_SPECS: Final[tuple[_Spec, ...]] = (
    _Spec(("help", "?"), None, "show this help"),
    _Spec(("register",), "REGISTER", "create an account and log in", ("user",), rest="password"),
    _Spec(("login",), "LOGIN", "log in", ("user",), rest="password", retry_safe=True),
    _Spec(("auth",), "AUTH", "resume a session with a token", ("token",)),
    _Spec(("logout",), "LOGOUT", "log out (revokes the token)"),
    _Spec(
        ("chat", "send"),
        "SEND",
        "send a message to a user",
        ("uid",),
        rest="text",
        retry_safe=True,
        accepts_cid=True,
    ),
    _Spec(("pull",), "PULL", "fetch messages not delivered yet", retry_safe=True),
    _Spec(
        ("sync",),
        "SYNC",
        "fetch every message after seq (default: last seen)",
        optional=("seq",),
        retry_safe=True,
    ),
    _Spec(
        ("history",),
        "HISTORY",
        "show a conversation with a user or group",
        ("conversation",),
        optional=("limit", "before_id"),
        retry_safe=True,
    ),
    _Spec(("addfriend",), "ADDFRIEND", "add a friend (mutual)", ("uid",)),
    _Spec(("removefriend",), "REMOVEFRIEND", "remove a friend", ("uid",)),
    _Spec(("getfriends", "friends"), "GETFRIENDS", "list your friends", retry_safe=True),
    _Spec(
        ("creategroup",),
        "CREATEGROUP",
        "create a group (you join it)",
        ("name",),
        rest="description",
        rest_optional=True,
    ),
    _Spec(("joingroup",), "JOINGROUP", "join a group", ("gid",)),
    _Spec(("leavegroup",), "LEAVEGROUP", "leave a group", ("gid",)),
    _Spec(
        ("sendgroup",),
        "SENDGROUP",
        "send a message to a group",
        ("gid",),
        rest="text",
        retry_safe=True,
        accepts_cid=True,
    ),
    _Spec(("groups",), "GROUPS", "list your groups", retry_safe=True),
    _Spec(("members",), "MEMBERS", "list a group's members", ("gid",), retry_safe=True),
    _Spec(("status",), "STATUS", "is a user online?", ("uid",), retry_safe=True),
    _Spec(("ping",), "PING", "check the server answers", retry_safe=True),
    _Spec(("quit", "exit"), "QUIT", "leave the client"),
)

_BY_WORD: Final[dict[str, _Spec]] = {word: spec for spec in _SPECS for word in spec.words}


def help_text() -> str:
    """Every command with its syntax; the space form works everywhere too."""
    rows = [(spec.usage(), spec.summary) for spec in _SPECS]
    width = max(len(usage) for usage, _ in rows)
    lines = [
        "Commands (colon or space form: chat:5:hi  or  chat 5 hi):",
        *(f"  {usage.ljust(width)}  {summary}" for usage, summary in rows),
        "Messages you receive show as  [time] <uid> → me: text  or  [time] #<gid> <uid>: text.",
    ]
    return "\n".join(lines)


def translate(text: str, *, last_seq: int = 0) -> Parsed:
    """Turn one typed line into what to do; ``last_seq`` is the default for ``sync``."""
    if not text.strip():
        return Blank()
    stripped = text.lstrip()  # trailing spaces belong to a message's text
    if any(c in text for c in _FORBIDDEN_INPUT):
        return InputError("input may not contain line breaks or NUL characters")
    word, sep, body = _split_word(stripped)
    spec = _BY_WORD.get(word.lower())
    if spec is None:
        return InputError(f"unknown command {word!r}; type 'help' for the list")
    try:
        tokens, rest = _split_args(spec, body, colon=sep == ":")
        return _build(spec, tokens, rest, last_seq)
    except _BadInput as exc:
        return InputError(f"{exc}; usage: {spec.usage()}")


def _split_word(stripped: str) -> tuple[str, str, str]:
    """``(word, separator, rest)`` where separator is ``":"``, ``" "`` or ``""``."""
    match = re.search(r"[:\s]", stripped)
    if match is None:
        return stripped, "", ""
    sep = ":" if match.group() == ":" else " "
    return stripped[: match.start()], sep, stripped[match.end() :]


def _split_args(spec: _Spec, body: str, *, colon: bool) -> tuple[list[str], str | None]:
    """The argument words, and the free text (leading spaces dropped) if the command has one."""
    fixed = len(spec.args)
    if spec.rest is None:
        if colon:
            tokens = [p.strip() for p in body.split(":")] if body.strip() else []
        else:
            tokens = body.split()
        _require(spec, tokens)
        if len(tokens) > fixed + len(spec.optional):
            raise _BadInput("too many arguments")
        return tokens, None
    if colon:
        parts = body.split(":", fixed)
        tokens = [p.strip() for p in parts[:fixed]]
        rest = parts[fixed] if len(parts) > fixed else ""
    else:
        parts = body.split(None, fixed)
        tokens = parts[:fixed]
        rest = _rest_after(body, fixed)
    _require(spec, tokens)
    rest = rest.lstrip()
    if not rest:
        if spec.rest_optional:
            return tokens, None
        raise _BadInput(f"missing {spec.rest}")
    return tokens, rest


def _rest_after(body: str, fixed: int) -> str:
    """Text after ``fixed`` space-separated words, inner and trailing spaces kept."""
    match = re.match(r"\s*" + r"\S+\s+" * fixed, body)
    return body[match.end() :] if match else ""


def _require(spec: _Spec, tokens: list[str]) -> None:
    for index, name in enumerate(spec.args):
        if index >= len(tokens) or not tokens[index]:
            raise _BadInput(f"missing {_LABELS.get(name, name)}")


def _build(spec: _Spec, tokens: list[str], rest: str | None, last_seq: int) -> Parsed:
    if spec.protocol is None:
        return ShowHelp(help_text())
    if spec.protocol == "QUIT":
        return Quit()
    names = (*spec.args, *spec.optional)
    args = [_CHECKS[name](value) for name, value in zip(names, tokens, strict=False)]
    if spec.rest is not None and rest is not None:
        rest = _CHECKS[spec.rest](rest)
    if spec.optional == ("seq",) and not args:
        args = [str(last_seq)]
    command = ServerCommand(spec.protocol, tuple(args), rest, spec.retry_safe, spec.accepts_cid)
    if len(command.line.encode()) + _CID_ALLOWANCE > DEFAULT_MAX_LINE_BYTES:
        raise _BadInput(f"input too long (the server limit is {DEFAULT_MAX_LINE_BYTES} bytes)")
    return command
