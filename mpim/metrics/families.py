"""The Prometheus metrics of each part of MPIM, one class per part.

Every process builds one ``CollectorRegistry`` and hands it to the parts it
runs, so a gateway process exports gateway metrics, a message-service
process store and RPC metrics, and ``mpim up`` all of them. Nothing is
registered globally: several nodes in one process (the test cluster) keep
separate figures.

Hot paths use pre-bound label children (``_child``), so counting costs one
locked add, not a label lookup.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics

from mpim.metrics.hot import LoopHistogram

# The *_created series double the output and nothing here reads them.
disable_created_metrics()  # type: ignore[no-untyped-call]

# Push and RPC latencies are milliseconds to seconds; store commits a few ms.
_LATENCY_BUCKETS = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.02,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)
_BATCH_BUCKETS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000)


Family = TypeVar("Family", Counter, Histogram)


def _child(cache: dict[tuple[str, ...], Family], family: Family, *labels: str) -> Family:
    """``family.labels(*labels)``, resolved once per label set and kept."""
    child = cache.get(labels)
    if child is None:
        child = cache[labels] = family.labels(*labels)
    return child


def new_registry() -> CollectorRegistry:
    """One per process (or per node of the in-process test cluster)."""
    return CollectorRegistry(auto_describe=True)


def _registry(registry: CollectorRegistry | None) -> CollectorRegistry:
    """A private registry when the caller exports nothing (unit tests, tools)."""
    return registry if registry is not None else new_registry()


class GatewayMetrics:
    """Connections, commands, logins and message flow at one gateway."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        reg = _registry(registry)
        self.registry = reg
        self.connections_open = Gauge(
            "mpim_gateway_connections_open", "Client connections open now", registry=reg
        )
        self.connections = Counter(
            "mpim_gateway_connections", "Client connections accepted", ["transport"], registry=reg
        )
        self.commands = Counter(
            "mpim_gateway_commands",
            "Client commands by name and outcome (ok or the -ERR code)",
            ["command", "outcome"],
            registry=reg,
        )
        self.logins = Counter(
            "mpim_gateway_logins",
            "Logins by method (REGISTER, LOGIN, AUTH) and outcome",
            ["method", "outcome"],
            registry=reg,
        )
        self.messages = Counter(
            "mpim_gateway_messages",
            "Messages accepted from senders (sent), written to live connections "
            "(delivered) and returned by PULL/SYNC/HISTORY (pulled)",
            ["event"],
            registry=reg,
        )
        self.push_latency = LoopHistogram(
            "mpim_gateway_push_latency_seconds",
            "From the message's server timestamp to its push being written here",
            buckets=_LATENCY_BUCKETS,
            registry=reg,
        )
        self.rate_limited = Counter(
            "mpim_gateway_rate_limited",
            "Commands refused by the per-connection rate limit",
            registry=reg,
        )
        self.slow_consumer_disconnects = Counter(
            "mpim_gateway_slow_consumer_disconnects",
            "Connections dropped because they stopped reading their pushes",
            registry=reg,
        )
        self.pull_barriers = Counter(
            "mpim_gateway_pull_barriers",
            "Mark barriers run before a PULL (several gateways): every gateway "
            "answered (complete), some did not within the timeout (unanswered), "
            "or Redis failed (failed)",
            ["outcome"],
            registry=reg,
        )
        self.sent = self.messages.labels("sent")
        self.delivered = self.messages.labels("delivered")
        self.pulled = self.messages.labels("pulled")
        self._commands: dict[tuple[str, ...], Counter] = {}
        self._logins: dict[tuple[str, ...], Counter] = {}

    def track_connections(self, count: Callable[[], int]) -> None:
        """Read the open-connection count at scrape time rather than keep a second copy."""
        self.connections_open.set_function(count)

    def command(self, name: str, outcome: str) -> None:
        self.command_counter(name, outcome).inc()

    def command_counter(self, name: str, outcome: str) -> Counter:
        """The child counting ``name`` with ``outcome``, for callers that bind it once."""
        return _child(self._commands, self.commands, name, outcome)

    def login(self, method: str, outcome: str) -> None:
        _child(self._logins, self.logins, method, outcome).inc()


