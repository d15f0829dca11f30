"""The prometheus provider against a REAL Prometheus process (backfilled with promtool)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from adapter_prom import PROMETHEUS, free_port, openmetrics, prometheus
from aiohttp.test_utils import TestClient, TestServer

from adapter import rules
from adapter.api.routes import Deps, make_app
from adapter.api.selectors import EVERYTHING, parse_selector
from adapter.metrics import AdapterMetrics
from adapter.provider import CustomQuery, MetricNotFound, Unavailable
from adapter.providers.prometheus import PrometheusConfig, PrometheusProvider

pytestmark = [
    pytest.mark.prometheus,
    pytest.mark.skipif(PROMETHEUS is None, reason="prometheus binary not installed"),
]

SERIES = [
    ("inference_queue_depth", {"namespace": "llm", "pod": "a", "model": "m1"}, 3.0),
    ("inference_queue_depth", {"namespace": "llm", "pod": "b", "model": "m2"}, 4.5),
    ("inference_queue_depth", {"namespace": "other", "pod": "c", "model": "m1"}, 100.0),
    (
        "prescale_forecast_requests_per_second",
        {"namespace": "llm", "target": "chat", "quantile": "0.9", "horizon_seconds": "300"},
        12.25,
    ),
]

RULES = rules.from_mapping(
    {
        "rules": [
            {"name": "queue", "query": "sum(inference_queue_depth{<<matchers>>})"},
            {"name": "queue_per_pod", "query": "inference_queue_depth{<<matchers>>}", "aggregate": "none"},
            {"name": "nothing", "query": "sum(absent_metric{<<matchers>>})"},
            {"name": "nothing_zero", "query": "sum(absent_metric{<<matchers>>})", "on_empty": "zero"},
            {
                "name": "queue",
                "api": "custom",
                "query": "sum by (<<group_by>>) (inference_queue_depth{<<matchers>>})",
            },
        ]
    }
) + rules.load_preset("forecast")


@pytest.fixture(scope="module")
def prom_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with prometheus(tmp_path_factory.mktemp("prom"), openmetrics(SERIES, end_s=time.time())) as url:
        yield url


async def test_external_values_and_selectors(prom_url: str) -> None:
    async with PrometheusProvider(PrometheusConfig(prom_url), RULES) as p:
        assert [s.value for s in await p.external("llm", "queue", EVERYTHING)] == [7.5]
        assert [s.value for s in await p.external("llm", "queue", parse_selector("model=m1"))] == [3.0]
        assert [s.value for s in await p.external("llm", "queue", parse_selector("model notin (m1)"))] == [
            4.5
        ]
        per_pod = await p.external("llm", "queue_per_pod", parse_selector("model in (m1,m2)"))
        assert sorted(s.labels["pod"] for s in per_pod) == ["a", "b"]
        assert await p.external("llm", "queue", parse_selector("model=m3")) == []  # sum() of nothing
        assert await p.external("llm", "nothing", EVERYTHING) == []
        assert [s.value for s in await p.external("llm", "nothing_zero", EVERYTHING)] == [0.0]
        fc = await p.external(
            "llm", "prescale_forecast_requests_per_second", parse_selector("target=chat,quantile=0.9")
        )
        assert [s.value for s in fc] == [12.25]
        with pytest.raises(MetricNotFound):
            await p.external("llm", "unknown", EVERYTHING)


async def test_injection_is_inert(prom_url: str) -> None:
    async with PrometheusProvider(PrometheusConfig(prom_url), RULES) as p:
        assert await p.external('llm"} or vector(999) or x{a="', "queue", EVERYTHING) == []


async def test_custom_pods(prom_url: str) -> None:
    async with PrometheusProvider(PrometheusConfig(prom_url), RULES) as p:
        got = await p.custom(CustomQuery("pods", "llm", "*", "queue", EVERYTHING, EVERYTHING))
        assert [(s.obj.name, s.value) for s in got] == [("a", 3.0), ("b", 4.5)]
        one = await p.custom(CustomQuery("pods", "llm", "b", "queue", EVERYTHING, EVERYTHING))
        assert [(s.obj.kind, s.obj.name, s.obj.namespace) for s in one] == [("Pod", "b", "llm")]


async def test_concurrent_requests_coalesce(prom_url: str) -> None:
    async with PrometheusProvider(PrometheusConfig(prom_url), RULES) as p:
        results = await asyncio.gather(*(p.external("llm", "queue", EVERYTHING) for _ in range(50)))
        assert all(r[0].value == 7.5 for r in results)
        assert p.upstream_calls == 1


async def test_down_source_is_503_within_timeout() -> None:
    cfg = PrometheusConfig(f"http://127.0.0.1:{free_port()}", timeout_s=0.5)
    async with PrometheusProvider(cfg, RULES) as p:
        started = time.monotonic()
        with pytest.raises(Unavailable):
            await p.external("llm", "queue", EVERYTHING)
        assert time.monotonic() - started < 1.0


async def test_slow_source_times_out(tmp_path: Path) -> None:
    writers: list[asyncio.StreamWriter] = []

    async def hang(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writers.append(writer)  # a source that accepts and never answers

    server = await asyncio.start_server(hang, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        async with PrometheusProvider(
            PrometheusConfig(f"http://127.0.0.1:{port}", timeout_s=0.3), RULES
        ) as p:
            started = time.monotonic()
            with pytest.raises(Unavailable):
                await p.external("llm", "queue", EVERYTHING)
            assert time.monotonic() - started < 1.0
    finally:
        for w in writers:
            w.close()
            await w.wait_closed()
        server.close()
        await server.wait_closed()


async def test_http_many_hpas_one_query(prom_url: str) -> None:
    metrics = AdapterMetrics()
    async with PrometheusProvider(PrometheusConfig(prom_url), RULES, metrics=metrics) as p:
        app = make_app(Deps(p, metrics))
        async with TestClient(TestServer(app)) as c:
            path = "/apis/external.metrics.k8s.io/v1beta1/namespaces/llm/queue"
            path += "?labelSelector=model+in+%28m1%2Cm2%29"
            resps = await asyncio.gather(*(c.get(path) for _ in range(30)))
            bodies = [await r.json() for r in resps]
            text = await (await c.get("/metrics")).text()
    assert {b["items"][0]["value"] for b in bodies} == {"7500m"}
    assert p.upstream_calls == 1
    assert 'prescale_adapter_upstream_query_duration_seconds_count{source="prometheus"} 1.0' in text


async def test_http_source_down_is_status_503() -> None:
    cfg = PrometheusConfig(f"http://127.0.0.1:{free_port()}", timeout_s=0.5)
    async with (
        PrometheusProvider(cfg, RULES) as p,
        TestClient(TestServer(make_app(Deps(p, AdapterMetrics())))) as c,
    ):
        resp = await c.get("/apis/external.metrics.k8s.io/v1beta1/namespaces/llm/queue")
        body = await resp.json()
        discovery = await c.get("/apis/external.metrics.k8s.io/v1beta1")
    assert resp.status == 503
    assert body["kind"] == "Status"
    assert body["message"] == "unable to fetch metrics from the metrics source"
    assert discovery.status == 200  # the availability probe never depends on the source
