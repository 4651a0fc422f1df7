"""The few figures worth a glance, from one process's ``/metrics``.

``mpim status`` and ``mpim cluster status`` print these; Prometheus and a
dashboard are for the rest. A figure a process does not have (a gateway
commits nothing, a service holds no connections) shows as "-".
"""

from __future__ import annotations

from mpim.metrics.scrape import Scrape

COLUMNS = (
    "CONNS",
    "LOGINS",
    "SENT",
    "DELIVERED",
    "PULLED",
    "PUSH P99",
    "RPC CALLS",
    "RPC P99",
    "COMMITS",
    "AVG BATCH",
    "CACHE HIT",
    "LIMITED",
    "SLOW DROPS",
)


def _has(scrape: Scrape, name: str) -> bool:
    return any(s.name == name for s in scrape.samples)


def _count(scrape: Scrape, name: str, **labels: str) -> str:
    return f"{scrape.value(name, **labels):,.0f}" if _has(scrape, name) else "-"


def _ms(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    return "> 10 s" if seconds == float("inf") else f"≤ {seconds * 1000:g} ms"


def key_figures(scrape: Scrape) -> dict[str, str]:
    """COLUMNS -> display text. Latency figures are histogram bucket bounds."""
    rpc_calls = scrape.value("mpim_rpc_client_latency_seconds_count") + scrape.value(
        "mpim_rpc_server_latency_seconds_count"
    )
    served = scrape.value("mpim_rpc_server_latency_seconds_count") > 0
    rpc_family = "mpim_rpc_server_latency_seconds" if served else "mpim_rpc_client_latency_seconds"
    commits = scrape.value("mpim_store_batch_size_count")
    ratio = scrape.hit_ratio()
    gateway = _has(scrape, "mpim_gateway_connections_open")
    return {
        "CONNS": _count(scrape, "mpim_gateway_connections_open"),
        "LOGINS": _count(scrape, "mpim_gateway_logins_total", outcome="ok"),
        "SENT": _count(scrape, "mpim_gateway_messages_total", event="sent"),
        "DELIVERED": _count(scrape, "mpim_gateway_messages_total", event="delivered"),
        "PULLED": _count(scrape, "mpim_gateway_messages_total", event="pulled"),
        "PUSH P99": _ms(scrape.quantile("mpim_gateway_push_latency_seconds", 0.99))
        if gateway
        else "-",
        "RPC CALLS": f"{rpc_calls:,.0f}" if rpc_calls else "-",
        "RPC P99": _ms(scrape.quantile(rpc_family, 0.99)) if rpc_calls else "-",
        "COMMITS": f"{commits:,.0f}" if _has(scrape, "mpim_store_batch_size_count") else "-",
        "AVG BATCH": f"{scrape.value('mpim_store_batch_size_sum') / commits:.1f}"
        if commits
        else "-",
        "CACHE HIT": f"{ratio:.1%}" if ratio is not None else "-",
        "LIMITED": _count(scrape, "mpim_gateway_rate_limited_total"),
        "SLOW DROPS": _count(scrape, "mpim_gateway_slow_consumer_disconnects_total"),
    }
