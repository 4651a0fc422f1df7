"""Structured logs: one line per event, ``key=value`` or JSON, to stderr and/or a rotating file.

Why: a cluster writes several busy logs at once; lines that a program can
split (``grep uid=5``, ``jq``) and that never span two lines (a traceback
included) can be merged, filtered and shipped without guessing.

Formats (``[log] format``):

- ``kv`` (default)::

    ts=2026-11-28T21:00:00.123Z level=info logger=mpim.gateway msg="conn closed" uid=5 conn=gw-1-3

  A value is written bare unless it is empty or contains a space, ``"``,
  ``=``, ``\\`` or a character that is not printable; then it is a JSON
  string literal (``msg="say \\"hi\\"\\nbye"``), so ``json.loads`` reads it
  back. Newlines are always escaped: one event is one line.
- ``json``: one JSON object per line with the same keys.

Keys, in order: ``ts`` (UTC, milliseconds), ``level``, ``logger``, ``msg``,
then the request-scoped fields (below), then the fields passed as
``logger.info(..., extra={"uid": 5})`` (any record attribute that is not a
standard ``LogRecord`` one), then ``exc`` (the formatted exception and
traceback, escaped into the one line) and ``stack`` if the call asked for
them. Fields whose value is ``None`` are left out. Fields named
``password``, ``token``, ``secret`` or ``text`` are written as
``<redacted>`` at INFO and above: secrets and message texts belong at DEBUG
at most. SQLAlchemy error texts carry the statement's bound parameters
(message texts, password hashes); their ``[parameters: …]`` line is
dropped from ``msg`` and ``exc`` at every level.

Request-scoped fields live in a context variable, so each asyncio task
(one connection, one RPC) carries its own, and a task started while they
are bound inherits them. Binding costs one small dict copy; nothing is read
unless a line is actually written, so a disabled ``logger.debug`` costs
what it always did::

    from mpim.logs import bind_log_fields, log_fields, reset_log_fields

    with log_fields(conn=session.conn_id):          # a block
        ...
        with log_fields(uid=uid, msg_id=msg_id):    # nested: adds to the outer ones
            logger.info("delivered")                # ... conn=gw-1-3 uid=5 msg_id=...

    token = bind_log_fields(uid=5)                  # a span that is not a block
    try:
        ...
    finally:
        reset_log_fields(token)                     # back to exactly what was bound before

Suggested names: ``uid``, ``conn`` (connection id), ``msg_id``, ``cid``,
``peer``, ``gateway``. Threads (``run_in_executor``) do not inherit the
context: bind again there if it matters.

``configure_logging`` installs the handlers once per process (``mpim up``,
``mpim serve``, ``mpim cluster``); ``configure_from_settings`` reads them
from ``Settings.log``. Files rotate by size (``max_bytes``, ``backups``;
a file may exceed ``max_bytes`` by one line before it is rotated).
"""

from __future__ import annotations

import json
import logging
import re
import sys
import time
from collections.abc import Mapping
from contextvars import ContextVar, Token
from logging.handlers import RotatingFileHandler
from pathlib import Path
from types import MappingProxyType, TracebackType
from typing import TYPE_CHECKING, Final, Literal, TextIO

if TYPE_CHECKING:
    from mpim.config import Settings

LogFormat = Literal["kv", "json"]

_EMPTY: Final[Mapping[str, object]] = MappingProxyType({})
_FIELDS: Final[ContextVar[Mapping[str, object]]] = ContextVar("mpim_log_fields", default=_EMPTY)

