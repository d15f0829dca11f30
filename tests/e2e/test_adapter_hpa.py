"""End to end: ``prescale adapter`` (a real process) registered through a real APIService,
reading a real Prometheus, authenticating the real aggregator, and the real HPA controller
scaling a Deployment on the external metric it serves."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import CollectorRegistry, Gauge, start_http_server

from prescale.stack import aggregation, pki, procs
from prescale.stack.cluster import Cluster
from prescale.stack.errors import StackError

pytestmark = pytest.mark.cluster
APISERVICE = "v1beta1.external.metrics.k8s.io"


def wait_for(cond: Callable[[], Any], timeout_s: float, what: str, logs: Callable[[], str]) -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        value = cond()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: not within {timeout_s}s\n{logs()}")
        time.sleep(0.25)


@pytest.fixture
def demand_exporter() -> Iterator[tuple[int, Gauge]]:
    registry = CollectorRegistry()
    gauge = Gauge("e2e_requests_per_second", "demand", ["namespace", "deployment"], registry=registry)
    port = procs.free_port()
    server, thread = start_http_server(port, addr="127.0.0.1", registry=registry)
    yield port, gauge
    server.shutdown()
    server.server_close()
    thread.join(5)


@pytest.fixture
def adapter(cluster: Cluster, tmp_path: Path, private_address: str, start_prometheus: Any,
            demand_exporter: tuple[int, Gauge]) -> Iterator[procs.Process]:
    exporter_port, _ = demand_exporter
    prom = start_prometheus({
        "global": {"scrape_interval": "1s"},
        "scrape_configs": [{"job_name": "demand",
                            "static_configs": [{"targets": [f"127.0.0.1:{exporter_port}"]}]}],
    })
    ca = pki.KeyPair(tmp_path / "adapter-ca.crt", tmp_path / "adapter-ca.key")
    serving = pki.KeyPair(tmp_path / "adapter.crt", tmp_path / "adapter.key")
    pki.make_ca(ca, "e2e-adapter-ca")
    pki.make_leaf(serving, ca, "prescale-adapter", server=True,
                  dns=("prescale-adapter.kube-system.svc",), ips=(private_address,))
    rules = tmp_path / "rules.yaml"
    rules.write_text("rules:\n- name: e2e_requests_per_second\n"
                     "  query: sum(e2e_requests_per_second{<<matchers>>})\n  freshness_s: 60\n")
    port = procs.free_port(private_address)
    proc = procs.start("prescale-adapter", [
        sys.executable, "-m", "prescale.cli", "--log-format", "json", "adapter",
        f"--bind-address={private_address}", f"--secure-port={port}",
        f"--tls-cert-file={serving.cert}", f"--tls-private-key-file={serving.key}",
        f"--rules={rules}", f"--prometheus-url={prom.url}", f"--kubeconfig={cluster.kubeconfig}",
    ], tmp_path / "adapter.log")
    backend = aggregation.ApiServiceBackend(
        group="external.metrics.k8s.io", version="v1beta1", service="prescale-adapter",
        namespace="kube-system", address=private_address, port=port, ca_pem=ca.cert.read_bytes())
    aggregation.register(cluster, backend)
    try:
        yield proc
    finally:
        aggregation.unregister(cluster, backend)
        proc.stop()


def test_real_hpa_scales_on_the_adapters_external_metric(
        cluster: Cluster, adapter: procs.Process, demand_exporter: tuple[int, Gauge]) -> None:
    _, gauge = demand_exporter
    ns = "e2e-adapter-hpa"
    cluster.kubectl("create", "namespace", ns)
    gauge.labels(namespace=ns, deployment="model").set(35.0)

    def logs() -> str:
        return f"--- adapter\n{procs.log_tail(adapter.log_path, 25)}\n{cluster.logs()}"

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

    deployment = {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "model", "namespace": ns},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "model"}},
                 "template": {"metadata": {"labels": {"app": "model"}},
                              "spec": {"tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists"}],
                                       "containers": [{"name": "server", "image": "example.invalid/m:1",
                                                       "resources": {"limits": {"nvidia.com/gpu": "1"}}}]}}},
    }
    hpa = {
        "apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": "model", "namespace": ns},
        "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "model"},
                 "minReplicas": 1, "maxReplicas": 10,
                 "metrics": [{"type": "External", "external": {
                     "metric": {"name": "e2e_requests_per_second",
                                "selector": {"matchLabels": {"deployment": "model"}}},
                     "target": {"type": "AverageValue", "averageValue": "10"}}}]},
    }
    cluster.apply(yaml.safe_dump_all([deployment, hpa]))

    def replicas() -> int:
        return int(json.loads(cluster.kubectl("get", "deployment", "model", "-n", ns, "-o", "json"))
                   ["spec"]["replicas"])

    # 35 req/s at 10 per replica: the upstream algorithm asks for ceil(35 / 10) = 4.
    wait_for(lambda: replicas() == 4, 90, "HPA scaled to 4 replicas", logs)
    status = json.loads(cluster.kubectl("get", "hpa", "model", "-n", ns, "-o", "json"))["status"]
    conds = {c["type"]: c for c in status["conditions"]}
    assert conds["ScalingActive"]["status"] == "True", conds
    current = status["currentMetrics"][0]["external"]["current"]
    assert current["averageValue"] in ("35", "8750m")  # value/replicas depends on when it was read
    # Demand drops: the real controller scales down (stabilization is 0 s in the test cluster).
    gauge.labels(namespace=ns, deployment="model").set(12.0)
    wait_for(lambda: replicas() == 2, 90, "HPA scaled down to 2 replicas", logs)
    cluster.kubectl("delete", "namespace", ns, "--wait=false")
