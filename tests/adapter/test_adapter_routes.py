"""Route table: path -> status -> items, over the in-memory provider (cma apiserver_test.go style)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from adapter.api.routes import Deps, make_app
from adapter.metrics import AdapterMetrics
from adapter.provider import ObjectRef, Sample
from adapter.providers.memory import MemoryProvider

E = "/apis/external.metrics.k8s.io/v1beta1"
C2 = "/apis/custom.metrics.k8s.io/v1beta2"
C1 = "/apis/custom.metrics.k8s.io/v1beta1"


def _provider(now: float) -> MemoryProvider:
    p = MemoryProvider(freshness_s=300)
    p.set_external(
        "my-external-metric", "default", [Sample(42, now, {"foo": "bar"}), Sample(43, now, {"foo": "baz"})]
    )
    p.set_external("other-external-metric", "default", [Sample(44, now)])
    p.set_external("nan-metric", "default", [Sample(float("nan"), now), Sample(-2, now)])
    p.set_external("empty-metric", "default", [])
    p.set_external("stale-metric", "default", [Sample(1, now - 3600)])
    for i in range(8):
        labels = {"foo": "bar"} if i < 3 else {"foo": "qux"}
        p.set_custom("pods", "some-metric", ObjectRef("Pod", f"pod-{i}", "ns"), 1.5 * i, labels=labels)
    p.set_custom("deployments.apps", "qps", ObjectRef("Deployment", "web", "ns", "apps/v1"), 250)
    p.set_custom("namespaces", "some-metric", ObjectRef("Namespace", "ns", None), 7)
    return p


@pytest.fixture
def now() -> float:
    """The samples' time: taken per test, so they are fresh (300 s) however late the test runs."""
    return time.time()


@pytest.fixture
async def client(now: float) -> AsyncIterator[TestClient[Any, Any]]:
    app = make_app(Deps(_provider(now), AdapterMetrics(), request_timeout_s=2))
    async with TestClient(TestServer(app)) as c:
        yield c


ROUTES = [  # path, status, item count (None: not a list)
    (f"{E}/namespaces/default/my-external-metric", 200, 2),
    (f"{E}/namespaces/default/my-external-metric?labelSelector=foo%3Dbar", 200, 1),
    (f"{E}/namespaces/default/my-external-metric?labelSelector=foo+in+%28bar%2Cbaz%29", 200, 2),
    (f"{E}/namespaces/default/my-external-metric?labelSelector=foo%20notin%20(bar)", 200, 1),
    (f"{E}/namespaces/default/my-external-metric?labelSelector=!foo", 200, 0),
    (f"{E}/namespaces/foo/my-external-metric", 200, 0),
    (f"{E}/namespaces/default/empty-metric", 200, 0),
    (f"{E}/namespaces/default/nan-metric", 200, 1),
    (f"{E}/namespaces/foo/nonexistent-metric", 404, None),
    (f"{E}/nonexistent-metric", 404, None),
    (f"{E}/namespaces/foo", 404, None),
    (f"{E}/namespaces/foo/group/metric", 404, None),
    (f"{E}/namespaces/default/my-external-metric?labelSelector=foo%3D%3D%3D", 400, None),
    (f"{E}/namespaces/default/stale-metric", 503, None),
    (f"{C2}/namespaces/ns/pods/*/some-metric?labelSelector=foo%3Dbar", 200, 3),
    (f"{C2}/namespaces/ns/pods/*/some-metric", 200, 8),
    (f"{C1}/namespaces/ns/pods/*/some-metric", 200, 8),
    (f"{C2}/namespaces/ns/pods/pod-2/some-metric", 200, 1),
    (f"{C2}/namespaces/ns/pods/missing/some-metric", 404, None),
    (f"{C2}/namespaces/ns/deployments.apps/web/qps", 200, 1),
    (f"{C2}/namespaces/ns/metrics/some-metric", 200, 1),
    (f"{C2}/namespaces/ns/pods/bar", 404, None),
    (f"{C2}/namespaces/ns/pods/*/nope", 404, None),
    ("/apis/custom.metrics.k8s.io/v9/namespaces/ns/pods/*/some-metric", 404, None),
    ("/nothing/here", 404, None),
]


@pytest.mark.parametrize(("path", "code", "items"), ROUTES)
async def test_route_table(client: TestClient[Any, Any], path: str, code: int, items: int | None) -> None:
    resp = await client.get(path)
    body = await resp.json()
    assert resp.status == code, body
    assert resp.content_type == "application/json"
    if items is not None:
        assert len(body["items"]) == items
    if code >= 400:
        assert body["kind"] == "Status"
        assert body["apiVersion"] == "v1"
        assert body["status"] == "Failure"
        assert body["code"] == code
        assert body["metadata"] == {}


