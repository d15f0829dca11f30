"""Prometheus range queries (chunking, gaps, errors) on a loopback server; the spec parser
against the CRD's defaults; node-pool headroom backends; the metric names."""

from __future__ import annotations

import math
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
import pytest
import yaml
from aiohttp import web
from aiohttp.test_utils import TestServer
from controller_fakes import FakeKube, pa
from prometheus_client import CollectorRegistry, generate_latest

from forecaster.actuators.nodepool import backends, headroom_gpus
from forecaster.controller.metrics import ControllerMetrics
from forecaster.controller.spec import NodePoolSpec, SpecError, parse
from forecaster.controller.state import Outcome
from forecaster.controller.status import Condition
from forecaster.decider import Decision, WindowForecast
from forecaster.models import MODELS
from forecaster.source import MAX_POINTS, PrometheusSource, QueryError, SourceUnavailable

CRD = Path(__file__).resolve().parents[2] / "deploy" / "crds" / "predictiveautoscalers.yaml"


@pytest.fixture
async def prom() -> AsyncIterator[tuple[str, list[dict[str, str]]]]:
    calls: list[dict[str, str]] = []

    async def query_range(request: web.Request) -> web.Response:
        form = dict(await request.post())
        calls.append({k: str(v) for k, v in form.items()})
        if form["query"] == "broken(":
            return web.json_response(
                {"status": "error", "errorType": "bad_data", "error": "parse error"}, status=400
            )
        if form["query"] == "down":
            return web.Response(status=503, text="overloaded")
        start, end, step = float(str(form["start"])), float(str(form["end"])), float(str(form["step"]))
        n = math.floor((end - start) / step + 1e-9) + 1
        # Two series (summed by the source), and a gap every 10th slot in one of them.
        a = [[start + i * step, str(float(i))] for i in range(n)]
        b = [[start + i * step, "1"] for i in range(n) if i % 10]
        return web.json_response(
            {
                "status": "success",
                "data": {
                    "resultType": "matrix",
                    "result": [{"metric": {"s": "a"}, "values": a}, {"metric": {"s": "b"}, "values": b}],
                },
            }
        )

    async def query(request: web.Request) -> web.Response:
        form = dict(await request.post())
        result = [] if form["query"] == "empty" else [{"metric": {}, "value": [0, "2.5"]}]
        return web.json_response({"status": "success", "data": {"resultType": "vector", "result": result}})

    app = web.Application()
    app.router.add_post("/api/v1/query_range", query_range)
    app.router.add_post("/api/v1/query", query)
    server = TestServer(app)
    await server.start_server()
    yield str(server.make_url("")), calls
    await server.close()


async def test_range_queries_are_chunked_and_aligned(prom: tuple[str, list[dict[str, str]]]) -> None:
    url, calls = prom
    async with aiohttp.ClientSession() as session:
        src = PrometheusSource(url, session)
        n = MAX_POINTS + 500
        r = await src.range("demand", 1000.0, 1000.0 + (n - 1) * 15.0, 15.0)
    assert len(calls) == 2
    assert r.values.shape == (n,)
    assert r.values[0] == 0.0  # slot 0: series b has its gap there
    assert r.values[1] == 2.0
    assert r.values[MAX_POINTS + 1] == 2.0  # the second chunk restarts its own count at 0
    assert r.end_s == 1000.0 + (n - 1) * 15.0


async def test_source_errors_split_into_user_and_transient(prom: tuple[str, list[dict[str, str]]]) -> None:
    url, _ = prom
    async with aiohttp.ClientSession() as session:
        src = PrometheusSource(url, session)
        with pytest.raises(QueryError, match="parse error"):
            await src.range("broken(", 0, 60, 15)
        with pytest.raises(SourceUnavailable, match="503"):
            await src.range("down", 0, 60, 15)
        assert await src.instant("x") == 2.5
        assert await src.instant("empty") is None
        dead = PrometheusSource("http://127.0.0.1:9", session, timeout_s=2)
        with pytest.raises(SourceUnavailable):
            await dead.instant("x")


