"""The API server goes away and comes back: the controller keeps running, resumes its watch,
and acts on a change made while it was cut off.

The controller reaches the real apiserver through a TCP relay on loopback; stopping the relay
(listener and open connections) is, from the controller's side, the apiserver restarting,
without disturbing the control plane the rest of the session shares.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from controller_cluster_lib import (
    async_wait_for,
    gpu_deployment,
    pa_manifest,
    running_controller,
    sine_history,
    trace_exporter,
    trace_prometheus,
)

from forecaster.kube import Kube
from prescale.stack import procs
from prescale.stack.cluster import Cluster

pytestmark = pytest.mark.cluster


class Relay:
    """A TCP relay ``127.0.0.1:port -> upstream`` that can be cut and restored."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.port = procs.free_port()
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", self.port)

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, OSError):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        writer.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        self._writers.update((writer, up_writer))
        for r, w in ((reader, up_writer), (up_reader, writer)):
            task = asyncio.create_task(self._pipe(r, w))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        for w in self._writers:
            w.close()
        self._writers.clear()
        for t in list(self._tasks):
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


def relayed_kubeconfig(cluster: Cluster, port: int, path: Path) -> Path:
    doc = yaml.safe_load(cluster.kubeconfig.read_text())
    doc["clusters"][0]["cluster"]["server"] = f"https://127.0.0.1:{port}"
    path.write_text(yaml.safe_dump(doc))
    return path


async def test_the_controller_resumes_after_the_api_server_comes_back(
    cluster: Cluster, namespace: str, start_prometheus: Any, tmp_path: Path
) -> None:
    with trace_exporter(lambda: 15.0) as port:
        p = trace_prometheus(start_prometheus, port, sine_history(time.time() + 3, 15.0))
        cluster.apply(
            yaml.safe_dump_all(
                [
                    gpu_deployment("model", namespace, 1, "1s"),
                    pa_manifest(
                        namespace, "model", "model", pod_delay_s=1, capacity_rps=10, step_s=1, maxReplicas=8
                    ),
                ]
            )
        )
        relay = Relay(int(cluster.server.rsplit(":", 1)[1]))
        await relay.start()
        kubeconfig = relayed_kubeconfig(cluster, relay.port, tmp_path / "relayed-kubeconfig")
        pa_path = (
            f"/apis/autoscaling.prescale.dev/v1alpha1/namespaces/{namespace}/predictiveautoscalers/model"
        )
        dep = f"/apis/apps/v1/namespaces/{namespace}/deployments/model"
        try:
            async with (
                Kube(str(cluster.kubeconfig)) as kube,
                running_controller(kubeconfig, p.url, interval_s=1.0, namespace=namespace) as controller,
            ):

                async def reconciled() -> bool:
                    conds = (await kube.get(pa_path)).get("status", {}).get("conditions", [])
                    return any(c["type"] == "Ready" and c["status"] == "True" for c in conds)

                await async_wait_for(reconciled, 30, "the first reconcile")
                relists = controller.relists
                await relay.stop()  # the apiserver "restarts"
                cluster.kubectl(
                    "patch",
                    "pa",
                    "model",
                    "-n",
                    namespace,
                    "--type=merge",
                    "-p",
                    json.dumps({"spec": {"minReplicas": 5}}),
                )
                await asyncio.sleep(3)
                errors_while_down = controller.metrics.errors
                await relay.start()
                back = time.time()

                async def scaled_to_floor() -> bool:
                    return int((await kube.get(dep))["spec"]["replicas"]) >= 5

                await async_wait_for(scaled_to_floor, 30, "acting on the change made during the outage")
                resumed_s = time.time() - back
        finally:
            await relay.stop()
    print(
        f"\noutage: {errors_while_down} reconciles failed while cut off; acted {resumed_s:.1f} s after the "
        f"API came back ({controller.relists - relists} relists)"
    )
    assert resumed_s < 20
