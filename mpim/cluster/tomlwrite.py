"""Write a parsed TOML document back as TOML: just enough for a settings file.

Why this exists: the cluster file holds the ``[cluster]`` process list next
to ordinary settings, and ``Settings`` forbids unknown top-level keys. The
tool strips ``[cluster]`` and hands each process the rest as a file of its
own. The standard library reads TOML but cannot write it, and a full writer
is not worth a dependency: settings are tables of strings, numbers,
booleans, dates and arrays of those. ``dumps`` refuses anything else, and
its callers check the output parses back to the same data.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import re
from collections.abc import Mapping
from typing import Any, Final

_BARE_KEY: Final = re.compile(r"^[A-Za-z0-9_-]+$")


def dumps(document: Mapping[str, Any]) -> str:
    """``document`` as TOML text: scalars first, then one ``[table]`` per nested mapping."""
    lines: list[str] = []
    _table(document, [], lines)
    return "\n".join(lines).strip("\n") + "\n"


def _table(table: Mapping[str, Any], path: list[str], lines: list[str]) -> None:
    scalars = [(k, v) for k, v in table.items() if not isinstance(v, Mapping)]
    tables = [(k, v) for k, v in table.items() if isinstance(v, Mapping)]
    if path and (scalars or not tables):
        lines.append("")
        lines.append("[" + ".".join(_key(p) for p in path) + "]")
    for key, value in scalars:
        lines.append(f"{_key(key)} = {_value(value, [*path, key])}")
    for key, value in tables:
        _table(value, [*path, key], lines)


def _key(key: str) -> str:
    return key if _BARE_KEY.match(key) else _string(key)


def _string(text: str) -> str:
    # JSON's escapes are a subset of TOML's basic-string escapes; TOML also
    # wants DEL escaped, which JSON leaves raw.
    return json.dumps(text, ensure_ascii=False).replace("\x7f", "\\u007f")


def _value(value: Any, path: list[str]) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        return _string(value)
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_value(item, path) for item in value) + "]"
    raise TypeError(f"{'.'.join(path)}: cannot write a {type(value).__name__} as TOML")
