"""A real kube-apiserver restart: the controller re-establishes its watches and acts again.

The session's control plane is shared, so this test starts a control plane of its own and
stops and starts its kube-apiserver process (etcd and the other components keep running).
The reconcile interval is long (120 s): every action after the restart must come from a
re-established watch (a target change, a spec change), not from a periodic cycle.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from controller_cluster_lib import (
    async_wait_for,
    gpu_deployment,
    install_crd,
    pa_manifest,
    running_controller,
    sine_history,
    trace_exporter,
    trace_prometheus,
)

from forecaster.kube import Kube
from prescale.stack import cluster as cluster_mod
from prescale.stack import procs

pytestmark = pytest.mark.cluster

NS = "restart"
CAPACITY_RPS = 10.0
FLOOR = 15
"""minReplicas set after the restart: well above what 55 rps needs, so only the spec change reaches it."""


@pytest.fixture
def own_cluster(
    tmp_path: Path,
    private_address: str,
    start_cluster: Callable[[cluster_mod.ClusterConfig], cluster_mod.Cluster],
) -> cluster_mod.Cluster:
    """A control plane for this test alone (its apiserver on a port of its own)."""
    cfg = cluster_mod.ClusterConfig(
        work_dir=tmp_path / "cluster", address=private_address, apiserver_port=procs.free_port(), gpu_nodes=1
    )
    return start_cluster(cfg)


def actions(caplog: pytest.LogCaptureFixture) -> list[tuple[int, int]]:
    """``(from, to)`` of every scale the controller applied, in order."""
    return [
        (int(r.fields["from"]), int(r.fields["to"]))  # type: ignore[attr-defined]
        for r in caplog.records
        if r.name == "forecaster.controller.reconcile" and r.getMessage() == "scaled"
    ]


async def test_the_controller_resumes_after_a_real_api_server_restart(
    own_cluster: cluster_mod.Cluster, start_prometheus: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="forecaster.controller.reconcile")
    cluster = own_cluster
    install_crd(cluster)
    cluster.kubectl("create", "namespace", NS)
    demand = {"rps": 25.0}
    dep = f"/apis/apps/v1/namespaces/{NS}/deployments/model"
    serving = gpu_deployment("model", NS, 1, "1s")
    serving["spec"]["template"]["spec"]["containers"][0].pop("resources")
    pa = pa_manifest(NS, "model", "model", pod_delay_s=1, capacity_rps=CAPACITY_RPS, step_s=1, maxReplicas=20)
    with trace_exporter(lambda: demand["rps"]) as port:
        p = trace_prometheus(start_prometheus, port, sine_history(time.time() + 3, demand["rps"]))
        cluster.apply(yaml.safe_dump_all([serving, pa]))
        async with (
            Kube(str(cluster.kubeconfig)) as kube,
            running_controller(cluster.kubeconfig, p.url, interval_s=120.0, namespace=NS) as controller,
        ):

            async def replicas_at_least(n: int) -> bool:
                return int((await kube.get(dep))["spec"]["replicas"]) >= n

            await async_wait_for(lambda: replicas_at_least(3), 40, "the first cycle scales for 25 rps")
            await async_wait_for(lambda: controller.metrics.cycles == 1, 30, "the first cycle done")
            cycles = controller.metrics.cycles
            before = len(actions(caplog))
            demand["rps"] = 55.0  # needs 6 replicas from now on
            await asyncio.to_thread(cluster.stop_apiserver)
            await asyncio.sleep(3)
            errors_while_down = controller.metrics.errors
            await asyncio.to_thread(cluster.start_apiserver)
            back = time.time()
            # Someone scales the target down: only the re-established target watch can tell.
            await kube.merge_patch(f"{dep}/scale", {"spec": {"replicas": 1}})
            await async_wait_for(lambda: replicas_at_least(6), 40, "raised again after the restart")
            resumed_s = time.time() - back
            # A spec change: only the re-established PredictiveAutoscaler watch can tell.
            cluster.kubectl(
                "patch",
                "pa",
                "model",
                "-n",
                NS,
                "--type=merge",
                "-p",
                json.dumps({"spec": {"minReplicas": FLOOR}}),
            )
            await async_wait_for(lambda: replicas_at_least(FLOOR), 30, "the new floor applied")
            assert controller.metrics.cycles == cycles, "a periodic cycle ran: the watches were not shown"
            triggered = controller.triggered
    done = actions(caplog)
    print(
        f"\napiserver restart: acted {resumed_s:.1f} s after it was ready again; {triggered} triggered "
        f"reconciles; {errors_while_down} failed while down; actions {done}"
    )
    after = done[before:]
    assert after, "no scale was applied after the restart"
    assert after[0][0] == 1, f"the first action after the restart starts from the scale-down: {after}"
    assert all(a[0] != a[1] for a in done), f"an action changed nothing: {done}"
    for prev, cur in itertools.pairwise(done):
        if cur is after[0]:
            continue
        assert cur[0] == prev[1], f"an action repeated or skipped a step: {prev} then {cur}"
    assert after[-1][1] == FLOOR, "the floor (above any forecast of 55 rps) was the last action"
