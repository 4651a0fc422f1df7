"""Human-readable output of a run, and its JSON file."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Final, TextIO

from mpim.bench.results import RoundResult
from mpim.bench.runner import BenchResult

logger = logging.getLogger(__name__)

_PCT_KEYS: Final = ("p50", "p90", "p99", "p999", "max", "mean")
_PCT_NAMES: Final = {"p999": "p99.9"}
_RATE_METRICS: Final = (
    "acked_per_s",
    "delivered_per_s",
    "login_per_s",
    "auth_per_s",
    "register_per_s",
)
_COUNT_ORDER: Final = (
    "sent",
    "acked",
    "delivered",
    "expected",
    "late",
    "lost",
    "duplicated",
    "reordered",
    "errors",
    "disconnects",
    "throttled",
)


def _num(value: float | None, digits: int = 0) -> str:
    if value is None:
        return "n/a"
    return f"{value:,.{digits}f}"


def latency_line(summary: dict[str, float]) -> str:
    parts = [f"{_PCT_NAMES.get(k, k)} {summary[k]:.2f}" for k in _PCT_KEYS if k in summary]
    return "  ".join(parts) + " ms"


def round_line(r: RoundResult) -> str:
    """One line per round: the figures that move between repeats."""
    m = r.metrics
    parts = [f"{k.removesuffix('_per_s')} {_num(m[k])}/s" for k in _RATE_METRICS if m.get(k)]
    for name, lat in r.latency_ms.items():
        if lat.get("count"):
            parts.append(f"{name} p99 {lat['p99']:.2f} ms")
    if m.get("rss_bytes_per_connection") is not None:
        parts.append(f"{_num(m['rss_bytes_per_connection'])} B/conn")
    problems = r.problems()
    if problems:
        parts.append("PROBLEMS " + " ".join(problems))
    return ", ".join(parts)


def print_report(result: BenchResult, out: TextIO) -> None:
    print(f"mpim bench {result.scenario} → {result.target}  (run {result.run_id})", file=out)
    print(f"  setup {result.setup_seconds:.1f} s", file=out)
    for no, r in enumerate(result.rounds, start=1):
        print(f"  round {no} [{r.label}]: {round_line(r)}", file=out)
    repeats = max(
        (sum(1 for r in result.rounds if r.label == s.label) for s in result.summary), default=0
    )
    for s in result.summary:
        title = f"median of {repeats}" if repeats > 1 else "result"
        print(f"{s.label} ({title}):", file=out)
        for key, value in s.metrics.items():
            if value is not None:
                digits = 2 if abs(value) < 100 else 0
                print(f"  {key:<28} {_num(value, digits)}", file=out)
        for name, lat in s.latency_ms.items():
            if lat.get("count"):
                print(f"  {name + ' latency':<28} {latency_line(lat)}", file=out)
        keys = [k for k in _COUNT_ORDER if k in s.counts] + [
            k for k in s.counts if k not in _COUNT_ORDER
        ]
        print(
            "  counts (all rounds)          " + "  ".join(f"{k} {s.counts[k]:,}" for k in keys),
            file=out,
        )
        for sample in s.error_samples:
            print(f"  error: {sample}", file=out)
    problems = result.problems()
    print("RESULT: " + ("FAIL — " + "; ".join(problems) if problems else "OK"), file=out)


def write_json(result: BenchResult, path: Path, extra: dict[str, object] | None = None) -> None:
    data = result.to_json()
    if extra:
        data.update(extra)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n")
    logger.info("wrote %s", path)