# Attributes every LogRecord has; anything else on a record came from ``extra``.
_STANDARD: Final = frozenset(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {
    "message",
    "asctime",
    "taskName",
}
_RESERVED: Final = frozenset({"ts", "level", "logger", "msg", "exc", "stack"})
_SECRET_KEYS: Final = frozenset({"password", "token", "secret", "text"})
_REDACTED: Final = "<redacted>"
_NEEDS_QUOTES: Final = re.compile(r'[ "=\\]')
_BAD_KEY_CHARS: Final = re.compile(r"[^A-Za-z0-9_.\-]")
_SQL_PARAMETERS: Final = re.compile(r"^\[parameters: .*$", re.M)
_OURS: Final = "_mpim_structured"  # marks the handlers configure_logging installed


# -- request-scoped fields ------------------------------------------------------


def bind_log_fields(**fields: object) -> Token[Mapping[str, object]]:
    """Add ``fields`` to every line logged from this context until ``reset_log_fields``."""
    return _FIELDS.set({**_FIELDS.get(), **fields})


def reset_log_fields(token: Token[Mapping[str, object]]) -> None:
    """Restore the fields bound before the ``bind_log_fields`` that returned ``token``."""
    _FIELDS.reset(token)


def current_log_fields() -> Mapping[str, object]:
    """The request-scoped fields bound in this context (read-only)."""
    return _FIELDS.get()


class _Scope:
    """``with log_fields(...)``: a class, not a generator, to keep the block cheap."""

    __slots__ = ("_fields", "_token")

    def __init__(self, fields: dict[str, object]) -> None:
        self._fields = fields
        self._token: Token[Mapping[str, object]] | None = None

    def __enter__(self) -> None:
        self._token = bind_log_fields(**self._fields)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._token is not None:
            reset_log_fields(self._token)
            self._token = None


def log_fields(**fields: object) -> _Scope:
    """Bind ``fields`` for the duration of a ``with`` block (nesting adds to the outer ones)."""
    return _Scope(fields)


# -- formatting -----------------------------------------------------------------


def _timestamp(record: logging.LogRecord) -> str:
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
    return f"{stamp}.{int(record.msecs):03d}Z"


def _escape_unprintable(text: str) -> str:
    """JSON-escape what ``json.dumps(ensure_ascii=False)`` leaves raw (U+2028, C1, surrogates).

    ``str.splitlines`` breaks lines at some of them, so they must not appear raw.
    """
    out = []
    for char in text:
        if char.isprintable():
            out.append(char)
            continue
        code = ord(char)
        if code > 0xFFFF:
            code -= 0x10000
            out.append(f"\\u{0xD800 + (code >> 10):04x}\\u{0xDC00 + (code & 0x3FF):04x}")
        else:
            out.append(f"\\u{code:04x}")
    return "".join(out)


def _json_string(text: str) -> str:
    quoted = json.dumps(text, ensure_ascii=False)
    return quoted if quoted.isprintable() else _escape_unprintable(quoted)


def _kv_value(value: object) -> str:
    if value is True or value is False:
        text = "true" if value else "false"
    else:
        text = value if isinstance(value, str) else str(value)
    if text and text.isprintable() and _NEEDS_QUOTES.search(text) is None:
        return text
    return _json_string(text)


def _kv_key(key: str) -> str:
    return (
        key if key and _BAD_KEY_CHARS.search(key) is None else _BAD_KEY_CHARS.sub("_", key) or "_"
    )


class StructuredFormatter(logging.Formatter):
    """Formats a record as one ``kv`` or ``json`` line (see the module docstring)."""

    def __init__(self, fmt: LogFormat = "kv") -> None:
        super().__init__()
        if fmt not in ("kv", "json"):
            raise ValueError(f"unknown log format {fmt!r} (expected kv or json)")
        self.fmt: LogFormat = fmt

    def fields(self, record: logging.LogRecord) -> list[tuple[str, object]]:
        """The line's keys and values, in order, before rendering."""
        message = record.getMessage()
        if "[parameters: " in message:
            message = _SQL_PARAMETERS.sub("[parameters hidden]", message)
        out: list[tuple[str, object]] = [
            ("ts", _timestamp(record)),
            ("level", record.levelname.lower()),
            ("logger", record.name),
            ("msg", message),
        ]
        redact = record.levelno >= logging.INFO
        scoped = _FIELDS.get()
        extra = {k: v for k, v in record.__dict__.items() if k not in _STANDARD}
        for key, value in ({**scoped, **extra} if extra else scoped).items():
            if value is None or key in _RESERVED:
                continue
            out.append((key, _REDACTED if redact and key in _SECRET_KEYS else value))
        if record.exc_info and record.exc_info[0] is not None and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            exc = record.exc_text
            if "[parameters: " in exc:
                exc = _SQL_PARAMETERS.sub("[parameters hidden]", exc)
            out.append(("exc", exc))
        if record.stack_info:
            out.append(("stack", self.formatStack(record.stack_info)))
        return out

    def format(self, record: logging.LogRecord) -> str:
        fields = self.fields(record)
        if self.fmt == "json":
            line = json.dumps(dict(fields), ensure_ascii=False, default=str)
            return line if line.isprintable() else _escape_unprintable(line)
        return " ".join(f"{_kv_key(key)}={_kv_value(value)}" for key, value in fields)


# -- handlers -------------------------------------------------------------------


class RotatingLogFile(RotatingFileHandler):
    """Size-rotated log file: ``x.log`` → ``x.log.1`` → … → ``x.log.<backups>``.

    Unlike the standard handler it decides from the file's size before the
    write (no second formatting of every line to measure it), and with
    ``backups=0`` it truncates instead of growing for ever.
    """

    def shouldRollover(self, record: logging.LogRecord) -> int:
        if self.maxBytes <= 0:
            return 0
        if self.stream is None:
            self.stream = self._open()
        return 1 if self.stream.tell() >= self.maxBytes else 0

    def doRollover(self) -> None:
        if self.backupCount > 0:
            super().doRollover()
            return
        if self.stream is not None:
            self.stream.close()
        self.mode = "w"  # truncate: there is no backup to keep
        try:
            self.stream = self._open()
        finally:
            self.mode = "a"


def configure_logging(
    level: str | int = "INFO",
    *,
    fmt: LogFormat = "kv",
    file: Path | None = None,
    max_bytes: int = 10 * 1024 * 1024,
    backups: int = 5,
    stderr: bool = True,
    stream: TextIO | None = None,
) -> list[logging.Handler]:
    """Send the root logger's records, as structured lines, to stderr and/or ``file``.

    Replaces the handlers an earlier call installed (not anyone else's, such
    as pytest's), so calling it twice does not double every line. With
    ``stderr=False`` and no file, lines still go to stderr: a process never
    logs into the void. ``stream`` stands in for stderr (tests). Raises
    OSError if the file cannot be opened (its directory is created).
    """
    formatter = StructuredFormatter(fmt)
    handlers: list[logging.Handler] = []
    if file is not None:
        file.parent.mkdir(parents=True, exist_ok=True)
        handlers.append(
            RotatingLogFile(file, maxBytes=max(0, max_bytes), backupCount=backups, encoding="utf-8")
        )
    if stderr or file is None:
        handlers.append(logging.StreamHandler(stream if stream is not None else sys.stderr))
    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, _OURS, False)]:
        root.removeHandler(old)
        old.close()
    for handler in handlers:
        handler.setFormatter(formatter)
        setattr(handler, _OURS, True)
        root.addHandler(handler)
    root.setLevel(level)
    return handlers


def configure_from_settings(settings: Settings, *, stream: TextIO | None = None) -> None:
    """``configure_logging`` with ``settings.log_level`` and the ``[log]`` section."""
    log = settings.log
    configure_logging(
        settings.log_level,
        fmt=log.format,
        file=log.file,
        max_bytes=log.max_bytes,
        backups=log.backups,
        stderr=log.stderr,
        stream=stream,
    )
