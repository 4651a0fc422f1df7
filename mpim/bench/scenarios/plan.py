"""The parent half shared by the messaging scenarios: rounds, quotas, merging, figures."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from mpim.bench.ranges import RangeSet
from mpim.bench.results import Partial, RoundResult
from mpim.bench.scenarios.base import Pump, Samples, SetupInfo
from mpim.bench.spec import CommonSpec, RoundSpec, split_evenly


class MessagingPlan:
    """Rounds are ``--repeat`` runs of each rate (or of the closed loop)."""

    name = "messaging"

    def __init__(self, common: CommonSpec, senders: int, rates: tuple[float, ...], window: int):
        self.common = common
        self.sender_count = senders
        self.rates = rates
        self.window = window
        self.sender_uids: tuple[int, ...] = ()

    def prepare(self) -> Any:
        return None

    def rounds(self) -> Sequence[tuple[str, float | None]]:
        points: list[tuple[str, float | None]] = (
            [(f"{rate:g} msg/s", rate) for rate in self.rates]
            if self.rates
            else [(f"closed loop, window {self.window}", None)]
        )
        return [point for point in points for _ in range(self.common.repeat)]

    def set_setup(self, infos: Sequence[SetupInfo]) -> None:
        uids: dict[int, int] = {}
        for info in infos:
            uids.update(info.sender_uids)
        self.sender_uids = tuple(uids[i] for i in sorted(uids))

    def round_spec(self, round_no: int, label: str, rate: float | None, t0_ns: int) -> RoundSpec:
        quotas: dict[int, int] = {}
        if self.common.messages is not None:
            shares = split_evenly(self.common.messages, self.sender_count)
            quotas = dict(enumerate(shares))
        return RoundSpec(
            round_no=round_no,
            label=label,
            t0_ns=t0_ns,
            warmup_ns=int(self.common.warmup * 1e9),
            duration_ns=int(self.common.duration * 1e9),
            rate=rate,
            quotas=quotas,
            sender_uids=self.sender_uids,
        )

    def round_progress(self, spec: RoundSpec) -> tuple[float, str, str]:
        if spec.quotas:
            return float(sum(spec.quotas.values())), "msg", "acked"
        return (spec.warmup_ns + spec.duration_ns) / 1e9, "s", "time"

    def expectation(self, reports: Sequence[Any]) -> dict[int, RangeSet]:
        merged: dict[int, RangeSet] = {}
        for report in reports:
            for uid, acked in report.items():
                merged.setdefault(uid, RangeSet()).update(acked)
        return merged

    def between(self, pump: Pump, spec: RoundSpec) -> None:
        return None

    def result(self, spec: RoundSpec, merged: Partial, samples: Samples) -> RoundResult:
        c = merged.counts
        start = spec.measure_start_ns
        stop = spec.stop_ns
        ack_end = stop if stop is not None else merged.marks.get("last_ack_ns", 0)
        dlv_end = stop if stop is not None else merged.marks.get("last_delivery_ns", 0)
        ack_window = max(ack_end - start, 0) / 1e9
        dlv_window = max(dlv_end - start, 0) / 1e9
        counts = {
            key: int(c[key])
            for key in (
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
        }
        wall = max((stop or ack_end) - spec.t0_ns, 1) / 1e9
        mb = _mb
        metrics: dict[str, float | None] = {
            "offered_rate": spec.rate,
            "acked_per_s": c["window_acked"] / ack_window if ack_window > 0 else None,
            "delivered_per_s": c["window_delivered"] / dlv_window if dlv_window > 0 else None,
            "server_rss_mb_before": mb(samples.rss_at_or_before(spec.t0_ns)),
            "server_rss_mb_peak": mb(samples.peak_rss()),
            "server_cpu_pct": samples.cpu_percent(start, stop or ack_end),
            "tool_cpu_pct": 100.0 * merged.cpu_seconds / wall,
        }
        latency: dict[str, dict[str, float]] = {
            name: merged.hists[name].summary_ms() for name in ("ack", "e2e") if name in merged.hists
        }
        return RoundResult(spec.label, counts, metrics, latency, list(merged.error_samples))

    def config(self) -> dict[str, Any]:
        return {}


def _mb(kb: int | None) -> float | None:
    return None if kb is None else kb / 1024.0
