"""Reading a process's ``/metrics`` back: for ``mpim status`` and the tests."""

from __future__ import annotations

import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample


def fetch(base_url: str, path: str = "/metrics", timeout: float = 3.0) -> tuple[int, str]:
    """(status, body) of a GET; blocking, so call it from a thread in async code."""
    try:
        with urllib.request.urlopen(base_url.rstrip("/") + path, timeout=timeout) as reply:
            return int(reply.status), reply.read().decode()
    except urllib.error.HTTPError as exc:
        return int(exc.code), exc.read().decode()


# (lookup kind, "hit" or "miss") -> count
LookupCounts = dict[tuple[str, str], float]


@dataclass(frozen=True)
class Scrape:
    """The samples of one exposition, summed over whatever labels are not asked for."""

    samples: tuple[Sample, ...]

    @classmethod
    def parse(cls, text: str) -> Scrape:
        return cls(tuple(s for f in text_string_to_metric_families(text) for s in f.samples))

    @classmethod
    def merge(cls, scrapes: Iterable[Scrape]) -> Scrape:
        """Several processes as one (e.g. every gateway of a cluster)."""
        return cls(tuple(s for scrape in scrapes for s in scrape.samples))

    def value(self, name: str, **labels: str) -> float:
        return sum(s.value for s in self.samples if s.name == name and _matches(s.labels, labels))

    def quantile(self, histogram: str, q: float, **labels: str) -> float | None:
        """Upper bound of the bucket holding the q-th observation (None if empty)."""
        buckets: dict[float, float] = {}
        for s in self.samples:
            if s.name == f"{histogram}_bucket" and _matches(s.labels, labels):
                bound = float(s.labels["le"])
                buckets[bound] = buckets.get(bound, 0.0) + s.value
        total = buckets.get(float("inf"), 0.0)
        if total <= 0:
            return None
        for bound in sorted(buckets):
            if buckets[bound] >= q * total:
                return bound
        return None

    def lookup_counts(self) -> LookupCounts:
        """Cache and route lookups, summed per (kind, result)."""
        counts: LookupCounts = {}
        for s in self.samples:
            if s.name == "mpim_cache_lookups_total":
                key = (s.labels.get("kind", ""), s.labels.get("result", ""))
                counts[key] = counts.get(key, 0.0) + s.value
        return counts

    def hit_ratio(self, *kinds: str) -> float | None:
        """Cache hit ratio over the given lookup kinds (all kinds if none given)."""
        return ratio_of_hits(self.lookup_counts(), lambda kind: not kinds or kind in kinds)


def ratio_of_hits(counts: LookupCounts, wanted: Callable[[str], bool]) -> float | None:
    """hits / lookups over the kinds ``wanted`` accepts; None if there were none."""
    hits = misses = 0.0
    for (kind, result), count in counts.items():
        if not wanted(kind):
            continue
        if result == "hit":
            hits += count
        else:
            misses += count
    total = hits + misses
    return hits / total if total else None


def _matches(have: Mapping[str, str], want: Mapping[str, str]) -> bool:
    return all(have.get(k) == v for k, v in want.items())
