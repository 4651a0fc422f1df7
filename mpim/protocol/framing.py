"""Split a byte stream into protocol lines, with a hard bound on line length."""

from __future__ import annotations

from typing import Final

DEFAULT_MAX_LINE_BYTES: Final = 64 * 1024


class LineSplitter:
    """Accumulates bytes and returns complete lines without their terminator.

    ``\\r\\n`` and ``\\n`` both end a line. Memory is bounded: once a line (or
    an unterminated tail) exceeds ``max_line`` the splitter sets ``overflow``
    and returns only the lines before it; the caller must then close.

    Every connection has one and most hold no partial line, so the buffer
    exists only while a partial line does.
    """

    __slots__ = ("_buf", "_max", "overflow")

    def __init__(self, max_line: int = DEFAULT_MAX_LINE_BYTES) -> None:
        self._buf: bytearray | None = None
        self._max = max_line
        self.overflow = False

    def feed(self, data: bytes) -> list[bytes]:
        if self.overflow:
            return []
        buf = self._buf
        if b"\n" not in data:
            if not data:
                return []
            if buf is None:
                buf = self._buf = bytearray(data)
            else:
                buf += data
            if len(buf) > self._max:
                self._overflowed()
            return []
        # Whole lines split straight from ``data`` when nothing was pending.
        chunk: bytes | bytearray = data
        if buf is not None:
            buf += data
            chunk = buf
        lines = chunk.split(b"\n")
        tail = lines.pop()
        self._buf = bytearray(tail) if tail else None
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
        self._buf = None

    @property
    def pending(self) -> int:
        """Bytes of an unterminated line held so far."""
        return len(self._buf) if self._buf is not None else 0
