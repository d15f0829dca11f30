"""The local control plane is the real thing: KWOK pods with a start-up delay, the real HPA
controller, and the aggregation layer routing to a server inside the private namespace."""

from __future__ import annotations

import base64
import datetime as dt
import json
import ssl
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml

from prescale.stack import aggregation, pki, polling, procs
from prescale.stack.cluster import Cluster

pytestmark = pytest.mark.cluster


def wait_for(cond: Callable[[], Any], timeout_s: float, what: str, cluster: Cluster) -> Any:
    return polling.wait_for(cond, timeout_s, what, cluster.logs)


def get(cluster: Cluster, *args: str) -> Any:
    return json.loads(cluster.kubectl("get", *args, "-o", "json"))


def ts(value: str) -> dt.datetime:
    return dt.datetime.fromisoformat(value.replace("Z", "+00:00"))


def gpu_deployment(name: str, namespace: str, replicas: int, ready_delay: str) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name},
                             "annotations": {"pod-ready.stage.kwok.x-k8s.io/delay": ready_delay}},
                "spec": {
                    "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
                    "containers": [{"name": "server", "image": "example.invalid/server:1",
                                    "resources": {"limits": {"nvidia.com/gpu": "1"}}}],
                },
            },
        },
    }


@pytest.fixture
def namespace(cluster: Cluster, request: pytest.FixtureRequest) -> Iterator[str]:
    name = request.node.name.replace("_", "-")[:50].lower()
    cluster.kubectl("create", "namespace", name)
    yield name
    cluster.kubectl("delete", "namespace", name, "--wait=false")


def test_kwok_pods_become_ready_after_the_configured_delay(cluster: Cluster, namespace: str) -> None:
    cluster.apply(yaml.safe_dump(gpu_deployment("model", namespace, 2, "4s")))

    def pods() -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = get(cluster, "pods", "-n", namespace)["items"]
        return items

    def ready(p: dict[str, Any]) -> dict[str, Any] | None:
        return next((c for c in p["status"].get("conditions", [])
                     if c["type"] == "Ready" and c["status"] == "True"), None)

    running = wait_for(lambda: [p for p in pods() if p["status"].get("phase") in ("Pending", "Running")
                                and p["spec"].get("nodeName")], 60, "pods scheduled", cluster)
    assert all(p["spec"]["nodeName"].startswith("gpu-node-") for p in running)
    # Judged on the listing that first showed them scheduled: a second listing could come after
    # the 4 s delay on a loaded machine.
    assert any(ready(p) is None for p in running), "pods were Ready at once: the delay did not apply"
    def all_ready() -> list[dict[str, Any]] | None:
        ps = pods()
        return ps if len(ps) == 2 and all(ready(p) for p in ps) else None

    done = wait_for(all_ready, 60, "two Ready pods", cluster)
    for p in done:
        created = ts(p["metadata"]["creationTimestamp"])
        became_ready = ts(ready(p)["lastTransitionTime"])  # type: ignore[index]
        # The annotation asks for 4 s; Kubernetes timestamps have one-second resolution.
        assert 3 <= (became_ready - created).total_seconds() <= 15, (created, became_ready)
    def deployment_available() -> bool:
        status = get(cluster, "deployment", "model", "-n", namespace)["status"]
        return bool(status.get("readyReplicas") == 2 and status.get("availableReplicas") == 2)

    wait_for(deployment_available, 30, "deployment ready and available", cluster)


def test_real_hpa_controller_sets_status_conditions(cluster: Cluster, namespace: str) -> None:
    cluster.apply(yaml.safe_dump(gpu_deployment("model", namespace, 1, "1s")))
    hpa = {
        "apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": "model", "namespace": namespace},
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "model"},
            "minReplicas": 1, "maxReplicas": 4,
            "metrics": [{"type": "External", "external": {
                "metric": {"name": "smoke_requests_per_second"},
                "target": {"type": "AverageValue", "averageValue": "10"}}}],
        },
    }
    cluster.apply(yaml.safe_dump(hpa))

    def conditions() -> dict[str, dict[str, Any]]:
        status = get(cluster, "hpa", "model", "-n", namespace).get("status", {})
        return {c["type"]: c for c in status.get("conditions", [])}

    def with_scaling_active() -> dict[str, dict[str, Any]] | None:
        c = conditions()
        return c if "ScalingActive" in c else None

    conds = wait_for(with_scaling_active, 60, "HPA conditions from the controller", cluster)
    assert conds["AbleToScale"]["status"] == "True"
    # No external metrics API is registered in this test, so the real controller reports it.
    assert conds["ScalingActive"]["status"] == "False"
    assert conds["ScalingActive"]["reason"] == "FailedGetExternalMetric"


