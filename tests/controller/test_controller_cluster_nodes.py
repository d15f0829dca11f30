"""GPU node-pool headroom with placeholder pods on the real control plane.

A stand-in for the cluster's node autoscaler adds a KWOK GPU node to the test's pool
``NODE_DELAY_S`` after it sees an unschedulable pod. The controller replays the compressed
NASA trace; before the morning rise it asks for placeholder pods, the stand-in adds a node
for them, and when the serving pods come they preempt the placeholders.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import time
from typing import Any

import pytest
import yaml
from controller_cluster_lib import (
    CompressedTrace,
    gpu_deployment,
    pa_manifest,
    running_controller,
    trace_exporter,
    trace_prometheus,
)

from forecaster.controller.status import parse_time
from forecaster.kube import Kube, NotFound
from prescale.stack.cluster import Cluster, gpu_node_manifest

pytestmark = pytest.mark.cluster

NODE_DELAY_S = 4.0
CAPACITY_RPS = 15.0
STEP_S = 2.0


async def node_stand_in(
    kube: Kube, namespace: str, pool: str, created: dict[str, float], stop: asyncio.Event
) -> None:
    """Add one 8-GPU node to ``pool`` when a pod in ``namespace`` stays unschedulable."""
    pending_since: float | None = None
    while not stop.is_set():
        pods = (await kube.get(f"/api/v1/namespaces/{namespace}/pods"))["items"]
        stuck = [
            p
            for p in pods
            if any(
                c.get("type") == "PodScheduled" and c.get("reason") == "Unschedulable"
                for c in (p.get("status") or {}).get("conditions") or []
            )
            and not p["metadata"].get("deletionTimestamp")
        ]
        now = time.time()
        if not stuck:
            pending_since = None
        elif pending_since is None:
            pending_since = now
        elif now - pending_since >= NODE_DELAY_S:
            name = f"{pool}-n{len(created)}"
            await kube.create("/api/v1/nodes", gpu_node_manifest(name, 8, pool=pool))
            created[name] = now
            pending_since = None
        await asyncio.sleep(0.25)


async def test_placeholders_bring_nodes_ahead_and_serving_pods_preempt_them(
    cluster: Cluster, namespace: str, start_prometheus: Any
) -> None:
    pool = namespace[:40].rstrip("-")
    trace = CompressedTrace(t0=time.time() + 8.0, bin_s=STEP_S, live_bin=338, scale=0.028)
    created: dict[str, float] = {}
    serving = gpu_deployment("model", namespace, 1, "2s")
    pod_spec = serving["spec"]["template"]["spec"]
    pod_spec["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] = "4"
    pod_spec["nodeSelector"] = {"prescale.dev/node-pool": pool}
    async with Kube(str(cluster.kubeconfig)) as kube:
        try:
            await kube.create("/api/v1/nodes", gpu_node_manifest(f"{pool}-n0", 8, pool=pool))
            created[f"{pool}-n0"] = time.time()
            with trace_exporter(lambda: trace.rps(time.time())) as port:
                p = trace_prometheus(start_prometheus, port, trace.history(1.0))
                cluster.apply(
                    yaml.safe_dump_all(
                        [
                            serving,
                            pa_manifest(
                                namespace,
                                "model",
                                "model",
                                pod_delay_s=2,
                                capacity_rps=CAPACITY_RPS,
                                step_s=STEP_S,
                                maxReplicas=4,
                                nodePool={
                                    "backend": "placeholder-pods",
                                    "gpusPerNode": 8,
                                    "gpusPerReplica": 4,
                                    "nodeLeadTimeSeconds": 10,
                                    "nodeSelector": {"prescale.dev/node-pool": pool},
                                },
                            ),
                        ]
                    )
                )
                stop = asyncio.Event()
                stand_in = asyncio.create_task(node_stand_in(kube, namespace, pool, created, stop))
                seen_serving: set[str] = set()
                scaled_at: dict[int, float] = {}
                asked_history: list[tuple[float, int]] = []
                async with running_controller(
                    cluster.kubeconfig, p.url, interval_s=STEP_S, namespace=namespace
                ):
                    while time.time() < trace.t0 + 16 * STEP_S:
                        dep = await kube.get(f"/apis/apps/v1/namespaces/{namespace}/deployments/model")
                        scaled_at.setdefault(int(dep["spec"]["replicas"]), time.time())
                        with contextlib.suppress(NotFound):
                            ph = await kube.get(
                                f"/apis/apps/v1/namespaces/{namespace}/deployments/model-headroom"
                            )
                            asked = int(ph["spec"]["replicas"])
                            if not asked_history or asked_history[-1][1] != asked:
                                asked_history.append((round(time.time() - trace.t0, 1), asked))
                        pods = await kube.get(
                            f"/api/v1/namespaces/{namespace}/pods", {"labelSelector": "app=model"}
                        )
                        seen_serving.update(x["metadata"]["name"] for x in pods["items"])
                        await asyncio.sleep(0.25)
                stop.set()
                await stand_in
            final = await kube.get(f"/api/v1/namespaces/{namespace}/pods", {"labelSelector": "app=model"})
            placeholders = await kube.get(f"/apis/apps/v1/namespaces/{namespace}/deployments/model-headroom")
            events = (await kube.get(f"/api/v1/namespaces/{namespace}/events"))["items"]
            pa = json.loads(cluster.kubectl("get", "pa", "model", "-n", namespace, "-o", "json"))
        finally:
            for name in created:
                with contextlib.suppress(NotFound):
                    await kube.delete(f"/api/v1/nodes/{name}")
    need3 = next(
        t
        for t in (trace.t0 + i * 0.05 for i in range(2000))
        if math.ceil(trace.rps(t) / CAPACITY_RPS - 1e-9) >= 3
    )
    added = sorted(t for n, t in created.items() if not n.endswith("-n0"))
    st = pa["status"]
    print(
        f"\nnodes added at {[round(t - trace.t0, 1) for t in added]} s; 3 replicas needed at "
        f"{need3 - trace.t0:.1f} s; scaled to 3 at {scaled_at.get(3, math.nan) - trace.t0:.1f} s; "
        f"placeholders asked (s, n): {asked_history}; node lead planned at the end: "
        f"{st.get('nodeLeadTimeSeconds')} s from {st.get('nodeLeadTimeSamples')} sample(s)"
    )
    assert added, f"no node was added for the placeholders; status={pa['status']}"
    assert added[0] < need3, "the node came only after the demand needed it"
    preempted = [e for e in events if e["reason"] == "Preempted"]
    timeline = sorted(
        (e.get("lastTimestamp") or e.get("eventTime") or "", e["reason"], e["involvedObject"]["name"])
        for e in events
    )
    assert preempted, f"no placeholder was preempted by a serving pod; events: {timeline}"
    assert all("headroom" in e["involvedObject"]["name"] for e in preempted)
    final_names = {x["metadata"]["name"] for x in final["items"]}
    assert seen_serving == final_names, "a serving pod was removed"
    assert "nodeHeadroom" in pa["status"]
    # Node lead time: measured from the headroom request to the new node Ready, and planned for.
    first_ask = parse_time(placeholders["metadata"]["creationTimestamp"])
    measured = pa["status"].get("nodeLeadTimeSeconds")
    assert pa["status"].get("nodeLeadTimeSamples", 0) >= 1, f"no node scale-up measured: {pa['status']}"
    assert measured >= NODE_DELAY_S - 1, "shorter than the stand-in's delay"
    assert measured <= added[-1] - first_ask + 2, "longer than from the first ask to the last node"
