"""The capacity-buffer and karpenter-nodepool headroom backends against the real API server.

Minimal CRDs written for these tests (tests/controller/data) stand in for cluster-autoscaler's
``CapacityBuffer`` and Karpenter's ``NodePool`` (with its scale subresource). Two
PredictiveAutoscalers replay the compressed NASA trace towards its morning rise; the
controller must size the buffer and raise the NodePool through ``/scale`` by exactly the
headroom it reports in status, and never take the NodePool below the replicas it found.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from controller_cluster_lib import (
    CompressedTrace,
    async_wait_for,
    gpu_deployment,
    pa_manifest,
    running_controller,
    trace_exporter,
    trace_prometheus,
)

from forecaster.kube import Kube
from prescale.stack.cluster import Cluster

pytestmark = pytest.mark.cluster

DATA = Path(__file__).parent / "data"
CRDS = {
    "capacitybuffers.autoscaling.x-k8s.io": DATA / "capacitybuffer-crd.yaml",
    "nodepools.karpenter.sh": DATA / "karpenter-nodepool-crd.yaml",
}
STEP_S = 2.0
CAPACITY_RPS = 15.0
BASELINE_NODES = 1


def serving(name: str, namespace: str) -> dict[str, Any]:
    """A Deployment the controller scales (no GPU request: only the headroom is under test)."""
    dep = gpu_deployment(name, namespace, 1, "1s")
    dep["spec"]["template"]["spec"]["containers"][0].pop("resources")
    return dep


def pool_pa(namespace: str, name: str, node_pool: dict[str, Any]) -> dict[str, Any]:
    return pa_manifest(
        namespace,
        name,
        name,
        pod_delay_s=1,
        capacity_rps=CAPACITY_RPS,
        step_s=STEP_S,
        maxReplicas=6,
        nodePool={"gpusPerNode": 8, "gpusPerReplica": 2, "nodeLeadTimeSeconds": 30, **node_pool},
    )


async def test_capacity_buffer_and_karpenter_nodepool_are_sized_as_forecast(
    cluster: Cluster, namespace: str, start_prometheus: Any
) -> None:
    for path in CRDS.values():
        cluster.apply_crds(path.read_text())
    nodepool = f"{namespace[:40].rstrip('-')}-gpu"
    trace = CompressedTrace(t0=time.time() + 8.0, bin_s=STEP_S, live_bin=338, scale=0.028)
    cluster.apply(
        yaml.safe_dump_all(
            [
                serving("buffered", namespace),
                serving("karpentered", namespace),
                {
                    "apiVersion": "autoscaling.x-k8s.io/v1alpha1",
                    "kind": "CapacityBuffer",
                    "metadata": {"name": "gpu-buffer", "namespace": namespace},
                    "spec": {"podTemplateRef": {"name": "gpu-slot"}, "replicas": 0},
                },
                {
                    "apiVersion": "karpenter.sh/v1",
                    "kind": "NodePool",
                    "metadata": {"name": nodepool},
                    "spec": {
                        "replicas": BASELINE_NODES,
                        "template": {"spec": {"nodeClassRef": {"name": "gpu"}}},
                    },
                },
                pool_pa(namespace, "buffered", {"backend": "capacity-buffer", "name": "gpu-buffer"}),
                pool_pa(namespace, "karpentered", {"backend": "karpenter-nodepool", "name": nodepool}),
            ]
        )
    )
    buffer_path = f"/apis/autoscaling.x-k8s.io/v1alpha1/namespaces/{namespace}/capacitybuffers/gpu-buffer"
    nodepool_path = f"/apis/karpenter.sh/v1/nodepools/{nodepool}"
    pa_path = f"/apis/autoscaling.prescale.dev/v1alpha1/namespaces/{namespace}/predictiveautoscalers"
    seen_nodepool: list[int] = []
    matches: dict[str, tuple[int, dict[str, Any]]] = {}
    try:
        async with Kube(str(cluster.kubeconfig)) as kube:
            with trace_exporter(lambda: trace.rps(time.time())) as port:
                p = trace_prometheus(start_prometheus, port, trace.history(1.0))

                async def sized_as_reported(name: str, path: str) -> bool:
                    """The object's replicas equal the headroom the PA reports, and it is > 0."""
                    obj = await kube.get(path)
                    replicas = int(obj["spec"].get("replicas", 0))
                    if name == "karpentered":
                        seen_nodepool.append(replicas)
                    status = (await kube.get(f"{pa_path}/{name}")).get("status") or {}
                    room = status.get("nodeHeadroom") or {}
                    if name == "buffered":
                        want = room.get("placeholders", 0)
                    else:
                        want = BASELINE_NODES + room.get("nodes", 0)
                    if room.get("gpus", 0) > 0 and replicas == want and (await kube.get(path)) == obj:
                        matches[name] = (replicas, room)
                    return len(matches) == 2

                async with running_controller(
                    cluster.kubeconfig, p.url, interval_s=STEP_S, namespace=namespace
                ):

                    async def both() -> bool:
                        await sized_as_reported("buffered", buffer_path)
                        return await sized_as_reported("karpentered", nodepool_path + "/scale")

                    await async_wait_for(both, 60, "buffer and NodePool sized as the PA reports")
            final = json.loads(cluster.kubectl("get", "pa", "-n", namespace, "-o", "json"))["items"]
    finally:
        cluster.kubectl("delete", "nodepool", nodepool, "--ignore-not-found")
        cluster.kubectl("delete", "crd", *CRDS, "--wait=false", "--ignore-not-found")
    print(f"\nsized as reported: {matches}; NodePool replicas seen {sorted(set(seen_nodepool))}")
    buf_replicas, buf_room = matches["buffered"]
    assert buf_replicas == -(-buf_room["gpus"] // 2), "buffer chunks are replica-sized (2 GPUs each)"
    np_replicas, np_room = matches["karpentered"]
    assert np_replicas == BASELINE_NODES + -(-np_room["gpus"] // 8)
    assert min(seen_nodepool) >= BASELINE_NODES, "the NodePool went below the replicas it had"
    for pa in final:
        conds = {c["type"]: c["status"] for c in pa["status"]["conditions"]}
        assert conds["Ready"] == "True", pa["status"]
