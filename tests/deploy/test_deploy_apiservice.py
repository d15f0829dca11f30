"""The chart's APIServices become Available on the real control plane, with the real adapter
behind them.

The chart is rendered with its adapter defaults (both metrics APIs, a CA and serving
certificate the chart generates) and applied to a restricted namespace. Its adapter pods are
KWOK pods: scheduled and Ready, but nothing runs in them, so the first check is that the
aggregator reports both APIServices unavailable (its discovery request to the pods fails).
Then the pods make way (the Deployment scaled to 0) for the real ``prescale adapter`` process,
started with the container's own command line from the rendered Deployment, the certificate
and key from the rendered Secret, and the identity of the chart's ServiceAccount (a token from
the TokenRequest API), listening on the private address behind the chart's own Service (an
EndpointSlice stands in for the pods' addresses). Only what a pod would get from the kubelet
differs: the files' paths, the listen address, the port (the apiserver holds 6443 on the
private address) and the Prometheus URL (a local Prometheus instead of the cluster DNS name).
The APIServices become Available, and metric requests through the aggregator pass the adapter's
front-proxy authentication, its SubjectAccessReview and its pod listing under the chart's RBAC.
"""

from __future__ import annotations

import base64
import functools
import json
import ssl
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import yaml
from chart_cluster import GPU_TOLERATION, cleanup, get, restricted_namespace, wait_for
from deploylib import Obj, helm_template

from prescale.stack import aggregation, procs
from prescale.stack.cluster import Cluster, pinned_version
from prescale.stack.kube_api import http_ok

pytestmark = pytest.mark.cluster

HPA_CONTROLLER = "system:serviceaccount:kube-system:horizontal-pod-autoscaler"
"""The identity kube-controller-manager's HPA controller uses for metric requests."""
NAMES = {"v1beta1.external.metrics.k8s.io", "v1beta1.custom.metrics.k8s.io"}
VALUES = {"global": {"tolerations": [GPU_TOLERATION]}, "exporter": {"enabled": False},
          "controller": {"enabled": False}}
"""Chart defaults for the adapter (TLS mode auto: self-signed without cert-manager); the GPU
taint tolerated (the test cluster has only GPU nodes); the other components are left out."""


def one(objects: list[Obj], kind: str) -> Obj:
    found = [o for o in objects if o["kind"] == kind]
    assert len(found) == 1, f"expected one {kind}, rendered {[o['metadata']['name'] for o in found]}"
    return found[0]


def condition(cluster: Cluster, name: str) -> tuple[str, str, str]:
    """``(status, reason, message)`` of the APIService's Available condition."""
    conds = get(cluster, "apiservice", name).get("status", {}).get("conditions", [])
    found: dict[str, str] = next((c for c in conds if c["type"] == "Available"), {})
    return found.get("status", ""), found.get("reason", ""), found.get("message", "")


def test_chart_apiservices_become_available_with_the_real_adapter(
        cluster: Cluster, helm: Path, tmp_path: Path, private_address: str, start_prometheus: Any) -> None:
    with restricted_namespace(cluster, "pa") as ns:
        objects = [o for o in helm_template(helm, VALUES, release=ns, namespace=ns,
                                            extra=["--kube-version", pinned_version()])
                   if o["kind"] != "CustomResourceDefinition"]
        assert {o["metadata"]["name"] for o in objects if o["kind"] == "APIService"} == NAMES
        deployment, service = one(objects, "Deployment"), one(objects, "Service")
        try:
            cluster.apply(yaml.safe_dump_all(objects))
            _kwok_pods_do_not_serve(cluster, ns, deployment)
            prometheus = start_prometheus()
            with _real_adapter(cluster, tmp_path, ns, objects, address=private_address,
                               prometheus_url=prometheus.url) as port:
                cluster.apply(yaml.safe_dump(_endpoint_slice(service, private_address, port)))
                for name in sorted(NAMES):
                    aggregation.wait_available(cluster, name, 60)
                _requests_through_the_aggregator(cluster, ns)
        finally:
            cleanup(cluster, objects)


def _kwok_pods_do_not_serve(cluster: Cluster, ns: str, deployment: Obj) -> None:
    """With the Deployment's KWOK pods Ready behind the Service, the aggregator cannot reach an
    adapter (the check has teeth); then the pods are scaled away."""
    name = deployment["metadata"]["name"]
    wait_for(lambda: get(cluster, "deployment", name, "-n", ns).get("status", {}).get("readyReplicas", 0)
             >= deployment["spec"]["replicas"], 60, "the adapter's KWOK pods Ready", cluster)
    for api in sorted(NAMES):
        status, _, message = wait_for(functools.partial(_failed_discovery, cluster, api), 90,
                                      f"{api} reported unreachable while only KWOK pods back it", cluster)
        assert status == "False", message
    cluster.kubectl("scale", "deployment", name, "-n", ns, "--replicas=0")
    wait_for(lambda: not get(cluster, "pods", "-n", ns)["items"], 60, "the KWOK adapter pods gone", cluster)


def _failed_discovery(cluster: Cluster, name: str) -> tuple[str, str, str] | None:
    c = condition(cluster, name)
    return c if c[1] == "FailedDiscoveryCheck" else None


