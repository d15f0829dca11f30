"""The controller on the real control plane: KWOK pods with a start-up delay, the real HPA.

The headline test replays a real trace (NASA KSC HTTP, July 1995 weekdays) with time
compressed 540x (an 18-minute bucket lasts 2 s, a day 160 s): four days of history are
backfilled into a real Prometheus, the fifth day's morning rise is served live. The
controller scales one Deployment in ``direct`` mode; the real HPA scales an identical one
on the same demand through the external metrics API. Both are measured against the moment
each replica count became *needed*.
"""

from __future__ import annotations

import asyncio
import json
import math
import statistics
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from controller_cluster_lib import (
    CompressedTrace,
    ReadyHistory,
    gpu_deployment,
    hpa_manifest,
    pa_manifest,
    poll_ready,
    running_controller,
    trace_exporter,
    trace_prometheus,
)
from controller_external_api import external_metrics_api

from forecaster.kube import Kube
from prescale.stack.cluster import Cluster

pytestmark = pytest.mark.cluster

POD_DELAY_S = 10.0
CAPACITY_RPS = 10.0
STEP_S = 2.0


def need_times(trace: CompressedTrace, t_from: float, t_to: float, k0: int) -> dict[int, float]:
    """First wall time each replica count above ``k0`` was needed by the demand."""
    out: dict[int, float] = {}
    t = t_from
    while t <= t_to:
        k = math.ceil(trace.rps(t) / CAPACITY_RPS - 1e-9)
        for j in range(k0 + 1, k + 1):
            out.setdefault(j, t)
        t += 0.05
    return out


async def test_direct_mode_has_replicas_ready_before_the_rise_and_the_hpa_lags(
    cluster: Cluster, namespace: str, start_prometheus: Any, private_address: str, tmp_path: Path
) -> None:
    started: list[Any] = []  # the Prometheus the HPA's metric is read from, once it runs

    def hpa_demand() -> float:
        (prometheus,) = started
        return float(sum(float(r["value"][1]) for r in prometheus.query("sum(trace_requests_per_second)")))

    # Registering the external metrics API waits for the aggregator (seconds, more under load):
    # done before the trace's clock starts, so the controller runs well before the rise.
    # Nothing asks for the metric itself before the HPA exists.
    with external_metrics_api(cluster, namespace, private_address, tmp_path, hpa_demand):
        trace = CompressedTrace(t0=time.time() + 8.0, bin_s=STEP_S, live_bin=338, scale=0.028)
        with trace_exporter(lambda: trace.rps(time.time())) as port:
            p = trace_prometheus(start_prometheus, port, trace.history(1.0))
            started.append(p)
            k0 = math.ceil(trace.rps(trace.t0) / CAPACITY_RPS)
            cluster.apply(
                yaml.safe_dump_all(
                    [
                        gpu_deployment("predicted", namespace, k0, f"{POD_DELAY_S:.0f}s"),
                        gpu_deployment("reactive", namespace, k0, f"{POD_DELAY_S:.0f}s"),
                        hpa_manifest(namespace, "reactive", 7, CAPACITY_RPS),
                        pa_manifest(
                            namespace,
                            "predicted",
                            "predicted",
                            pod_delay_s=POD_DELAY_S,
                            capacity_rps=CAPACITY_RPS,
                            step_s=STEP_S,
                        ),
                    ]
                )
            )
            history = ReadyHistory()
            end = trace.t0 + 20 * STEP_S
            async with (
                Kube(str(cluster.kubeconfig)) as kube,
                running_controller(cluster.kubeconfig, p.url, interval_s=STEP_S, namespace=namespace),
            ):
                stop = asyncio.Event()
                poller = asyncio.create_task(
                    poll_ready(kube, namespace, ["predicted", "reactive"], history, stop)
                )
                await asyncio.sleep(max(0.0, end + POD_DELAY_S + 3 - time.time()))
                stop.set()
                await poller
    pa = json.loads(cluster.kubectl("get", "pa", "predicted", "-n", namespace, "-o", "json"))
    need = need_times(trace, trace.t0, end, k0)
    ahead, lag = [], []
    for k, t_need in sorted(need.items()):
        t_pred, t_hpa = history.first_ready("predicted", k), history.first_ready("reactive", k)
        assert t_pred is not None, f"predicted never had {k} ready; status={pa.get('status')}"
        ahead.append(t_need - t_pred)
        lag.append(math.inf if t_hpa is None else t_hpa - t_need)
    print(
        f"\nreplicas needed {sorted(need)}; prescale ready ahead of need (s): {[round(a, 1) for a in ahead]}"
        f"\nHPA ready after need (s): {[round(x, 1) for x in lag]}"
    )
    assert len(need) >= 3, f"the replayed rise must need several more replicas: {need}"
    assert min(ahead) >= 0.0, f"prescale was late: {ahead}; status={pa['status']}"
    assert min(lag) >= POD_DELAY_S - 1.0, f"the HPA cannot beat its pods' start-up delay: {lag}"
    assert statistics.median(ahead) + statistics.median(lag) >= POD_DELAY_S
    conds = {c["type"]: c for c in pa["status"]["conditions"]}
    assert conds["Ready"]["status"] == "True"
    assert conds["ForecastHealthy"]["status"] == "True", conds
    assert pa["status"]["leadTimeSeconds"] >= POD_DELAY_S - 1.0, pa["status"]
    events = json.loads(cluster.kubectl("get", "events", "-n", namespace, "-o", "json"))["items"]
    assert any(e["reason"] == "Scaled" and e["involvedObject"]["name"] == "predicted" for e in events)
