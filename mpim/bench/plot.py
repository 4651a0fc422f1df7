"""Charts: latency against throughput for rate sweeps, and side-by-side bars.

matplotlib is imported lazily (and with the Agg backend) because it is slow to
import and only needed when a PNG is asked for.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class CurvePoint:
    """One sweep point: offered and achieved rate, and latency percentiles (ms)."""

    offered: float | None
    throughput: float
    latency_ms: Mapping[str, float]


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_latency_curve(
    series: Mapping[str, Sequence[CurvePoint]],
    path: Path,
    title: str,
    percentiles: Sequence[str] = ("p50", "p99"),
    target: tuple[float, float] | None = None,
) -> None:
    """Latency (log scale) against delivered msg/s, one line per series and percentile."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8, 5), dpi=110)
    styles = ["-", "--", ":", "-."]
    for (name, points), color in zip(
        series.items(), ("tab:blue", "tab:orange", "tab:green", "tab:red"), strict=False
    ):
        for pct, style in zip(percentiles, styles, strict=False):
            xs = [p.throughput for p in points if pct in p.latency_ms]
            ys = [max(p.latency_ms[pct], 0.001) for p in points if pct in p.latency_ms]
            ax.plot(xs, ys, style, marker="o", color=color, label=f"{name} {pct}")
            if pct == percentiles[-1]:
                offered = [p.offered for p in points if pct in p.latency_ms]
                for x, y, rate in zip(xs, ys, offered, strict=True):
                    if rate:
                        ax.annotate(
                            f"{rate / 1000:g}k",
                            (x, y),
                            textcoords="offset points",
                            xytext=(4, 4),
                            fontsize="x-small",
                            color=color,
                        )
    if target is not None:
        ax.axvline(target[0], color="grey", linewidth=0.8)
        ax.axhline(target[1], color="grey", linewidth=0.8)
    ax.set_yscale("log")
    ax.set_xlabel("delivered messages/s")
    ax.set_ylabel("end-to-end latency (ms)")
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize="small")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    logger.info("wrote %s", path)


def plot_bars(
    groups: Mapping[str, Mapping[str, float | None]],
    path: Path,
    title: str,
    ylabel: str,
) -> None:
    """Bars per metric (x) for each series (colour): e.g. MPIM vs relay."""
    plt = _pyplot()
    metrics = list(dict.fromkeys(k for values in groups.values() for k in values))
    fig, ax = plt.subplots(figsize=(8, 4.5), dpi=110)
    width = 0.8 / max(len(groups), 1)
    for i, (name, values) in enumerate(groups.items()):
        xs = [j + i * width for j in range(len(metrics))]
        ys = [values.get(m) or 0.0 for m in metrics]
        bars = ax.bar(xs, ys, width, label=name)
        ax.bar_label(bars, labels=[f"{y:,.0f}" for y in ys], fontsize="x-small")
    ax.set_xticks([j + width * (len(groups) - 1) / 2 for j in range(len(metrics))], metrics)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(fontsize="small")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    logger.info("wrote %s", path)


def curve_from_summary(
    summary: Sequence[Mapping[str, Any]], latency: str = "e2e"
) -> list[CurvePoint]:
    """Sweep points from a result JSON's ``summary`` list."""
    points = []
    for entry in summary:
        metrics = entry["metrics"]
        rate = metrics.get("delivered_per_s")
        if rate is None:
            continue
        points.append(
            CurvePoint(
                metrics.get("offered_rate"), float(rate), entry["latency_ms"].get(latency, {})
            )
        )
    return points
