"""The progress bar: one tqdm line fed by the workers' running totals.

Shown only when asked (default: when stderr is a terminal) so CI logs keep
just the final figures.
"""

from __future__ import annotations

import importlib
import logging
import sys
import time
from typing import Any

from mpim.bench.scenarios.base import Progress

logger = logging.getLogger(__name__)

_FORMAT = "{l_bar}{bar}| {n:.0f}/{total:.0f} {unit} [{elapsed}<{remaining}{postfix}]"


class ProgressView:
    """A bar per phase; ``update`` takes the summed worker progress."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self._bar: Any = None
        self._field = ""
        self._last: tuple[float, Progress] | None = None

    def start(self, desc: str, total: float, unit: str, field: str) -> None:
        """Begin a phase whose bar follows ``field`` of Progress (or "time")."""
        self.finish()
        self._field = field
        self._last = None
        if self.enabled:
            # Imported by name: typed as Any whether or not types-tqdm is installed.
            tqdm = importlib.import_module("tqdm").tqdm
            self._bar = tqdm(
                total=total,
                desc=desc,
                unit=unit,
                file=sys.stderr,
                leave=False,
                dynamic_ncols=True,
                bar_format=_FORMAT,
            )
        self._started = time.monotonic()

    def update(self, progress: Progress) -> None:
        bar = self._bar
        if bar is None:
            return
        now = time.monotonic()
        value = now - self._started if self._field == "time" else getattr(progress, self._field)
        bar.n = min(value, bar.total) if bar.total else value
        if self._last is not None and now - self._last[0] >= 0.5:
            then, old = self._last
            span = now - then
            parts = []
            if progress.acked or progress.delivered:
                parts.append(f"ack {(progress.acked - old.acked) / span:,.0f}/s")
                parts.append(f"dlv {(progress.delivered - old.delivered) / span:,.0f}/s")
            if progress.ops:
                parts.append(f"ops {(progress.ops - old.ops) / span:,.0f}/s")
            if progress.errors:
                parts.append(f"err {progress.errors}")
            bar.set_postfix_str(" ".join(parts), refresh=False)
            self._last = (now, progress)
        elif self._last is None:
            self._last = (now, progress)
        bar.refresh()

    def finish(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
