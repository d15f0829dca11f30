"""The embedded scrape source: real HTTP exporters on loopback, an injected clock for time."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest

from adapter import rules
from adapter.api.selectors import EVERYTHING, parse_selector
from adapter.provider import CustomQuery, MetricNotFound, Unavailable
from adapter.providers.composite import CompositeProvider
from adapter.providers.memory import MemoryProvider
from adapter.providers.scrape import ScrapeConfig, ScrapeProvider, ScrapeStore, ScrapeTarget, rate

RULES = rules.from_mapping(
    {
        "rules": [
            {"name": "queue", "source": "scrape", "query": "inference_queue_depth", "freshness_s": 60},
            {"name": "queue_max", "source": "scrape", "query": "inference_queue_depth", "aggregate": "max"},
            {"name": "rps", "source": "scrape", "query": "inference_requests_total", "rate_window_s": 60},
            {"name": "none", "source": "scrape", "query": "absent", "on_empty": "zero"},
            {"name": "queue", "api": "custom", "source": "scrape", "query": "inference_queue_depth"},
        ]
    }
)


class Exporter:
    """A pod's /metrics: a queue gauge and a request counter."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.queue = Gauge("inference_queue_depth", "q", ["model"], registry=self.registry)
        self.requests = Counter("inference_requests", "r", registry=self.registry)

    async def handle(self, request: web.Request) -> web.Response:
        return web.Response(body=generate_latest(self.registry), content_type="text/plain")


@pytest.fixture
async def pods() -> AsyncIterator[list[tuple[Exporter, str]]]:
    out, servers = [], []
    for _ in range(2):
        exp = Exporter()
        app = web.Application()
        app.router.add_get("/metrics", exp.handle)
        server = TestServer(app)
        await server.start_server()
        servers.append(server)
        out.append((exp, str(server.make_url("/metrics"))))
    yield out
    for s in servers:
        await s.close()


async def test_scrape_values_rates_and_freshness(pods: list[tuple[Exporter, str]]) -> None:
    now = [1000.0]
    targets = [
        ScrapeTarget(url, {"namespace": "llm", "pod": f"p{i}", "app": "chat"})
        for i, (_, url) in enumerate(pods)
    ]
    (a, _), (b, _) = pods
    a.queue.labels("m1").set(2)
    b.queue.labels("m2").set(5)
    async with ScrapeProvider(ScrapeConfig(targets), RULES, clock=lambda: now[0]) as p:
        for _ in range(5):  # 4 intervals of 15 s; pod a serves 3 req/s, pod b 1 req/s
            await p.scrape_once()
            a.requests.inc(45)
            b.requests.inc(15)
            now[0] += 15
        now[0] -= 15
        assert [s.value for s in await p.external("llm", "queue", EVERYTHING)] == [7.0]
        assert [s.value for s in await p.external("llm", "queue_max", EVERYTHING)] == [5.0]
        assert [s.value for s in await p.external("llm", "queue", parse_selector("model=m1"))] == [2.0]
        assert await p.external("other", "queue", EVERYTHING) == []
        assert [s.value for s in await p.external("llm", "rps", EVERYTHING)] == [pytest.approx(4.0)]
        assert [s.value for s in await p.external("llm", "none", EVERYTHING)] == [0.0]
        per_pod = await p.custom(
            CustomQuery("pods", "llm", "*", "queue", parse_selector("app=chat"), EVERYTHING)
        )
        assert [(s.obj.name, s.value) for s in per_pod] == [("p0", 2.0), ("p1", 5.0)]
        with pytest.raises(MetricNotFound):
            await p.external("llm", "nope", EVERYTHING)
        now[0] += 120  # nothing scraped for two minutes: stale beats wrong
        with pytest.raises(Unavailable):
            await p.external("llm", "queue", EVERYTHING)


async def test_scrape_failure_is_survived(pods: list[tuple[Exporter, str]]) -> None:
    targets = [ScrapeTarget("http://127.0.0.1:1/metrics"), ScrapeTarget(pods[0][1], {"namespace": "llm"})]
    async with ScrapeProvider(ScrapeConfig(targets, timeout_s=1), RULES) as p:
        await p.scrape_once()
        assert len(p.store) > 0


async def test_background_loop_starts_and_stops(pods: list[tuple[Exporter, str]]) -> None:
    async with ScrapeProvider(ScrapeConfig([ScrapeTarget(pods[0][1])], interval_s=0.01), RULES) as p:
        p.start_loop()
        await p.stop_loop()


def test_store_is_bounded_and_expires() -> None:
    store = ScrapeStore(window_s=60, max_series=3, max_samples=4)
    text = "".join(f'x{{i="{i}"}} {i}\n' for i in range(10))
    assert store.ingest(text, {}, now=0) == 3
    assert store.rejected == 7
    for t in range(1, 10):
        store.ingest('x{i="0"} 1\n', {}, now=t)
    assert all(len(w) <= 4 for _, w in store.select("x", EVERYTHING))
    store.expire(now=1000)
    assert len(store) == 0


def test_rate_handles_counter_reset() -> None:
    assert rate([(0, 10), (10, 20), (20, 5), (30, 15)], 60, 30) == pytest.approx((10 + 5 + 10) / 30)
    assert rate([(0, 1)], 60, 0) is None


async def test_composite_routes_by_metric() -> None:
    mem = MemoryProvider()
    mem.set_external("forecast", "llm", [])
    async with ScrapeProvider(ScrapeConfig([]), RULES) as scrape:
        both = CompositeProvider([mem, scrape])
        assert "forecast" in both.external_metrics()
        assert "queue" in both.external_metrics()
        assert await both.external("llm", "forecast", EVERYTHING) == []
        assert await both.external("llm", "queue", EVERYTHING) == []
        with pytest.raises(MetricNotFound):
            await both.external("llm", "nope", EVERYTHING)
