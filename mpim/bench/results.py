"""What a round measured: per-worker partials, their merge, and medians of rounds.

Workers report a ``Partial`` — plain counters, latency histograms and a few
timestamps — so the parent can add them up without knowing which scenario
produced them. A scenario then turns the merged partial into a ``RoundResult``:
``counts`` (exact, summed over rounds) and ``metrics`` (rates, latencies, RSS;
medians over rounds).
"""

from __future__ import annotations

import statistics
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from mpim.bench.histogram import Histogram

#: Counters that mean the server broke a promise or the run went wrong.
PROBLEM_COUNTS: Final = ("lost", "duplicated", "reordered", "errors")
MAX_ERROR_SAMPLES: Final = 10


@dataclass
class Partial:
    """One worker's share of one round; every field merges by a fixed rule."""

    counts: Counter[str] = field(default_factory=Counter)
    hists: dict[str, Histogram] = field(default_factory=dict)
    #: Event times in ns; merged by taking the latest.
    marks: dict[str, int] = field(default_factory=dict)
    error_samples: list[str] = field(default_factory=list)
    cpu_seconds: float = 0.0

    def hist(self, name: str) -> Histogram:
        return self.hists.setdefault(name, Histogram())

    def note_error(self, text: str) -> None:
        self.counts["errors"] += 1
        if len(self.error_samples) < MAX_ERROR_SAMPLES and text not in self.error_samples:
            self.error_samples.append(text)

    def mark(self, name: str, ns: int) -> None:
        self.marks[name] = max(self.marks.get(name, 0), ns)


def merge_partials(partials: Iterable[Partial]) -> Partial:
    """Add counters, merge histograms, keep the latest marks and a few error texts."""
    out = Partial()
    for part in partials:
        out.counts.update(part.counts)
        for name, hist in part.hists.items():
            out.hist(name).merge(hist)
        for name, ns in part.marks.items():
            out.mark(name, ns)
        for text in part.error_samples:
            if len(out.error_samples) < MAX_ERROR_SAMPLES and text not in out.error_samples:
                out.error_samples.append(text)
        out.cpu_seconds += part.cpu_seconds
    return out


@dataclass
class RoundResult:
    """One round: a label (e.g. the offered rate), exact counts and measured metrics."""

    label: str
    counts: dict[str, int]
    metrics: dict[str, float | None]
    latency_ms: dict[str, dict[str, float]] = field(default_factory=dict)
    error_samples: list[str] = field(default_factory=list)

    def problems(self) -> list[str]:
        return [f"{name}={self.counts[name]}" for name in PROBLEM_COUNTS if self.counts.get(name)]

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> RoundResult:
        return cls(
            data["label"],
            dict(data["counts"]),
            dict(data["metrics"]),
            dict(data.get("latency_ms", {})),
            list(data.get("error_samples", [])),
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "counts": self.counts,
            "metrics": self.metrics,
            "latency_ms": self.latency_ms,
            "error_samples": self.error_samples,
        }


def _median(values: Sequence[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def summarize(rounds: Sequence[RoundResult]) -> RoundResult:
    """Medians of metrics and latency percentiles; sums of counts; all error texts."""
    if not rounds:
        raise ValueError("no rounds to summarize")
    counts: Counter[str] = Counter()
    for r in rounds:
        counts.update(r.counts)
    metric_keys = dict.fromkeys(k for r in rounds for k in r.metrics)
    metrics = {k: _median([r.metrics.get(k) for r in rounds]) for k in metric_keys}
    latency: dict[str, dict[str, float]] = {}
    for name in dict.fromkeys(n for r in rounds for n in r.latency_ms):
        keys = dict.fromkeys(k for r in rounds for k in r.latency_ms.get(name, {}))
        latency[name] = {}
        for key in keys:
            value = _median([r.latency_ms[name].get(key) for r in rounds if name in r.latency_ms])
            if value is not None:
                latency[name][key] = value
    samples: list[str] = []
    for r in rounds:
        samples.extend(s for s in r.error_samples if s not in samples)
    return RoundResult(rounds[0].label, dict(counts), metrics, latency, samples[:MAX_ERROR_SAMPLES])


def summarize_by_label(rounds: Sequence[RoundResult]) -> list[RoundResult]:
    """One summary per distinct label, in first-seen order (a rate sweep's points)."""
    labels = dict.fromkeys(r.label for r in rounds)
    return [summarize([r for r in rounds if r.label == label]) for label in labels]