def _container(objects: list[Obj]) -> Obj:
    spec = one(objects, "Deployment")["spec"]["template"]["spec"]
    containers: list[Obj] = spec["containers"]
    assert [c["name"] for c in containers] == ["adapter"]
    return containers[0]


def _tls_files(objects: list[Obj], work: Path) -> tuple[str, Path]:
    """The Secret the pod mounts, written out; returns (mount path in the pod, local dir)."""
    pod = one(objects, "Deployment")["spec"]["template"]["spec"]
    mount = next(m for m in _container(objects)["volumeMounts"] if m["name"] == "tls")
    secret_name = next(v for v in pod["volumes"] if v["name"] == "tls")["secret"]["secretName"]
    secret = one(objects, "Secret")
    assert secret["metadata"]["name"] == secret_name, "the pod mounts a Secret the chart does not render"
    local = work / "tls"
    local.mkdir()
    for key, value in secret["data"].items():
        (local / key).write_bytes(base64.b64decode(value))
    return str(mount["mountPath"]), local


def _service_account_kubeconfig(cluster: Cluster, ns: str, sa: str, work: Path) -> Path:
    token = cluster.kubectl("create", "token", sa, "-n", ns, "--duration=15m").strip()
    path = work / "adapter-sa.kubeconfig"
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "sa",
        "clusters": [{"name": "local", "cluster": {"server": cluster.server,
                                                   "certificate-authority": str(cluster.pki.ca.cert)}}],
        "users": [{"name": sa, "user": {"token": token}}],
        "contexts": [{"name": "sa", "context": {"cluster": "local", "user": sa}}]}))
    return path


@contextmanager
def _real_adapter(cluster: Cluster, work: Path, ns: str, objects: list[Obj], *, address: str,
                  prometheus_url: str) -> Iterator[int]:
    """``prescale adapter`` with the rendered container's command line; yields its port."""
    container = _container(objects)
    assert container["command"] == ["prescale", "adapter"], container["command"]
    mount, tls = _tls_files(objects, work)
    port = procs.free_port(address)

    def local_file(path: str) -> str:
        assert path.startswith(f"{mount}/"), f"{path} is not in the mounted Secret ({mount})"
        return str(tls / path.removeprefix(f"{mount}/"))

    pod_only: dict[str, Callable[[str], str]] = {
        "--tls-cert-file": local_file, "--tls-private-key-file": local_file,
        "--secure-port": lambda _: str(port), "--prometheus-url": lambda _: prometheus_url}
    flags = {a.partition("=")[0]: a.partition("=")[2] for a in container["args"]}
    assert set(pod_only) <= set(flags), f"the chart's adapter args changed: {container['args']}"
    args = [f"{f}={pod_only[f](v)}" if f in pod_only else f"{f}={v}" for f, v in flags.items()]
    sa = one(objects, "Deployment")["spec"]["template"]["spec"]["serviceAccountName"]
    kubeconfig = _service_account_kubeconfig(cluster, ns, sa, work)
    p = procs.start("chart-adapter", procs.prescale_command(
        "adapter", *args, f"--bind-address={address}", f"--kubeconfig={kubeconfig}"), work / "adapter.log")
    try:
        ctx = ssl.create_default_context(cafile=str(tls / "ca.crt"))
        ctx.check_hostname = False  # the chart's certificate names the Service, not this address
        p.wait_ready(lambda: http_ok(f"https://{address}:{port}/readyz", ctx), 60, "ready (/readyz)")
        yield port
    finally:
        p.stop()


def _endpoint_slice(service: Obj, address: str, port: int) -> Obj:
    """The chart's Service, backed by the local process instead of the pods (same port name)."""
    svc = service["metadata"]
    port_name = service["spec"]["ports"][0]["name"]
    return {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": f"{svc['name']}-local-process", "namespace": svc["namespace"],
                         "labels": {"kubernetes.io/service-name": svc["name"],
                                    "endpointslice.kubernetes.io/managed-by": "prescale-tests"}},
            "addressType": "IPv4",
            "endpoints": [{"addresses": [address], "conditions": {"ready": True}}],
            "ports": [{"name": port_name, "port": port, "protocol": "TCP"}]}


def _requests_through_the_aggregator(cluster: Cluster, ns: str) -> None:
    """Discovery, then one metric per API as the HPA controller asks for it (its own service
    account, impersonated): the adapter authenticates the front proxy, asks the apiserver for a
    SubjectAccessReview and lists pods, as the chart's ServiceAccount; a missing RBAC rule in
    the chart answers 503 here. (The admin's group is allowed without a review, so the metric
    requests are not made as the admin.)"""
    for group_version in ("external.metrics.k8s.io/v1beta1", "custom.metrics.k8s.io/v1beta1"):
        discovery = cluster.get(f"/apis/{group_version}")
        assert discovery["kind"] == "APIResourceList", discovery
    metric = "inference_requests_per_second"
    for path, kind in [
            (f"/apis/external.metrics.k8s.io/v1beta1/namespaces/{ns}/{metric}", "ExternalMetricValueList"),
            (f"/apis/custom.metrics.k8s.io/v1beta1/namespaces/{ns}/pods/*/{metric}", "MetricValueList")]:
        doc = json.loads(cluster.kubectl("get", "--raw", path, f"--as={HPA_CONTROLLER}"))
        assert doc["kind"] == kind, doc
