"""The rendered chart applied to the real control plane (KWOK nodes and pods): CRDs first, then
everything else into a namespace that enforces the restricted Pod Security level; every
Deployment and DaemonSet becomes Available, the PredictiveAutoscaler passes the CRD's admission
rules, and cluster-scoped objects are removed afterwards."""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from deploylib import Obj, helm_template

from prescale.stack import polling
from prescale.stack.cluster import Cluster, pinned_version
from prescale.stack.errors import StackError

pytestmark = pytest.mark.cluster

GPU_TOLERATION = {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
CLUSTER_SCOPED = {"ClusterRole", "ClusterRoleBinding", "PriorityClass", "APIService",
                  "CustomResourceDefinition"}


def wait_for(cond: Callable[[], Any], timeout_s: float, what: str, cluster: Cluster) -> Any:
    return polling.wait_for(cond, timeout_s, what, cluster.logs, interval_s=0.5)


def get(cluster: Cluster, *args: str) -> Any:
    return json.loads(cluster.kubectl("get", *args, "-o", "json"))


def values(release: str) -> dict[str, Any]:
    """Defaults, except: tolerate the GPU taint (the test cluster has only GPU nodes), no
    APIService registration (the session's adapter tests own those names), a restricted
    exporter (the namespace enforces restricted), a release-scoped PriorityClass."""
    return {
        "global": {"tolerations": [GPU_TOLERATION]},
        "adapter": {"apiServices": {"external": False, "custom": False}},
        "exporter": {"podResources": {"enabled": False}},
        "controller": {"placeholderPriorityClass": {"name": f"{release}-placeholder"}},
        "serving": {"enabled": True, "predictiveAutoscaler": {"enabled": True}},
    }


@pytest.fixture
def release(cluster: Cluster) -> Iterator[str]:
    name = f"pd{secrets.token_hex(3)}"
    cluster.apply(yaml.safe_dump({"apiVersion": "v1", "kind": "Namespace", "metadata": {
        "name": name, "labels": {"pod-security.kubernetes.io/enforce": "restricted",
                                 "pod-security.kubernetes.io/warn": "restricted"}}}))
    yield name
    cluster.kubectl("delete", "namespace", name, "--wait=false")


def _cleanup(cluster: Cluster, objects: list[Obj]) -> None:
    for o in objects:
        args = [o["kind"].lower(), o["metadata"]["name"], "--ignore-not-found", "--wait=false"]
        if o["kind"] in CLUSTER_SCOPED:
            cluster.kubectl("delete", *args)
        elif o["metadata"].get("namespace") == "kube-system":
            cluster.kubectl("delete", "-n", "kube-system", *args)


def _apply_crds(cluster: Cluster, crds: list[Obj]) -> list[Obj]:
    """Apply CRDs the cluster lacks (never replace one another test installed); wait Established."""
    existing = {c["metadata"]["name"] for c in get(cluster, "crd")["items"]}
    created = [c for c in crds if c["metadata"]["name"] not in existing]
    if created:
        cluster.apply(yaml.safe_dump_all(created))
    for c in crds:
        cluster.kubectl("wait", "--for=condition=Established", "--timeout=30s",
                        f"crd/{c['metadata']['name']}")
    return created


def _available(cluster: Cluster, namespace: str) -> dict[str, Any] | None:
    deployments = get(cluster, "deployments", "-n", namespace)["items"]
    daemonsets = get(cluster, "daemonsets", "-n", namespace)["items"]
    ready: dict[str, Any] = {}
    for d in deployments:
        conds = {c["type"]: c["status"] for c in d.get("status", {}).get("conditions", [])}
        want = d["spec"].get("replicas", 1)
        if conds.get("Available") != "True" or d["status"].get("readyReplicas", 0) < want:
            return None
        ready[f"Deployment/{d['metadata']['name']}"] = d["status"]["readyReplicas"]
    for ds in daemonsets:
        s = ds.get("status", {})
        if not s.get("desiredNumberScheduled") or s.get("numberAvailable", 0) < s["desiredNumberScheduled"]:
            return None
        ready[f"DaemonSet/{ds['metadata']['name']}"] = s["numberAvailable"]
    return ready if deployments and daemonsets else None


def _assert_restricted_is_enforced(cluster: Cluster, namespace: str) -> None:
    """The admission that let the chart's pods in rejects a root pod: the check has teeth."""
    root_pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "root", "namespace": namespace},
                "spec": {"tolerations": [GPU_TOLERATION],
                         "containers": [{"name": "c", "image": "example.invalid/x:1",
                                         "securityContext": {"runAsUser": 0}}]}}
    with pytest.raises(StackError, match="violates PodSecurity"):
        cluster.apply(yaml.safe_dump(root_pod))


def test_chart_installs_and_every_workload_becomes_available(
        cluster: Cluster, release: str, helm: Path) -> None:
    objects = helm_template(helm, values(release), release=release, namespace=release,
                            extra=["--kube-version", pinned_version()])
    crds = [o for o in objects if o["kind"] == "CustomResourceDefinition"]
    rest = [o for o in objects if o["kind"] != "CustomResourceDefinition"]
    created: list[Obj] = []
    try:
        created = _apply_crds(cluster, crds)
        try:
            out = cluster.apply(yaml.safe_dump_all(rest))
        except StackError as e:
            pytest.fail(f"kubectl apply rejected the chart: {e}")
        assert "Warning" not in out, out
        ready = wait_for(lambda: _available(cluster, release), 120, "workloads Available", cluster)
        assert ready == {f"Deployment/{release}-prescale-adapter": 2,
                         f"Deployment/{release}-prescale-controller": 2,
                         "Deployment/model-server": 1,
                         f"DaemonSet/{release}-prescale-exporter": 2}, ready
        pods = get(cluster, "pods", "-n", release)["items"]
        assert all(p["spec"]["nodeName"].startswith("gpu-node-") for p in pods)
        pa = get(cluster, "predictiveautoscalers", "model-server", "-n", release)
        assert pa["spec"]["actuation"]["hpaName"] == "model-server"
        _assert_restricted_is_enforced(cluster, release)
        pdbs = get(cluster, "pdb", "-n", release)["items"]
        assert {p["metadata"]["name"] for p in pdbs} >= {f"{release}-prescale-adapter",
                                                          f"{release}-prescale-controller"}
    finally:
        _cleanup(cluster, rest + created)
