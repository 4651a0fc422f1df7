"""Login throttling per username, with bounded memory."""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass


@dataclass(slots=True)
class _Failures:
    count: int
    locked_until: float


class LoginThrottle:
    """After ``allowed`` consecutive failures a name is locked for a back-off
    that doubles with every further failure, up to ``max_lockout``.

    Only the least recently failed ``max_entries`` names are remembered, so a
    flood of random names cannot grow memory without bound.
    """

    def __init__(
        self, *, allowed: int, lockout: float, max_lockout: float, max_entries: int
    ) -> None:
        self._allowed = allowed
        self._lockout = lockout
        self._max_lockout = max_lockout
        self._max_entries = max_entries
        self._entries: OrderedDict[str, _Failures] = OrderedDict()

    def is_locked(self, key: str, now: float) -> bool:
        entry = self._entries.get(key)
        return entry is not None and entry.locked_until > now

    def failed(self, key: str, now: float) -> None:
        entry = self._entries.pop(key, None) or _Failures(0, 0.0)
        entry.count += 1
        if entry.count >= self._allowed:
            exponent = min(entry.count - self._allowed, 30)
            entry.locked_until = now + min(self._lockout * 2**exponent, self._max_lockout)
        self._entries[key] = entry
        while len(self._entries) > self._max_entries:
            self._entries.popitem(last=False)

    def succeeded(self, key: str) -> None:
        self._entries.pop(key, None)