class RpcMetrics:
    """gRPC call latency and outcome, as seen by the caller and by the server."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        reg = _registry(registry)
        self.registry = reg
        self.client_latency = Histogram(
            "mpim_rpc_client_latency_seconds",
            "Outgoing gRPC calls, by service, method and outcome",
            ["service", "method", "outcome"],
            buckets=_LATENCY_BUCKETS,
            registry=reg,
        )
        self.server_latency = Histogram(
            "mpim_rpc_server_latency_seconds",
            "gRPC calls served here, by service, method and outcome",
            ["service", "method", "outcome"],
            buckets=_LATENCY_BUCKETS,
            registry=reg,
        )
        self._client: dict[tuple[str, ...], Histogram] = {}
        self._server: dict[tuple[str, ...], Histogram] = {}

    def observe(
        self, served: bool, service: str, method: str, outcome: str, seconds: float
    ) -> None:
        if served:
            child = _child(self._server, self.server_latency, service, method, outcome)
        else:
            child = _child(self._client, self.client_latency, service, method, outcome)
        child.observe(seconds)


class StoreMetrics:
    """Group commit: how many writes share a transaction and what a commit costs.

    Observed by the writer thread, or on the event loop from the SQLite
    writer process's answers; prometheus-client's metrics are thread-safe.
    """

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        reg = _registry(registry)
        self.registry = reg
        self.batch_size = Histogram(
            "mpim_store_batch_size",
            "Write jobs committed in one transaction",
            buckets=_BATCH_BUCKETS,
            registry=reg,
        )
        self.commit_latency = Histogram(
            "mpim_store_commit_seconds",
            "Time to run and commit one batch of writes",
            buckets=_LATENCY_BUCKETS,
            registry=reg,
        )
        self.commit_blocked = Histogram(
            "mpim_store_commit_blocked_seconds",
            "Of a commit's time, how long its writer was blocked (the disk, the"
            " database server), neither running nor waiting for a core (Linux)",
            buckets=_LATENCY_BUCKETS,
            registry=reg,
        )
        self.write_errors = Counter(
            "mpim_store_write_errors",
            "Write jobs that failed (store unreachable, constraint, bug)",
            registry=reg,
        )


class MessageMetrics:
    """The message service's own group commit (many sends, one store job)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        reg = _registry(registry)
        self.registry = reg
        self.batch_size = Histogram(
            "mpim_message_commit_batch_size",
            "Messages stored by one group commit of the message service",
            buckets=_BATCH_BUCKETS,
            registry=reg,
        )
        self.pushes_dropped = Counter(
            "mpim_message_pushes_dropped",
            "Messages not pushed because the push queue was full (SYNC/PULL deliver them)",
            registry=reg,
        )
        self.store_failures = Counter(
            "mpim_message_store_failures",
            "Sends refused because the store could not take them",
            registry=reg,
        )
        self.marks_folded = Counter(
            "mpim_message_marks_folded",
            "Users whose delivered marks were folded into their pull floor (servers)",
            registry=reg,
        )


class CacheMetrics:
    """Cache-aside lookups by key kind, and route lookups.

    A route lookup "hits" when the user's route is in Redis (presence keeps
    every live connection there) and "misses" when the user has no live
    route, i.e. is offline; routes have no store behind them.
    """

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        reg = _registry(registry)
        self.registry = reg
        self.lookups = Counter(
            "mpim_cache_lookups",
            "Cache lookups by kind (user, friends, groups, group_info, members, route) "
            "and result (hit or miss)",
            ["kind", "result"],
            registry=reg,
        )
        self._children: dict[tuple[str, ...], Counter] = {}

    def totals(self) -> tuple[float, float]:
        """(hits, misses) over every kind: for logs and tests."""
        hits = misses = 0.0
        for family in self.lookups.collect():
            for sample in family.samples:
                if sample.name.endswith("_total"):
                    if sample.labels["result"] == "hit":
                        hits += sample.value
                    else:
                        misses += sample.value
        return hits, misses

    def lookup(self, kind: str, hit: bool, count: int = 1) -> None:
        _child(self._children, self.lookups, kind, "hit" if hit else "miss").inc(count)


ROUTE_KIND = "presence:route"


def count_route_lookups(metrics: CacheMetrics, hits: int, misses: int) -> None:
    """One route lookup (GetRoutes or gateways_of): a hit per uid with a live
    route, a miss per offline uid."""
    if hits:
        metrics.lookup(ROUTE_KIND, hit=True, count=hits)
    if misses:
        metrics.lookup(ROUTE_KIND, hit=False, count=misses)
