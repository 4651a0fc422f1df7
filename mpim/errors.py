"""Client-visible failures: one exception type carrying a stable code.

The code's value is the exact text after ``-ERR `` on the wire, so clients can
match on it; it becomes a reply line in exactly one place (the dispatcher).
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any


class ErrorCode(StrEnum):
    # framing and parsing
    LINE_TOO_LONG = "line too long"
    INVALID_UTF8 = "invalid utf-8"
    INVALID_CHARACTER = "invalid character"
    UNKNOWN_COMMAND = "unknown command"
    MISSING_ARGUMENT = "missing argument"
    TOO_MANY_ARGUMENTS = "too many arguments"
    BAD_CID = "bad cid"
    CID_NOT_ALLOWED = "cid not allowed for this command"
    BAD_UID = "bad uid"
    BAD_GROUP_ID = "bad group_id"
    BAD_SEQ = "bad seq"
    BAD_LIMIT = "bad limit"
    BAD_BEFORE_ID = "bad before_id"
    BAD_CONVERSATION = "bad conversation"
    BAD_USERNAME = "bad username"
    BAD_PASSWORD = "bad password"
    BAD_TOKEN = "bad token"
    BAD_GROUP_NAME = "bad group name"
    EMPTY_TEXT = "empty text"
    TEXT_TOO_LONG = "text too long"
    DESCRIPTION_TOO_LONG = "description too long"
    # session and security
    NOT_LOGIN = "not login"
    AUTH_FAILED = "auth failed"
    TOO_MANY_ATTEMPTS = "too many login attempts"
    RATE_LIMITED = "rate limited"
    # business rules
    USER_EXISTS = "user exists"
    NO_SUCH_USER = "no such user"
    CANNOT_SEND_TO_SELF = "cannot send to self"
    CANNOT_FRIEND_SELF = "cannot add yourself"
    ALREADY_FRIENDS = "already friends"
    NOT_FRIENDS = "not friends"
    NO_SUCH_GROUP = "no such group"
    ALREADY_MEMBER = "already member"
    NOT_MEMBER = "not member"
    # server side
    SERVICE_UNAVAILABLE = "service unavailable"
    SERVER_SHUTTING_DOWN = "server shutting down"
    SERVER_BUSY = "server busy"
    LOGIN_TIMEOUT = "login timeout"
    IDLE_TIMEOUT = "idle timeout"
    INTERNAL = "internal error"


def error_code(text: str) -> ErrorCode | None:
    """The code whose wire text is ``text`` (as it crossed a process boundary)."""
    try:
        return ErrorCode(text)
    except ValueError:
        return None


class MpimError(Exception):
    """A failure the client is told about as ``-ERR <code>``."""

    def __init__(self, code: ErrorCode) -> None:
        super().__init__(code.value)
        self.code = code

    def __repr__(self) -> str:
        return f"MpimError({self.code.name})"

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        # Refusals cross the store's writer process; args hold the code's text.
        return (type(self), (self.code,))