async def test_external_document_exact(client: TestClient[Any, Any], now: float) -> None:
    body = await (
        await client.get(f"{E}/namespaces/default/my-external-metric?labelSelector=foo%3Dbar")
    ).json()
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now))
    assert body == {
        "kind": "ExternalMetricValueList",
        "apiVersion": "external.metrics.k8s.io/v1beta1",
        "metadata": {},
        "items": [
            {
                "metricName": "my-external-metric",
                "metricLabels": {"foo": "bar"},
                "timestamp": stamp,
                "value": "42",
            }
        ],
    }
    other = await (await client.get(f"{E}/namespaces/default/other-external-metric")).json()
    assert other["items"][0]["metricLabels"] is None
    nan = await (await client.get(f"{E}/namespaces/default/nan-metric")).json()
    assert [i["value"] for i in nan["items"]] == ["0"]  # NaN dropped, negative clamped


async def test_custom_documents_both_versions(client: TestClient[Any, Any]) -> None:
    v2 = await (await client.get(f"{C2}/namespaces/ns/pods/pod-3/some-metric")).json()
    assert v2["kind"] == "MetricValueList"
    assert v2["apiVersion"] == "custom.metrics.k8s.io/v1beta2"
    item = v2["items"][0]
    assert item["describedObject"] == {"kind": "Pod", "name": "pod-3", "apiVersion": "/v1", "namespace": "ns"}
    assert item["metric"] == {"name": "some-metric", "selector": None}
    assert item["value"] == "4500m"
    v1 = await (
        await client.get(f"{C1}/namespaces/ns/pods/pod-3/some-metric?metricLabelSelector=a%3Db")
    ).json()
    assert v1["apiVersion"] == "custom.metrics.k8s.io/v1beta1"
    assert v1["items"][0]["metricName"] == "some-metric"
    assert v1["items"][0]["selector"] == {
        "matchExpressions": [{"key": "a", "operator": "In", "values": ["b"]}]
    }
    ns = await (await client.get(f"{C2}/namespaces/ns/metrics/some-metric")).json()
    assert ns["items"][0]["describedObject"] == {"kind": "Namespace", "name": "ns", "apiVersion": "/v1"}


async def test_discovery(client: TestClient[Any, Any]) -> None:
    ext = await (await client.get(E)).json()
    assert ext["kind"] == "APIResourceList"
    assert ext["groupVersion"] == "external.metrics.k8s.io/v1beta1"
    assert {
        "name": "my-external-metric",
        "singularName": "",
        "namespaced": True,
        "kind": "ExternalMetricValueList",
        "verbs": ["get"],
    } in ext["resources"]
    cus = await (await client.get(C2)).json()
    assert {r["name"] for r in cus["resources"]} == {
        "pods/some-metric",
        "deployments.apps/qps",
        "namespaces/some-metric",
    }
    apis = await (await client.get("/apis")).json()
    assert apis["kind"] == "APIGroupList"
    groups = {g["name"]: g["preferredVersion"]["version"] for g in apis["groups"]}
    assert groups == {"custom.metrics.k8s.io": "v1beta2", "external.metrics.k8s.io": "v1beta1"}
    group = await (await client.get("/apis/custom.metrics.k8s.io")).json()
    assert group["kind"] == "APIGroup"
    assert [v["version"] for v in group["versions"]] == ["v1beta2", "v1beta1"]


async def test_discovery_never_empty() -> None:
    app = make_app(Deps(MemoryProvider(), AdapterMetrics()))
    async with TestClient(TestServer(app)) as c:
        ext = await (await c.get(E)).json()
        cus = await (await c.get(C1)).json()
    assert [r["name"] for r in ext["resources"]] == ["externalmetrics"]
    assert [r["name"] for r in cus["resources"]] == ["custommetrics"]


async def test_openapi_health_metrics(client: TestClient[Any, Any]) -> None:
    v2 = await (await client.get("/openapi/v2")).json()
    assert v2["swagger"] == "2.0"
    assert any("external.metrics.k8s.io" in p for p in v2["paths"])
    v3 = await (await client.get("/openapi/v3")).json()
    for ref in v3["paths"].values():
        doc = await client.get(ref["serverRelativeURL"])
        assert doc.status == 200
        assert (await doc.json())["openapi"] == "3.0.0"
    for path in ("/healthz", "/livez", "/readyz"):
        assert (await client.get(path)).status == 200
    await client.get(f"{E}/namespaces/default/my-external-metric")
    text = await (await client.get("/metrics")).text()
    assert "prescale_adapter_requests_total" in text
    assert 'code="200"' in text
    assert "prescale_adapter_value_age_seconds" in text


async def test_method_not_allowed(client: TestClient[Any, Any]) -> None:
    resp = await client.post(f"{E}/namespaces/default/my-external-metric")
    assert resp.status == 405
    assert (await resp.json())["reason"] == "MethodNotAllowed"
