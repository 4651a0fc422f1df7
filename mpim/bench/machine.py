"""The machine a result was measured on, as the benchmark doc states it."""

from __future__ import annotations

import os
import platform
import sys
from importlib import metadata
from pathlib import Path
from typing import Any


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _ram_gib() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) / (1024 * 1024)
    except OSError:
        pass
    return None


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def machine_info() -> dict[str, Any]:
    """nproc, CPU model, RAM, kernel, Python and the versions that shape the figures."""
    return {
        "nproc": os.cpu_count(),
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "cpu_model": _cpu_model(),
        "ram_gib": round(_ram_gib() or 0.0, 1),
        "kernel": platform.release(),
        "python": sys.version.split()[0],
        "uvloop": _version("uvloop"),
        "sqlalchemy": _version("sqlalchemy"),
        "argon2_cffi": _version("argon2-cffi"),
    }
