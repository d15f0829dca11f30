"""End to end: ``prescale adapter`` (a real process) registered through a real APIService,
reading a real Prometheus, authenticating the real aggregator, and the real HPA controller
scaling a Deployment on the external metric it serves."""

from __future__ import annotations

import json
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import CollectorRegistry, Gauge, start_http_server

from prescale.stack import aggregation, procs
from prescale.stack.adapter import LocalAdapter, run_adapter
from prescale.stack.cluster import Cluster
from prescale.stack.errors import StackError
from prescale.stack.polling import wait_for

pytestmark = pytest.mark.cluster
APISERVICE = "v1beta1.external.metrics.k8s.io"


@dataclass
class Demand:
    """The test exporter's gauges, scraped by the real Prometheus every second."""

    port: int
    external: Gauge
    total: Gauge
    per_pod: Gauge


@pytest.fixture
def demand_exporter() -> Iterator[Demand]:
    registry = CollectorRegistry()
    demand = Demand(
        port=procs.free_port(),
        external=Gauge("e2e_requests_per_second", "demand", ["namespace", "deployment"], registry=registry),
        total=Gauge("e2e_total_requests_per_second", "demand, no selector", ["namespace"], registry=registry),
        per_pod=Gauge("e2e_pod_requests_per_second", "per pod", ["namespace", "pod"], registry=registry),
    )
    server, thread = start_http_server(demand.port, addr="127.0.0.1", registry=registry)
    yield demand
    server.shutdown()
    server.server_close()
    thread.join(5)


@pytest.fixture
def adapter(cluster: Cluster, tmp_path: Path, private_address: str, start_prometheus: Any,
            demand_exporter: Demand) -> Iterator[LocalAdapter]:
    exporter_port = demand_exporter.port
    prom = start_prometheus({
        "global": {"scrape_interval": "1s"},
        "scrape_configs": [{"job_name": "demand",
                            "static_configs": [{"targets": [f"127.0.0.1:{exporter_port}"]}]}],
    })
    rules = {"rules": [
        {"name": "e2e_requests_per_second", "query": "sum(e2e_requests_per_second{<<matchers>>})"},
        {"name": "e2e_total_requests_per_second",
         "query": "sum(e2e_total_requests_per_second{<<matchers>>})"},
        {"name": "e2e_pod_requests_per_second", "api": "custom", "resource": "pods", "object_label": "pod",
         "query": "sum by (<<group_by>>) (e2e_pod_requests_per_second{<<matchers>>})"},
    ]}
    with run_adapter(cluster, tmp_path, private_address, prom.url, rules=rules) as running:
        yield running


def deployment(name: str, ns: str) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name, "namespace": ns},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": name}},
                 "template": {"metadata": {"labels": {"app": name}},
                              "spec": {"tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists"}],
                                       "containers": [{"name": "server", "image": "example.invalid/m:1",
                                                       "resources": {"limits": {"nvidia.com/gpu": "1"}}}]}}},
    }


def hpa(name: str, ns: str, metric: dict[str, Any], max_replicas: int = 10) -> dict[str, Any]:
    return {
        "apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": name, "namespace": ns},
        "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
                 "minReplicas": 1, "maxReplicas": max_replicas, "metrics": [metric]},
    }


def replicas(cluster: Cluster, ns: str, name: str) -> int:
    doc = json.loads(cluster.kubectl("get", "deployment", name, "-n", ns, "-o", "json"))
    return int(doc["spec"]["replicas"])


def test_real_hpa_scales_on_the_adapters_external_metric(
        cluster: Cluster, adapter: LocalAdapter, demand_exporter: Demand) -> None:
    gauge = demand_exporter.external
    ns = "e2e-adapter-hpa"
    cluster.kubectl("create", "namespace", ns)
    gauge.labels(namespace=ns, deployment="model").set(35.0)

    def logs() -> str:
        return f"--- adapter\n{procs.log_tail(adapter.process.log_path, 25)}\n{cluster.logs()}"

    wait_for(lambda: aggregation.is_available(cluster, APISERVICE), 90, "APIService Available", logs)
    path = f"/apis/external.metrics.k8s.io/v1beta1/namespaces/{ns}/e2e_requests_per_second"

    def through_aggregator() -> dict[str, Any] | None:
        try:
            doc: dict[str, Any] = json.loads(cluster.kubectl(
                "get", "--raw", f"{path}?labelSelector=deployment%3Dmodel"))
        except StackError:
            return None
        return doc if doc.get("items") else None

    doc = wait_for(through_aggregator, 60, "the metric through the aggregator", logs)
    assert doc["kind"] == "ExternalMetricValueList"
    assert doc["items"][0]["value"] == "35"

    # A user the cluster's RBAC does not allow is refused by the adapter's SubjectAccessReview.
    denied = subprocess.run(
        [str(cluster.config.bin_dir / "kubectl"), f"--kubeconfig={cluster.kubeconfig}",
         "--as=system:serviceaccount:default:nobody", "get", "--raw", path],
        capture_output=True, text=True, check=False)
    assert denied.returncode != 0
    assert "forbidden" in denied.stderr.lower()

    external = {"type": "External", "external": {
        "metric": {"name": "e2e_requests_per_second", "selector": {"matchLabels": {"deployment": "model"}}},
        "target": {"type": "AverageValue", "averageValue": "10"}}}
    cluster.apply(yaml.safe_dump_all([deployment("model", ns), hpa("model", ns, external)]))

    # 35 req/s at 10 per replica: the upstream algorithm asks for ceil(35 / 10) = 4.
    wait_for(lambda: replicas(cluster, ns, "model") == 4, 90, "HPA scaled to 4 replicas", logs)
    status = json.loads(cluster.kubectl("get", "hpa", "model", "-n", ns, "-o", "json"))["status"]
    conds = {c["type"]: c for c in status["conditions"]}
    assert conds["ScalingActive"]["status"] == "True", conds
    current = status["currentMetrics"][0]["external"]["current"]
    assert current["averageValue"] in ("35", "8750m")  # value/replicas depends on when it was read
    # Demand drops: the real controller scales down (stabilization is 0 s in the test cluster).
    gauge.labels(namespace=ns, deployment="model").set(12.0)
    wait_for(lambda: replicas(cluster, ns, "model") == 2, 90, "HPA scaled down to 2 replicas", logs)
    cluster.kubectl("delete", "namespace", ns, "--wait=false")