def _crd_spec_schema() -> dict[str, Any]:
    doc = yaml.safe_load(CRD.read_text())
    schema: dict[str, Any] = doc["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    return schema


def test_parser_defaults_equal_the_crd_defaults() -> None:
    props = _crd_spec_schema()["properties"]
    spec = parse(
        {
            "metadata": {"namespace": "a"},
            "spec": {
                "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "m"},
                "maxReplicas": 5,
                "demand": {"preset": "inference-requests"},
                "capacity": {"requestsPerSecondPerReplica": 3},
            },
        }
    )
    assert spec.min_replicas == props["minReplicas"]["default"]
    assert spec.step_s == props["demand"]["properties"]["stepSeconds"]["default"]
    assert spec.history_s == props["demand"]["properties"]["historySeconds"]["default"]
    assert spec.pod_lead_time_s == props["leadTime"]["properties"]["podSeconds"]["default"]
    assert spec.miss_cost_ratio == props["forecast"]["properties"]["missCostRatio"]["default"]
    assert spec.scale_down_delay_s == props["behavior"]["properties"]["scaleDownDelaySeconds"]["default"]
    assert spec.mode == props["actuation"]["properties"]["mode"]["default"]
    assert 'namespace="a"' in spec.query
    assert 'pod=~"m-.*"' in spec.query
    enum = props["forecast"]["properties"]["models"]["items"]["enum"]
    assert sorted(enum) == sorted(MODELS)


@pytest.mark.parametrize(
    ("patch", "field"),
    [
        ({"maxReplicas": 0}, "spec.maxReplicas"),
        ({"actuation": {"mode": "hpa-floor"}}, "spec.actuation.hpaName"),
        ({"actuation": {"mode": "sideways"}}, "spec.actuation.mode"),
        ({"demand": {"preset": "inference-requests"}}, "spec.demand"),
        ({"capacity": {"requestsPerSecondPerReplica": -1}}, "spec.capacity.requestsPerSecondPerReplica"),
        ({"nodePool": {"backend": "machine-deployment", "gpusPerNode": 8}}, "spec.nodePool.name"),
    ],
)
def test_bad_specs_name_the_field(patch: dict[str, Any], field: str) -> None:
    with pytest.raises(SpecError) as e:
        parse(pa("a", "p", "m", **patch))
    assert e.value.field == field


async def test_placeholder_headroom_is_created_resized_and_released() -> None:
    kube = FakeKube()
    pool = NodePoolSpec(backend="placeholder-pods", gpus_per_node=8, gpus_per_replica=2)
    assert headroom_gpus(7, 4, pool) == 6
    placeholders = backends()["placeholder-pods"]
    h = await placeholders.provide(kube, "a", "p", pool, 6)
    dep = kube.objects["/apis/apps/v1/namespaces/a/deployments/p-headroom"]
    assert (h.placeholders, h.nodes, dep["spec"]["replicas"]) == (3, 1, 3)
    assert dep["spec"]["template"]["spec"]["priorityClassName"] == "prescale-placeholder"
    assert kube.objects["/apis/scheduling.k8s.io/v1/priorityclasses/prescale-placeholder"]["value"] < 0
    await placeholders.provide(kube, "a", "p", pool, 0)
    assert dep["spec"]["replicas"] == 0  # released by scaling placeholders down, nothing else


async def test_scaled_pool_backends_only_remove_what_they_added() -> None:
    kube = FakeKube()
    path = "/apis/cluster.x-k8s.io/v1beta1/namespaces/infra/machinedeployments/gpu"
    kube.put(path, {"metadata": {"name": "gpu"}, "spec": {"replicas": 3}})
    pool = NodePoolSpec(backend="machine-deployment", gpus_per_node=8, name="gpu", namespace="infra")
    md = backends()["machine-deployment"]
    assert (await md.provide(kube, "a", "p", pool, 12)).nodes == 2
    assert kube.objects[path]["spec"]["replicas"] == 5
    await md.provide(kube, "a", "p", pool, 0)
    assert kube.objects[path]["spec"]["replicas"] == 3


def test_metric_names_match_the_design_contract() -> None:
    m = ControllerMetrics()
    registry = CollectorRegistry()
    m.register(registry)
    wf = WindowForecast((0.5, 0.9, 0.98), (10.0, 12.0, 14.0), 10.5, "fourier")
    m.record(
        Outcome(
            "ns",
            "chat",
            Condition("Ready", True, "Reconciled"),
            Decision(3, "forecast", quantile=0.98),
            None,
            wf,
            9.0,
            5.0,
            120.0,
            150.0,
            None,
            {"forecast": 4},
            (0.1, 0.95),
        )
    )
    text = generate_latest(registry).decode()
    for name in (
        "prescale_forecast_requests_per_second",
        "prescale_desired_replicas",
        "prescale_capacity_per_replica",
        "prescale_lead_time_seconds",
        "prescale_forecast_error_ratio",
        "prescale_interval_coverage_ratio",
        "prescale_decisions_total",
        "prescale_controller_leader",
    ):
        assert name in text, name
    assert (
        'prescale_forecast_requests_per_second{horizon_seconds="150",namespace="ns",quantile="0.9",'
        'target="chat"} 12.0'
    ) in text
    assert 'prescale_decisions_total{namespace="ns",reason="forecast",target="chat"} 4.0' in text
    assert np.isfinite(wf.at(0.95))
