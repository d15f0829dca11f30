"""Admission, and ``hpa-floor`` next to the real HPA (also with Prometheus gone), on the real
control plane."""

from __future__ import annotations

import asyncio
import itertools
import json
import math
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from controller_cluster_lib import (
    async_wait_for,
    gpu_deployment,
    hpa_manifest,
    pa_manifest,
    running_controller,
    trace_exporter,
    trace_prometheus,
)
from controller_external_api import external_metrics_api

from forecaster.decider import REASONS
from forecaster.kube import Kube
from prescale.stack.cluster import Cluster
from prescale.stack.errors import StackError

pytestmark = pytest.mark.cluster


def test_an_invalid_pa_is_rejected_at_admission_naming_the_field(cluster: Cluster, namespace: str) -> None:
    cases: list[tuple[dict[str, Any], str]] = [
        ({"minReplicas": 5, "maxReplicas": 2}, "spec.maxReplicas"),
        ({"actuation": {"mode": "hpa-floor"}}, "spec.actuation.hpaName"),
        ({"demand": {"query": "x", "preset": "inference-requests"}}, "spec.demand"),
        ({"actuation": {"mode": "sideways"}}, "spec.actuation.mode"),
        ({"nodePool": {"backend": "machine-deployment", "gpusPerNode": 8}}, "spec.nodePool.name"),
    ]
    for patch, field in cases:
        doc = pa_manifest(namespace, "bad", "m", pod_delay_s=2, capacity_rps=10, step_s=2, **patch)
        with pytest.raises(StackError) as e:
            cluster.apply(yaml.safe_dump(doc))
        assert field in str(e.value), (patch, str(e.value))


def wave(t: float, origin: float) -> float:
    """A 2 req/s swell with a 160 s period, rising from ``origin``."""
    return 2.0 * math.sin(2 * math.pi * (t - origin) / 160.0)


def flat_history(t0: float, rps: float, origin: float, span_s: float = 800.0) -> list[tuple[float, float]]:
    return [(t, rps + wave(t, origin)) for t in (t0 - span_s + i for i in range(int(span_s)))]


def replica_history(samples: list[int]) -> int:
    """How many times the replica count changed direction (0 or 1 = no fighting)."""
    steps = [b - a for a, b in itertools.pairwise(samples) if b != a]
    return sum(1 for a, b in itertools.pairwise(steps) if (a > 0) != (b > 0))


async def test_hpa_floor_does_not_fight_the_hpa_and_holds_when_prometheus_is_gone(
    cluster: Cluster, namespace: str, start_prometheus: Any, private_address: str, tmp_path: Path
) -> None:
    demand = {"rps": 20.0}
    # The swell is an eighth of a period in when the test starts and above 20 req/s for the next
    # 60 s, so the floor planned on it is 3 whatever the clock (in its trough it would be 2).
    origin = time.time() - 20.0
    with trace_exporter(lambda: demand["rps"] + wave(time.time(), origin)) as port:
        p = trace_prometheus(start_prometheus, port, flat_history(time.time() + 3, 20.0, origin))
        with external_metrics_api(cluster, namespace, private_address, tmp_path, lambda: demand["rps"]):
            cluster.apply(
                yaml.safe_dump_all(
                    [
                        gpu_deployment("model", namespace, 1, "2s"),
                        hpa_manifest(namespace, "model", 12, 5.0),
                        pa_manifest(
                            namespace,
                            "model",
                            "model",
                            pod_delay_s=2,
                            capacity_rps=10,
                            step_s=2,
                            maxReplicas=12,
                            actuation={"mode": "hpa-floor", "hpaName": "model"},
                        ),
                    ]
                )
            )
            replicas: list[int] = []
            async with (
                Kube(str(cluster.kubeconfig)) as kube,
                running_controller(cluster.kubeconfig, p.url, interval_s=2.0, namespace=namespace),
            ):
                dep = f"/apis/apps/v1/namespaces/{namespace}/deployments/model"
                hpa = f"/apis/autoscaling/v2/namespaces/{namespace}/horizontalpodautoscalers/model"

                reasons: list[str] = []

                async def floor_set_and_steady() -> bool:
                    pa_now = await kube.get(
                        f"/apis/autoscaling.prescale.dev/v1alpha1/namespaces/{namespace}/predictiveautoscalers/model"
                    )
                    last = (pa_now.get("status") or {}).get("lastDecision") or {}
                    r = f"{last.get('reason')}:{last.get('replicas')}"
                    if not reasons or reasons[-1] != r:
                        reasons.append(r)
                    h = await kube.get(hpa)
                    replicas.append(int((await kube.get(dep))["spec"]["replicas"]))
                    return (
                        h["spec"]["minReplicas"] >= 3 and len(replicas) > 12 and len(set(replicas[-12:])) == 1
                    )

                t0 = time.monotonic()
                try:
                    await async_wait_for(floor_set_and_steady, 60, "floor raised and replicas steady")
                except AssertionError as e:
                    raise AssertionError(f"{e}; decisions {reasons}; replicas {replicas[-24:]}") from None
                print(f"\nfloor raised and steady after {time.monotonic() - t0:.1f} s; decisions {reasons}")
                floor_before = (await kube.get(hpa))["spec"]["minReplicas"]
                demand["rps"] = 50.0  # an unforecast spike, seen by both

                async def hpa_above_floor() -> bool:
                    replicas.append(int((await kube.get(dep))["spec"]["replicas"]))
                    h = await kube.get(hpa)
                    return replicas[-1] == 10 and 3 <= h["spec"]["minReplicas"] < 10

                await async_wait_for(hpa_above_floor, 60, "the HPA scales above the floor")
                for _ in range(16):  # watch for a fight: the floor must not drag replicas around
                    replicas.append(int((await kube.get(dep))["spec"]["replicas"]))
                    await asyncio.sleep(0.25)
                floor_after = (await kube.get(hpa))["spec"]["minReplicas"]
                p.stop()  # Prometheus goes away: the floor holds, the HPA keeps reacting

                async def unhealthy() -> bool:
                    obj = await kube.get(
                        f"/apis/autoscaling.prescale.dev/v1alpha1/namespaces/{namespace}"
                        "/predictiveautoscalers/model"
                    )
                    conds = {c["type"]: c for c in obj.get("status", {}).get("conditions", [])}
                    c = conds.get("ForecastHealthy", {})
                    return bool(c.get("status") == "False" and c.get("reason") == "SourceUnavailable")

                await async_wait_for(unhealthy, 20, "ForecastHealthy=False after Prometheus stopped")
                demand["rps"] = 58.0

                async def hpa_reacts() -> bool:
                    return int((await kube.get(dep))["spec"]["replicas"]) == 12

                await async_wait_for(hpa_reacts, 30, "the HPA reacting while the forecast is down")
                floor_held = (await kube.get(hpa))["spec"]["minReplicas"]
    pa = json.loads(cluster.kubectl("get", "pa", "model", "-n", namespace, "-o", "json"))
    print(
        f"\nhpa-floor: floor {floor_before} -> {floor_after}; replicas {replicas[0]} -> {replicas[-1]}, "
        f"direction changes {replica_history(replicas)}"
    )
    assert replica_history(replicas) == 0, replicas
    assert replicas[-1] == 10 > floor_after >= floor_before
    assert floor_held == floor_after, "the last safe floor was not held"
    events = json.loads(cluster.kubectl("get", "events", "-n", namespace, "-o", "json"))["items"]
    assert any(e["reason"] == "SourceUnavailable" for e in events)
    assert pa["status"]["lastDecision"]["reason"] in REASONS