def test_value_target_without_selector_and_pods_custom_metric(
        cluster: Cluster, adapter: LocalAdapter, demand_exporter: Demand) -> None:
    ns = "e2e-adapter-custom"
    cluster.kubectl("create", "namespace", ns)

    def logs() -> str:
        return f"--- adapter\n{procs.log_tail(adapter.process.log_path, 25)}\n{cluster.logs()}"

    wait_for(lambda: aggregation.is_available(cluster, "v1beta2.custom.metrics.k8s.io"), 90,
             "custom metrics APIService Available", logs)
    # Value target, no selector: the usage ratio is value / target whatever the replicas.
    demand_exporter.total.labels(namespace=ns).set(25.0)
    value = {"type": "External", "external": {"metric": {"name": "e2e_total_requests_per_second"},
                                              "target": {"type": "Value", "value": "10"}}}
    # Pods custom metric: each pod reports its own rate; new pods report nothing yet.
    pods_metric = {"type": "Pods", "pods": {"metric": {"name": "e2e_pod_requests_per_second"},
                                            "target": {"type": "AverageValue", "averageValue": "10"}}}
    cluster.apply(yaml.safe_dump_all([
        deployment("by-value", ns), hpa("by-value", ns, value, max_replicas=4),
        deployment("by-pod", ns), hpa("by-pod", ns, pods_metric)]))

    def pod_names() -> list[str]:
        doc = json.loads(cluster.kubectl("get", "pods", "-n", ns, "-l", "app=by-pod", "-o", "json"))
        return [p["metadata"]["name"] for p in doc["items"]]

    first = wait_for(pod_names, 60, "the by-pod pod", logs)[0]
    demand_exporter.per_pod.labels(namespace=ns, pod=first).set(30.0)
    path = (f"/apis/custom.metrics.k8s.io/v1beta2/namespaces/{ns}/pods/*/e2e_pod_requests_per_second"
            "?labelSelector=app%3Dby-pod")
    raw = wait_for(lambda: raw_items(cluster, path), 60, "the pods metric through the aggregator", logs)
    assert raw[0]["describedObject"]["name"] == first
    assert raw[0]["value"] == "30"
    # 30 req/s on one pod at 10 per pod: ceil(30 / 10) = 3; the new pods report nothing, so it stays.
    wait_for(lambda: replicas(cluster, ns, "by-pod") == 3, 90, "Pods-metric HPA at 3", logs)
    # 25 against a Value target of 10 keeps asking for more: up to maxReplicas.
    wait_for(lambda: replicas(cluster, ns, "by-value") == 4, 90, "Value HPA at its maximum", logs)
    demand_exporter.total.labels(namespace=ns).set(2.0)
    wait_for(lambda: replicas(cluster, ns, "by-value") == 1, 90, "Value HPA back to its minimum", logs)
    cluster.kubectl("delete", "namespace", ns, "--wait=false")


def raw_items(cluster: Cluster, path: str) -> list[dict[str, Any]] | None:
    """The items at ``path`` through the aggregator; None while there are none or while it
    answers an error (its proxy starts routing a moment after the APIService shows Available)."""
    try:
        items: list[dict[str, Any]] = json.loads(cluster.kubectl("get", "--raw", path)).get("items")
    except StackError:
        return None
    return items or None


def test_forged_identity_headers_without_the_front_proxy_certificate_are_refused(
        adapter: LocalAdapter) -> None:
    ctx = ssl.create_default_context(cafile=str(adapter.ca))
    req = urllib.request.Request(
        f"{adapter.url}/apis/external.metrics.k8s.io/v1beta1/namespaces/default/e2e_requests_per_second",
        headers={"X-Remote-User": "system:admin", "X-Remote-Group": "system:masters"})
    deadline = time.monotonic() + 30
    while not _answers(f"{adapter.url}/healthz", ctx):
        if time.monotonic() > deadline:
            pytest.fail(f"the adapter does not answer\n{procs.log_tail(adapter.process.log_path)}")
        time.sleep(0.25)
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(req, context=ctx, timeout=5)
    assert refused.value.code == 401
    assert json.loads(refused.value.read())["kind"] == "Status"


def _answers(url: str, ctx: ssl.SSLContext) -> bool:
    try:
        with urllib.request.urlopen(url, context=ctx, timeout=2) as resp:
            return int(resp.status) == 200
    except (urllib.error.URLError, OSError):
        return False
