"""Reading metrics back: quantiles, hit ratios, key figures and run deltas."""

from __future__ import annotations

from prometheus_client import generate_latest

from mpim.bench.server_metrics import figures
from mpim.metrics.families import CacheMetrics, GatewayMetrics, StoreMetrics, new_registry
from mpim.metrics.scrape import Scrape
from mpim.metrics.summary import key_figures


def scrape_of(registry: object) -> Scrape:
    return Scrape.parse(generate_latest(registry).decode())  # type: ignore[arg-type]


def test_quantile_is_the_bound_of_the_bucket_holding_it() -> None:
    registry = new_registry()
    gateway = GatewayMetrics(registry)
    for _ in range(98):
        gateway.push_latency.observe(0.003)  # bucket ≤ 5 ms
    gateway.push_latency.observe(0.3)  # ≤ 500 ms
    gateway.push_latency.observe(0.3)
    scrape = scrape_of(registry)
    assert scrape.quantile("mpim_gateway_push_latency_seconds", 0.5) == 0.005
    assert scrape.quantile("mpim_gateway_push_latency_seconds", 0.99) == 0.5
    assert scrape.quantile("mpim_store_commit_seconds", 0.99) is None


def test_hit_ratio_and_key_figures_of_one_process() -> None:
    registry = new_registry()
    cache = CacheMetrics(registry)
    store = StoreMetrics(registry)
    cache.lookup("user:uid", hit=True, count=9)
    cache.lookup("user:uid", hit=False)
    cache.lookup("presence:route", hit=True, count=30)
    store.batch_size.observe(10)
    store.batch_size.observe(30)
    scrape = scrape_of(registry)
    assert scrape.hit_ratio("user:uid") == 0.9
    assert scrape.hit_ratio() == 39 / 40
    shown = key_figures(scrape)
    assert shown["CACHE HIT"] == "97.5%"
    assert shown["COMMITS"] == "2"
    assert shown["AVG BATCH"] == "20.0"
    assert shown["CONNS"] == "-"  # no gateway here


def test_run_figures_are_differences_between_two_scrapes() -> None:
    registry = new_registry()
    cache = CacheMetrics(registry)
    gateway = GatewayMetrics(registry)
    cache.lookup("user:uid", hit=False, count=100)  # before the run: not counted
    before = scrape_of(registry)
    cache.lookup("user:uid", hit=True, count=3)
    cache.lookup("user:uid", hit=False, count=1)
    cache.lookup("presence:route", hit=True, count=96)
    gateway.sent.inc(50)
    after = scrape_of(registry)
    run = figures(before, after)
    assert run["user_lookups"] == 4
    assert run["user_hit_ratio"] == 0.75
    assert run["route_hit_ratio"] == 1.0
    assert run["user_and_route_hit_ratio"] == 0.99
    assert run["messages_sent"] == 50
    assert run["store_mean_batch"] is None
