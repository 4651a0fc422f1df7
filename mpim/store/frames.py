"""Length-prefixed pickles between the server and its SQLite writer process.

Both ends are this codebase, started together from the same interpreter, so
pickle is safe here and carries calls (a function by name, plain arguments)
and outcomes (results and exceptions) without a schema of its own.
"""

from __future__ import annotations

import pickle
import struct
from typing import Any, Final

_HEADER: Final = struct.Struct("!I")
MAX_FRAME: Final = 1 << 31  # bytes; a batch of 1,000 16 KiB texts is 16 MiB
STOP: Final = b""  # to the writer: finish what is queued, then exit
READY: Final = b""  # from the writer, once: the database is open


def encode(obj: Any) -> bytes:
    """One frame holding ``obj``; raises for what pickle cannot carry (a closure)."""
    return frame(pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL))


def frame(payload: bytes) -> bytes:
    if len(payload) >= MAX_FRAME:
        raise ValueError(f"frame of {len(payload)} bytes is too large")
    return _HEADER.pack(len(payload)) + payload


class FrameBuffer:
    """Bytes in, whole payloads out; a partial frame waits for the rest."""

    def __init__(self) -> None:
        self._data = bytearray()
        self._start = 0

    def feed(self, data: bytes) -> None:
        self._data += data

    def next(self) -> bytes | None:
        """The next whole payload, or None until more bytes arrive."""
        available = len(self._data) - self._start
        if available < _HEADER.size:
            self._compact()
            return None
        (size,) = _HEADER.unpack_from(self._data, self._start)
        end = self._start + _HEADER.size + size
        if end > len(self._data):
            self._compact()
            return None
        payload = bytes(self._data[self._start + _HEADER.size : end])
        self._start = end
        return payload

    def _compact(self) -> None:
        if self._start:
            del self._data[: self._start]
            self._start = 0
