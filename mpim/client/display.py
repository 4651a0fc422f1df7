"""Render server lines for a person. Pure: the clock and time zone are arguments.

Message text comes from other users, so control characters are shown escaped:
a peer must not be able to move the cursor or recolour the terminal.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, tzinfo
from typing import Final

from mpim.client.reply import Reply, parse_kv
from mpim.protocol.messages import MessageLine, is_message_line

logger = logging.getLogger(__name__)

ARROW: Final = "→"

_ERROR_HINTS: Final = {
    "not login": "log in first: login:<user>:<password> (or register:<user>:<password>)",
    "auth failed": "wrong user name or password, or the session expired",
}


def safe_text(text: str) -> str:
    """Escape control characters (ESC, BEL, C1 …) so text cannot drive the terminal."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else _escape(c) for c in text)


def _escape(char: str) -> str:
    code = ord(char)
    if code <= 0xFF:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}"


def format_timestamp(ts_ms: int, *, now_ms: int, tz: tzinfo | None = None) -> str:
    """``14:03:07`` for today (in ``tz``, default local), else ``2024-05-01 14:03:07``."""
    try:
        when = datetime.fromtimestamp(ts_ms / 1000, tz)
    except (OverflowError, OSError, ValueError):
        return f"ts={ts_ms}"
    now = datetime.fromtimestamp(now_ms / 1000, tz)
    if when.date() == now.date():
        return when.strftime("%H:%M:%S")
    return when.strftime("%Y-%m-%d %H:%M:%S")


def format_message(
    msg: MessageLine,
    *,
    now_ms: int,
    my_uid: int | None = None,
    peer_uid: int | None = None,
    tz: tzinfo | None = None,
) -> str:
    """``[14:03:07] 5 → me: hello``, ``[14:03:07] #3 5: hi``.

    A one-to-one message I sent (seen in HISTORY) reads ``me → <peer>``;
    ``peer_uid`` names the other side when known.
    """
    stamp = format_timestamp(msg.ts_ms, now_ms=now_ms, tz=tz)
    text = safe_text(msg.text)
    mine = my_uid is not None and msg.sender == my_uid
    if msg.group_id is not None:
        sender = "me" if mine else str(msg.sender)
        return f"[{stamp}] #{msg.group_id} {sender}: {text}"
    if mine:
        to = str(peer_uid) if peer_uid is not None else "?"
        return f"[{stamp}] me {ARROW} {to}: {text}"
    return f"[{stamp}] {msg.sender} {ARROW} me: {text}"


def format_line(
    line: str,
    *,
    now_ms: int,
    my_uid: int | None = None,
    peer_uid: int | None = None,
    tz: tzinfo | None = None,
) -> str:
    """A message line rendered, or any other server line shown as it is (escaped)."""
    if is_message_line(line):
        try:
            msg = MessageLine.parse(line)
        except ValueError:
            return f"server: {safe_text(line)}"
        return format_message(msg, now_ms=now_ms, my_uid=my_uid, peer_uid=peer_uid, tz=tz)
    return f"server: {safe_text(line)}"


def format_reply(
    word: str,
    reply: Reply,
    *,
    now_ms: int,
    my_uid: int | None = None,
    peer_uid: int | None = None,
    tz: tzinfo | None = None,
) -> list[str]:
    """Lines to show for the ``reply`` to a command whose protocol word is ``word``.

    HISTORY arrives newest first; it is shown oldest first, like a chat window.
    """
    lines = list(reversed(reply.lines)) if word == "HISTORY" else reply.lines
    out = [
        format_line(line, now_ms=now_ms, my_uid=my_uid, peer_uid=peer_uid, tz=tz) for line in lines
    ]
    out.append(format_status(word, reply))
    return out


def format_status(word: str, reply: Reply) -> str:
    """One readable line for a reply's final ``+OK`` / ``-ERR`` line."""
    detail = safe_text(reply.detail)
    if not reply.ok:
        hint = _ERROR_HINTS.get(detail)
        return f"error: {detail}" + (f" ({hint})" if hint else "")
    render = _OK_RENDERERS.get(word)
    return render(reply) if render is not None else detail


def _id_list(status: str) -> list[str]:
    """``"+OK friends: 3,7"`` -> ``["3", "7"]``."""
    _, _, ids = status.partition(":")
    return [part for part in ids.strip().split(",") if part]


def _count(reply: Reply, noun: str) -> str:
    n = len(reply.lines)
    return f"{n} {noun}" + ("" if n == 1 else "s")


def _kv(reply: Reply, key: str) -> str:
    return safe_text(parse_kv(reply.status).get(key, "?"))


def _friends(reply: Reply) -> str:
    ids = _id_list(reply.status)
    return "friends: " + ", ".join(ids) if ids else "no friends yet"


def _groups(reply: Reply) -> str:
    ids = _id_list(reply.status)
    return "your groups: " + ", ".join(f"#{i}" for i in ids) if ids else "you are in no groups"


def _members(reply: Reply) -> str:
    return "members: " + ", ".join(_id_list(reply.status))


def _pull(reply: Reply) -> str:
    return _count(reply, "new message") if reply.lines else "no new messages"


def _sync(reply: Reply) -> str:
    return f"synced up to seq {_kv(reply, 'seq')} ({_count(reply, 'message')})"


def _status(reply: Reply) -> str:
    state = "online" if parse_kv(reply.status).get("online") == "1" else "offline"
    return f"user {_kv(reply, 'uid')} is {state}"


_OK_RENDERERS: Final[dict[str, Callable[[Reply], str]]] = {
    "REGISTER": lambda r: f"registered and logged in as uid {_kv(r, 'uid')}",
    "LOGIN": lambda r: f"logged in as uid {_kv(r, 'uid')}",
    "AUTH": lambda r: f"session resumed as uid {_kv(r, 'uid')}",
    "LOGOUT": lambda r: "logged out",
    "SEND": lambda r: f"sent (msg_id={_kv(r, 'msg_id')})",
    "SENDGROUP": lambda r: f"sent to group (msg_id={_kv(r, 'group_msg_id')})",
    "PULL": _pull,
    "SYNC": _sync,
    "HISTORY": lambda r: f"end of history ({_count(r, 'message')})",
    "GETFRIENDS": _friends,
    "CREATEGROUP": lambda r: f"group #{_kv(r, 'group_id')} created",
    "GROUPS": _groups,
    "MEMBERS": _members,
    "STATUS": _status,
    "PING": lambda r: "pong",
    "QUIT": lambda r: "bye",
}
