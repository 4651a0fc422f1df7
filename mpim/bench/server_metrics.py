"""What the server itself counted during a run, read from its ``/metrics``.

``--metrics-url`` (repeatable: every gateway and service of a cluster) is
scraped before set-up and after the last round; the figures are the
differences, so earlier traffic on the same server does not count. This is
where the cache hit ratio of user and route lookups comes from.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import TextIO

from mpim.metrics.scrape import Scrape, fetch, ratio_of_hits

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


def _is_user(kind: str) -> bool:
    return kind.startswith("user:")


def _is_route(kind: str) -> bool:
    return kind in ROUTE_KINDS


def figures(before: Scrape, after: Scrape) -> dict[str, float | None]:
    """Differences over the run of the figures the benchmark doc reports."""

    def delta(name: str, **labels: str) -> float:
        return after.value(name, **labels) - before.value(name, **labels)

    start, end = before.lookup_counts(), after.lookup_counts()
    lookups = {k: end[k] - start.get(k, 0.0) for k in end}

    def ratio(wanted: Callable[[str], bool]) -> float | None:
        found = ratio_of_hits(lookups, wanted)
        return None if found is None else round(found, 4)

    commits = delta("mpim_store_batch_size_count")
    return {
        "user_lookups": sum(c for (k, _), c in lookups.items() if _is_user(k)),
        "user_hit_ratio": ratio(_is_user),
        "route_lookups": sum(c for (k, _), c in lookups.items() if _is_route(k)),
        "route_hit_ratio": ratio(_is_route),
        "user_and_route_hit_ratio": ratio(lambda k: _is_user(k) or _is_route(k)),
        "messages_sent": delta("mpim_gateway_messages_total", event="sent"),
        "messages_delivered": delta("mpim_gateway_messages_total", event="delivered"),
        "store_commits": commits,
        "store_mean_batch": (
            round(delta("mpim_store_batch_size_sum") / commits, 1) if commits else None
        ),
        "rpc_calls": delta("mpim_rpc_client_latency_seconds_count"),
    }


#: A commit this slow holds every message behind it for as long, which is
#: already the embedded p99 target (issue 4); at 10,000 msg/s a few such
#: commits in a 4 s round decide the round's p99.
SLOW_COMMIT_SECONDS = 0.02


def round_figures(before: Scrape, after: Scrape) -> dict[str, float | None]:
    """What the store did during one round: its commits, those slower than
    ``SLOW_COMMIT_SECONDS``, and those whose writer was blocked (on the disk or
    the database server, not waiting for a core) for that long."""

    def delta(name: str) -> float:
        return after.value(name) - before.value(name)

    def slower(histogram: str) -> float:
        within = _in_bucket(after, histogram) - _in_bucket(before, histogram)
        return delta(f"{histogram}_count") - within

    return {
        "store_commits": delta("mpim_store_commit_seconds_count"),
        "store_slow_commits": slower("mpim_store_commit_seconds"),
        "store_blocked_commits": slower("mpim_store_commit_blocked_seconds"),
    }


def _in_bucket(scrape: Scrape, histogram: str) -> float:
    """Observations of ``histogram`` up to ``SLOW_COMMIT_SECONDS`` (a bucket bound)."""
    return sum(
        s.value
        for s in scrape.samples
        if s.name == f"{histogram}_bucket" and float(s.labels["le"]) == SLOW_COMMIT_SECONDS
    )


def print_server_figures(server: dict[str, float | None], out: TextIO) -> None:
    print("server figures (from its /metrics, over the run):", file=out)
    for key, value in server.items():
        shown = "n/a" if value is None else f"{value:,.4g}" if value < 1 else f"{value:,.0f}"
        print(f"  {key:<28} {shown}", file=out)
