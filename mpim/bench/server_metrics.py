"""What the server itself counted during a run, read from its ``/metrics``.

``--metrics-url`` (repeatable: every gateway and service of a cluster) is
scraped before set-up and after the last round; the figures are the
differences, so earlier traffic on the same server does not count. This is
where the cache hit ratio of user and route lookups comes from.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TextIO

from mpim.metrics.scrape import Scrape, fetch

logger = logging.getLogger(__name__)

ROUTE_KINDS = ("presence:route",)


def scrape_all(urls: Sequence[str]) -> Scrape | None:
    """Every URL's /metrics merged; None (and a warning) if one cannot be read."""
    pages = []
    for url in urls:
        try:
            status, body = fetch(url)
        except OSError as exc:
            logger.warning("cannot read %s/metrics: %s", url, exc)
            return None
        if status != 200:
            logger.warning("%s/metrics answered %d", url, status)
            return None
        pages.append(Scrape.parse(body))
    return Scrape.merge(pages)


def _lookups(scrape: Scrape) -> dict[tuple[str, str], float]:
    totals: dict[tuple[str, str], float] = {}
    for s in scrape.samples:
        if s.name == "mpim_cache_lookups_total":
            key = (s.labels.get("kind", ""), s.labels.get("result", ""))
            totals[key] = totals.get(key, 0.0) + s.value
    return totals


def _ratio(lookups: dict[tuple[str, str], float], want: tuple[str, ...] | None) -> float | None:
    hits = misses = 0.0
    for (kind, result), count in lookups.items():
        if want is None and not (kind.startswith("user:") or kind in ROUTE_KINDS):
            continue
        if (
            want is not None
            and kind not in want
            and not any(w.endswith(":") and kind.startswith(w) for w in want)
        ):
            continue
        if result == "hit":
            hits += count
        else:
            misses += count
    total = hits + misses
    return round(hits / total, 4) if total else None


def figures(before: Scrape, after: Scrape) -> dict[str, float | None]:
    """Differences over the run of the figures the benchmark doc reports."""

    def delta(name: str, **labels: str) -> float:
        return after.value(name, **labels) - before.value(name, **labels)

    start, end = _lookups(before), _lookups(after)
    lookups = {k: end.get(k, 0.0) - start.get(k, 0.0) for k in end}
    commits = delta("mpim_store_batch_size_count")
    return {
        "user_lookups": sum(c for (k, _), c in lookups.items() if k.startswith("user:")),
        "user_hit_ratio": _ratio(lookups, ("user:",)),
        "route_lookups": sum(c for (k, _), c in lookups.items() if k in ROUTE_KINDS),
        "route_hit_ratio": _ratio(lookups, ROUTE_KINDS),
        "user_and_route_hit_ratio": _ratio(lookups, None),
        "messages_sent": delta("mpim_gateway_messages_total", event="sent"),
        "messages_delivered": delta("mpim_gateway_messages_total", event="delivered"),
        "store_commits": commits,
        "store_mean_batch": (
            round(delta("mpim_store_batch_size_sum") / commits, 1) if commits else None
        ),
        "rpc_calls": delta("mpim_rpc_client_latency_seconds_count"),
    }


def print_server_figures(server: dict[str, float | None], out: TextIO) -> None:
    print("server figures (from its /metrics, over the run):", file=out)
    for key, value in server.items():
        shown = "n/a" if value is None else f"{value:,.4g}" if value < 1 else f"{value:,.0f}"
        print(f"  {key:<28} {shown}", file=out)
