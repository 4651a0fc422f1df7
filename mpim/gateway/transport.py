"""What a session needs from its transport (TCP now, WebSocket later)."""

from __future__ import annotations

from typing import Protocol


class Transport(Protocol):
    """A byte pipe to one client; writes never block."""

    # "tcp" or "websocket": a metrics label.
    kind: str

    def write(self, data: bytes) -> None: ...

    def close(self) -> None: ...

    def abort(self) -> None: ...

    def pause_reading(self) -> None: ...

    def resume_reading(self) -> None: ...

    def output_buffer_size(self) -> int: ...

    @property
    def peer(self) -> str: ...
