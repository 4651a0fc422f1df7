"""Profile the server under load with py-spy and boil the samples down to a table.

py-spy's ``raw`` output is one line per distinct stack, ``frame;frame;… count``.
Two views answer "what is in the way": *self* time (the leaf frame, where CPU
is actually spent) and *inclusive* time of the project's own functions (which
of our code paths the time belongs to).
"""

from __future__ import annotations

import logging
import re
import shutil
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

logger = logging.getLogger(__name__)

_FRAME: Final = re.compile(r"^(?P<func>.+?) \((?P<file>[^()]*?)(?::\d+)?\)$")
PROJECT_MARKER: Final = "mpim/"
#: Frames on every stack of the main thread: true but useless in a top list.
_ENTRY_FILES: Final = ("mpim/__main__.py", "mpim/cli.py")


@dataclass
class ProfileSummary:
    """Top frames by share of samples (percent of all samples)."""

    samples: int = 0
    self_top: list[tuple[str, float]] = field(default_factory=list)
    inclusive_top: list[tuple[str, float]] = field(default_factory=list)
    threads: list[tuple[str, float]] = field(default_factory=list)


def frame_name(frame: str) -> str:
    """``func (path/file.py:123)`` → ``func (path/file.py)`` (line numbers merged)."""
    match = _FRAME.match(frame.strip())
    if match is None:
        return frame.strip()
    path = match.group("file")
    for anchor in ("site-packages/", "/lib/python3"):
        if anchor in path:
            path = path.split(anchor, 1)[1]
    return f"{match.group('func')} ({path})"


def summarize_raw(text: str, top: int = 15) -> ProfileSummary:
    """Self and inclusive shares from py-spy ``--format raw`` output."""
    self_counts: Counter[str] = Counter()
    incl_counts: Counter[str] = Counter()
    thread_counts: Counter[str] = Counter()
    total = 0
    for line in text.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [frame_name(f) for f in stack.split(";") if f]
        if not frames:
            continue
        total += count
        self_counts[frames[-1]] += count
        thread_counts[_thread_of(frames)] += count
        for name in set(frames):
            if PROJECT_MARKER in name and not any(f in name for f in _ENTRY_FILES):
                incl_counts[name] += count
    if not total:
        return ProfileSummary()

    def share(counter: Counter[str]) -> list[tuple[str, float]]:
        return [(name, 100.0 * n / total) for name, n in counter.most_common(top)]

    return ProfileSummary(total, share(self_counts), share(incl_counts), share(thread_counts))


def _thread_of(frames: list[str]) -> str:
    if frames[0].startswith("Thread._bootstrap"):
        for name in frames[1:]:
            if PROJECT_MARKER in name:
                return f"thread: {name}"
        return "thread: other"
    return "event loop (main thread)"


def record(pid: int, seconds: float, out: Path) -> bool:
    """Run ``py-spy record`` on ``pid`` (non-blocking, so the figures stay honest)."""
    exe = Path(sys.executable).with_name("py-spy")
    py_spy = str(exe) if exe.exists() else shutil.which("py-spy")
    if py_spy is None:
        logger.warning("py-spy not found; no profile")
        return False
    argv = [py_spy, "record", "--nonblocking", "-f", "raw", "-o", str(out)]
    argv += ["-d", str(max(1, int(seconds))), "-p", str(pid)]
    try:
        subprocess.run(argv, check=True, capture_output=True, timeout=seconds + 30)
    except (subprocess.SubprocessError, OSError) as exc:
        logger.warning("py-spy failed: %s", exc)
        return False
    return out.exists()
