"""Reading structured log lines back, written independently of mpim/logs.py.

A test that parsed with the writer's own code would pass even if both were
wrong the same way; this follows the documented format only: ``key=value``
pairs separated by one space, a value either bare (no space, ``"``, ``=``
or ``\\``) or a JSON string literal; or one JSON object per line.
"""

from __future__ import annotations

import json
import re
from typing import Any, Final

_PAIR: Final = re.compile(r'([A-Za-z0-9_.\-]+)=("(?:[^"\\]|\\.)*"|[^\s"=\\]+)(?: |$)')
REQUIRED: Final = ("ts", "level", "logger", "msg")
TIMESTAMP: Final = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


def parse_kv(line: str) -> dict[str, str]:
    """The fields of one ``kv`` line; ValueError if it is not one."""
    if "\n" in line or "\r" in line:
        raise ValueError(f"not one line: {line!r}")
    fields: dict[str, str] = {}
    pos = 0
    while pos < len(line):
        match = _PAIR.match(line, pos)
        if match is None:
            raise ValueError(f"not key=value at column {pos}: {line!r}")
        key, raw = match.groups()
        if key in fields:
            raise ValueError(f"key {key!r} twice: {line!r}")
        fields[key] = json.loads(raw) if raw.startswith('"') else raw
        pos = match.end()
    return _checked(fields, line)


def parse_json(line: str) -> dict[str, Any]:
    """The fields of one ``json`` line; ValueError if it is not one."""
    if "\n" in line or "\r" in line:
        raise ValueError(f"not one line: {line!r}")
    fields = json.loads(line)
    if not isinstance(fields, dict):
        raise ValueError(f"not a JSON object: {line!r}")
    return _checked(fields, line)


def parse(line: str, fmt: str = "kv") -> dict[str, Any]:
    return parse_json(line) if fmt == "json" else dict(parse_kv(line))


def _checked(fields: dict[str, Any], line: str) -> dict[str, Any]:
    if list(fields)[: len(REQUIRED)] != list(REQUIRED):
        raise ValueError(f"does not start with {', '.join(REQUIRED)}: {line!r}")
    if not TIMESTAMP.match(str(fields["ts"])):
        raise ValueError(f"bad ts: {line!r}")
    return fields