class _Discovery(BaseHTTPRequestHandler):
    document = b""

    def do_GET(self) -> None:
        if self.path.split("?")[0] != "/apis/smoke.prescale.dev/v1":
            self.send_response(404)
            self.end_headers()
            return
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(self.document)))
        self.end_headers()
        self.wfile.write(self.document)

    def log_message(self, format: str, *args: Any) -> None:
        return


@pytest.fixture
def discovery_server(tmp_path: Path, private_address: str) -> Iterator[tuple[int, bytes]]:
    """A TLS server on the private address answering one discovery document."""
    ca = pki.KeyPair(tmp_path / "ca.crt", tmp_path / "ca.key")
    leaf = pki.KeyPair(tmp_path / "srv.crt", tmp_path / "srv.key")
    pki.make_ca(ca, "smoke-ca")
    pki.make_leaf(leaf, ca, "smoke-api", server=True, dns=("smoke-api.default.svc",), ips=(private_address,))
    _Discovery.document = json.dumps({
        "kind": "APIResourceList", "apiVersion": "v1", "groupVersion": "smoke.prescale.dev/v1",
        "resources": [{"name": "things", "singularName": "thing", "namespaced": True,
                       "kind": "Thing", "verbs": ["get"]}],
    }).encode()
    port = procs.free_port(private_address)
    server = ThreadingHTTPServer((private_address, port), _Discovery)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(str(leaf.cert), str(leaf.key))
    server.socket = ctx.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield port, ca.cert.read_bytes()
    server.shutdown()
    server.server_close()
    thread.join(5)


def test_aggregator_routes_to_a_server_in_the_namespace(
        cluster: Cluster, discovery_server: tuple[int, bytes], private_address: str) -> None:
    port, ca_pem = discovery_server
    objects = [
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "smoke-api", "namespace": "default"},
         "spec": {"ports": [{"name": "https", "port": 443, "protocol": "TCP"}]}},
        {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
         "metadata": {"name": "smoke-api-1", "namespace": "default",
                      "labels": {"kubernetes.io/service-name": "smoke-api",
                                 "endpointslice.kubernetes.io/managed-by": "prescale-tests"}},
         "addressType": "IPv4",
         "endpoints": [{"addresses": [private_address], "conditions": {"ready": True}}],
         "ports": [{"name": "https", "port": port, "protocol": "TCP"}]},
        {"apiVersion": "apiregistration.k8s.io/v1", "kind": "APIService",
         "metadata": {"name": "v1.smoke.prescale.dev"},
         "spec": {"group": "smoke.prescale.dev", "version": "v1", "groupPriorityMinimum": 100,
                  "versionPriority": 100, "caBundle": base64.b64encode(ca_pem).decode(),
                  "service": {"name": "smoke-api", "namespace": "default", "port": 443}}},
    ]
    cluster.apply(yaml.safe_dump_all(objects))
    try:
        aggregation.wait_available(cluster, "v1.smoke.prescale.dev", 60)  # Available, then routed
        doc = json.loads(cluster.kubectl("get", "--raw", "/apis/smoke.prescale.dev/v1"))
        assert doc["groupVersion"] == "smoke.prescale.dev/v1"
        assert doc["resources"][0]["name"] == "things"
        assert aggregation.routes(cluster, "/apis/smoke.prescale.dev/v1")
        assert not aggregation.routes(cluster, "/apis/absent.prescale.dev/v1")
    finally:
        cluster.kubectl("delete", "apiservice", "v1.smoke.prescale.dev", "--ignore-not-found")
