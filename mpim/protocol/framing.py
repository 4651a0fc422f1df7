"""Split a byte stream into protocol lines, with a hard bound on line length."""

from __future__ import annotations

from typing import Final

DEFAULT_MAX_LINE_BYTES: Final = 64 * 1024


class LineSplitter:
    """Accumulates bytes and returns complete lines without their terminator.

    ``\\r\\n`` and ``\\n`` both end a line. Memory is bounded: once a line (or
    an unterminated tail) exceeds ``max_line`` the splitter sets ``overflow``
    and returns only the lines before it; the caller must then close.
    """

    __slots__ = ("_buf", "_max", "overflow")

    def __init__(self, max_line: int = DEFAULT_MAX_LINE_BYTES) -> None:
        self._buf = bytearray()
        self._max = max_line
        self.overflow = False

    def feed(self, data: bytes) -> list[bytes]:
        if self.overflow:
            return []
        buf = self._buf
        buf += data
        if b"\n" not in data:
            if len(buf) > self._max:
                self._overflowed()
            return []
        lines = buf.split(b"\n")
        tail = lines.pop()
        self._buf = bytearray(tail)
        out: list[bytes] = []
        for line in lines:
            if line.endswith(b"\r"):
                line = line[:-1]
            if len(line) > self._max:
                self._overflowed()
                return out
            out.append(bytes(line))
        if len(tail) > self._max:
            self._overflowed()
        return out

    def _overflowed(self) -> None:
        self.overflow = True
        self._buf = bytearray()

    @property
    def pending(self) -> int:
        """Bytes of an unterminated line held so far."""
        return len(self._buf)
