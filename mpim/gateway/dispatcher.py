"""The one place a client line becomes a command, a handler call and a reply.

Decoding, parsing, the login check, rate limiting and turning failures into
``-ERR`` lines happen here for every command. An MpimError is the client's
answer; anything else is a bug: logged with its traceback, answered with a
generic error, and the connection lives on.
"""

from __future__ import annotations

import logging

from mpim.errors import ErrorCode, MpimError
from mpim.gateway.handlers import HANDLERS, GatewayContext
from mpim.gateway.session import Session
from mpim.protocol.commands import ParseLimits, split_command

logger = logging.getLogger(__name__)


class Dispatcher:
    def __init__(self, ctx: GatewayContext) -> None:
        self._ctx = ctx
        self._limits = ParseLimits(max_text_bytes=ctx.settings.max_text_bytes)
        self.commands = 0
        self.errors = 0

    async def handle_line(self, session: Session, raw: bytes) -> None:
        reply = await self._reply_to(session, raw)
        if reply is not None:
            session.write_line(reply)

    async def _reply_to(self, session: Session, raw: bytes) -> str | None:
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            return self._error(ErrorCode.INVALID_UTF8)
        if not text.strip(" "):
            return None  # empty and blank lines are ignored
        if "\x00" in text:
            return self._error(ErrorCode.INVALID_CHARACTER)
        self.commands += 1
        try:
            cid, command_type, rest = split_command(text)
            if command_type.NEEDS_LOGIN and session.uid is None:
                raise MpimError(ErrorCode.NOT_LOGIN)
            if not session.rate.take():
                raise MpimError(ErrorCode.RATE_LIMITED)
            command = command_type.parse(rest, self._limits)
            logger.debug("conn %s uid=%s %s", session.conn_id, session.uid, command_type.NAME)
            return await HANDLERS[command_type](self._ctx, session, command, cid)
        except MpimError as exc:
            return self._error(exc.code)
        except Exception:
            logger.exception("conn %s: command failed", session.conn_id)
            return self._error(ErrorCode.INTERNAL)

    def _error(self, code: ErrorCode) -> str:
        self.errors += 1
        return f"-ERR {code.value}"
