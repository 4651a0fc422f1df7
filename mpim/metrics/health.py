"""Readiness: named checks of what a process needs, each with a deadline.

A gateway is ready when it can reach every service it calls; a service when
its store (or Redis, for presence) answers and it is registered. The same
report feeds ``/readyz`` and the gRPC health status, so both tell one story.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass

logger = logging.getLogger(__name__)

Check = Callable[[], Awaitable[None]]

CHECK_TIMEOUT_SECONDS = 2.0


@dataclass(frozen=True, slots=True)
class CheckResult:
    name: str
    ok: bool
    detail: str = ""


class Readiness:
    """Runs every check concurrently; a check passes by returning, fails by raising."""

    def __init__(self, timeout_seconds: float = CHECK_TIMEOUT_SECONDS) -> None:
        self._checks: dict[str, Check] = {}
        self._timeout = timeout_seconds

    def add(self, name: str, check: Check) -> None:
        self._checks[name] = check

    @property
    def names(self) -> list[str]:
        return list(self._checks)

    async def run(self, only: Collection[str] | None = None) -> list[CheckResult]:
        """Every check, or those named in ``only``."""
        checks = [(n, c) for n, c in self._checks.items() if only is None or n in only]
        return list(await asyncio.gather(*(self._one(n, c) for n, c in checks)))

    async def _one(self, name: str, check: Check) -> CheckResult:
        try:
            async with asyncio.timeout(self._timeout):
                await check()
        except TimeoutError:
            return CheckResult(name, False, f"no answer within {self._timeout:g}s")
        except Exception as exc:
            return CheckResult(name, False, str(exc) or type(exc).__name__)
        return CheckResult(name, True)


def render_report(results: list[CheckResult]) -> tuple[bool, bytes]:
    """``name ok`` / ``name fail: why`` lines; ready only if every check passed."""
    ready = all(r.ok for r in results)
    lines = [f"{r.name} ok" if r.ok else f"{r.name} fail: {r.detail}" for r in results]
    lines.append("ready" if ready else "not ready")
    return ready, ("\n".join(lines) + "\n").encode()
