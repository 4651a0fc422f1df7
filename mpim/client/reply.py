"""The shape of one server reply, shared by the connection and the display.

Kept apart from ``connection`` so pure code (display, tests) can use it
without importing asyncio machinery.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Final

logger = logging.getLogger(__name__)

OK_PREFIX: Final = "+OK"
ERR_PREFIX: Final = "-ERR"


@dataclass(frozen=True, slots=True)
class Reply:
    """A complete reply: message lines (PULL/SYNC/HISTORY only) and the status line."""

    lines: list[str]
    status: str

    @property
    def ok(self) -> bool:
        return self.status.startswith(OK_PREFIX)

    @property
    def detail(self) -> str:
        """The status text after ``+OK`` / ``-ERR``, e.g. ``"no such user"``."""
        for prefix in (OK_PREFIX, ERR_PREFIX):
            if self.status.startswith(prefix):
                return self.status[len(prefix) :].strip()
        return self.status


def parse_kv(status: str) -> dict[str, str]:
    """``"+OK uid=5 token=abc"`` -> ``{"uid": "5", "token": "abc"}``.

    Words without ``=`` (the ``+OK`` itself, ``sync_done``) are skipped; a later
    duplicate key wins. Values never contain spaces in this protocol.
    """
    return dict(word.split("=", 1) for word in status.split(" ") if "=" in word)


def is_status_line(line: str) -> bool:
    """Status lines start with ``+`` or ``-``; pushed/message lines never do."""
    return line[:1] in ("+", "-")
