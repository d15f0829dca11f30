"""The rendered chart applied to the real control plane (KWOK nodes and pods): CRDs first, then
everything else into a namespace that enforces the restricted Pod Security level; every
Deployment and DaemonSet becomes Available, the PredictiveAutoscaler passes the CRD's admission
rules, and cluster-scoped objects are removed afterwards."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from chart_cluster import GPU_TOLERATION, cleanup, get, restricted_namespace, wait_for
from deploylib import Obj, helm_template

from prescale.stack.cluster import Cluster, pinned_version
from prescale.stack.errors import StackError

pytestmark = pytest.mark.cluster


def values(release: str) -> dict[str, Any]:
    """Defaults, except: tolerate the GPU taint (the test cluster has only GPU nodes), no
    APIService registration (test_deploy_apiservice.py registers them with a real adapter
    behind them; here nothing would answer), a restricted
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
    with restricted_namespace(cluster, "pd") as name:
        yield name


def _apply_crds(cluster: Cluster, crds: list[Obj]) -> list[Obj]:
    """Apply CRDs the cluster lacks (never replace one another test installed); wait Established."""
    existing = {c["metadata"]["name"] for c in get(cluster, "crd")["items"]}
    created = [c for c in crds if c["metadata"]["name"] not in existing]
    if created:
        cluster.apply(yaml.safe_dump_all(created))
    for c in crds:
        cluster.wait_established(c["metadata"]["name"])
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
        cleanup(cluster, rest + created)
