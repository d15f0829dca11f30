"""Two controller processes on one Lease: the leader is killed mid-scale, the other takes over
within 15 s, and no action is applied twice."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from controller_cluster_lib import (
    async_wait_for,
    gpu_deployment,
    pa_manifest,
    sine_history,
    trace_exporter,
    trace_prometheus,
)

from forecaster.kube import Kube
from prescale.stack import procs
from prescale.stack.cluster import Cluster

pytestmark = pytest.mark.cluster

LEASE_S = 6.0


@contextlib.contextmanager
def controller_process(
    cluster: Cluster, prom_url: str, namespace: str, identity: str, log: Path
) -> Iterator[subprocess.Popen[bytes]]:
    argv = [
        sys.executable,
        "-m",
        "prescale.cli",
        "--log-format",
        "json",
        "forecaster",
        f"--kubeconfig={cluster.kubeconfig}",
        f"--prometheus-url={prom_url}",
        f"--namespace={namespace}",
        "--interval=1",
        f"--lease-namespace={namespace}",
        "--lease-name=prescale-forecaster",
        f"--lease-duration={LEASE_S}",
        "--renew-period=1",
        f"--identity={identity}",
        f"--metrics-address=127.0.0.1:{procs.free_port()}",
    ]
    with log.open("wb") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)


def scaled_events(cluster: Cluster, namespace: str) -> list[dict[str, Any]]:
    items = json.loads(cluster.kubectl("get", "events", "-n", namespace, "-o", "json"))["items"]
    return sorted((e for e in items if e["reason"] == "Scaled"), key=lambda e: e["firstTimestamp"])


async def test_killing_the_leader_mid_scale_hands_over_within_15s_without_repeating_actions(
    cluster: Cluster, namespace: str, start_prometheus: Any, tmp_path: Path
) -> None:
    demand = {"rps": 15.0}
    with trace_exporter(lambda: demand["rps"]) as port:
        p = trace_prometheus(start_prometheus, port, sine_history(time.time() + 3, 15.0))
        cluster.apply(
            yaml.safe_dump_all(
                [
                    gpu_deployment("model", namespace, 1, "2s"),
                    pa_manifest(
                        namespace,
                        "model",
                        "model",
                        pod_delay_s=2,
                        capacity_rps=10,
                        step_s=1,
                        maxReplicas=8,
                        behavior={"scaleDownDelaySeconds": 300},
                    ),
                ]
            )
        )
        lease = f"/apis/coordination.k8s.io/v1/namespaces/{namespace}/leases/prescale-forecaster"
        dep = f"/apis/apps/v1/namespaces/{namespace}/deployments/model"
        with (
            controller_process(cluster, p.url, namespace, "a", tmp_path / "a.log") as a,
            controller_process(cluster, p.url, namespace, "b", tmp_path / "b.log") as b,
        ):
            async with Kube(str(cluster.kubeconfig)) as kube:

                async def holder() -> str:
                    try:
                        return str((await kube.get(lease))["spec"].get("holderIdentity") or "")
                    except Exception:
                        return ""

                samples: list[tuple[int, int]] = []
                recorder = asyncio.create_task(record_writes(kube, namespace, "model", samples))
                first = await async_wait_for(holder, 30, "a leader")
                await async_wait_for(lambda: scaled_events(cluster, namespace), 30, "the first scale")
                demand["rps"] = 45.0  # the leader starts scaling up ...

                async def scaled_above(n: int) -> bool:
                    return int((await kube.get(dep))["spec"]["replicas"]) >= n

                await async_wait_for(lambda: scaled_above(4), 20, "the leader scaling for the rise")
                leader, standby = (a, b) if first == "a" else (b, a)
                leader.send_signal(signal.SIGKILL)  # ... and dies mid-scale
                killed_at = time.time()
                leader.wait(5)
                await async_wait_for(lambda: _is_other(holder, first), 20, "the standby taking the Lease")
                took_over_s = time.time() - killed_at
                demand["rps"] = 65.0  # the new leader must act on what comes next

                await async_wait_for(lambda: scaled_above(7), 30, "the new leader scaling")
                assert standby.poll() is None
                recorder.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await recorder
    messages = [e["message"] for e in scaled_events(cluster, namespace)]
    replicas = [r for i, (r, _) in enumerate(samples) if i == 0 or r != samples[i - 1][0]]
    writes = samples[-1][1] - samples[0][1]
    print(
        f"\nfailover: standby took the Lease {took_over_s:.1f} s after the kill; replicas {replicas}, "
        f"{writes} scale writes; events {messages}"
    )
    assert took_over_s <= 15.0
    assert replicas == sorted(replicas), f"scale actions went back and forth: {replicas}"
    # Every write to the Deployment changed its replicas: nothing was applied twice.
    assert writes == len(replicas) - 1, (samples, messages)
    assert len(messages) == len(set(messages)), f"an action was reported twice: {messages}"


async def record_writes(kube: Kube, namespace: str, name: str, samples: list[tuple[int, int]]) -> None:
    """Append ``(replicas, generation)`` for the Deployment as it is now, then for every write
    to its spec, from a watch (until cancelled): a poll misses a write when another follows
    it within the poll's period, as a triggered reconcile and a cycle can."""
    path = f"/apis/apps/v1/namespaces/{namespace}/deployments"
    listed = await kube.get(path)
    (now,) = (d for d in listed["items"] if d["metadata"]["name"] == name)
    samples.append((int(now["spec"]["replicas"]), int(now["metadata"]["generation"])))
    version = str(listed["metadata"]["resourceVersion"])
    while True:  # a watch that ends is resumed from the last version it delivered
        async for kind, obj in kube.watch(path, version, timeout_s=300):
            version = str(obj["metadata"]["resourceVersion"])
            if kind == "BOOKMARK" or obj["metadata"]["name"] != name:
                continue
            generation = int(obj["metadata"]["generation"])
            if generation != samples[-1][1]:
                samples.append((int(obj["spec"]["replicas"]), generation))


async def _is_other(holder: Any, first: str) -> bool:
    h = await holder()
    return bool(h) and h != first
