"""A real Prometheus scrapes the exporter and answers the PromQL the autoscaler relies on."""

from __future__ import annotations

import asyncio
import functools
import shutil
import socket
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from exporter_kubelet import FakeKubelet, pod

from gpu_exporter.backend import PROFILES, SimulatedBackend, constant_load
from gpu_exporter.collection import Collection, Intervals, StaticTargets
from gpu_exporter.pods import PodResourcesClient
from gpu_exporter.server import ServerDeps, make_app
from gpu_exporter.traffic import Target
from prescale.stack.kube_api import http_ok
from prescale.stack.polling import wait_for

pytestmark = pytest.mark.prometheus
DEADLINE_S = 30.0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.fixture
def prometheus_bin() -> str:
    path = shutil.which("prometheus")
    if path is None:
        pytest.skip("prometheus binary not installed (Debian package 'prometheus')")
    return path


async def _serving_pod() -> AsyncIterator[str]:
    """A bundled-server stand-in whose request counter grows by 10 per scrape."""
    count = 0

    async def metrics(_request: web.Request) -> web.Response:
        nonlocal count
        count += 10
        return web.Response(text=f'# TYPE inference_requests_total counter\n'
                                 f'inference_requests_total{{model="demo",code="200"}} {count}\n')

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    async with TestServer(app, host="127.0.0.1") as server:
        yield str(server.make_url("/metrics"))


@pytest.fixture
def kubelet_socket(tmp_path: Path) -> Iterator[tuple[Path, list[str]]]:
    sim = SimulatedBackend(PROFILES["h100-80gb"], 2, constant_load(0.5), node="n1")
    uuids = [d.uuid for d in sim.devices]
    server = FakeKubelet(tmp_path / "kubelet.sock",
                         [pod("serving", "llm-0", "server", "nvidia.com/gpu", uuids[0])]).start()
    yield tmp_path / "kubelet.sock", uuids
    server.stop()


async def _query(session: aiohttp.ClientSession, base: str, promql: str) -> list[dict[str, Any]]:
    """Poll an instant query until it returns a result or the deadline passes."""
    deadline = asyncio.get_running_loop().time() + DEADLINE_S
    while True:
        async with session.get(f"{base}/api/v1/query", params={"query": promql}) as resp:
            assert resp.status == 200, f"{promql}: {resp.status} {await resp.text()}"
            body: dict[str, Any] = await resp.json()
        if body.get("status") == "success" and body["data"]["result"]:
            result: list[dict[str, Any]] = body["data"]["result"]
            return result
        assert asyncio.get_running_loop().time() < deadline, f"no result for {promql}: {body}"
        await asyncio.sleep(0.25)


async def test_promql_per_pod_gpu_and_request_rate(prometheus_bin: str, tmp_path: Path,
                                                   kubelet_socket: tuple[Path, list[str]]) -> None:
    sock, _uuids = kubelet_socket
    async for target_url in _serving_pod():
        targets = StaticTargets((Target("serving", "llm-0", "llm", target_url, "prescale"),))
        sim = SimulatedBackend(PROFILES["h100-80gb"], 2, constant_load(0.5), node="n1")
        collection = Collection(sim, "n1", pods=PodResourcesClient(sock), targets=targets,
                                intervals=Intervals(gpu_s=0.2, pods_s=0.2, traffic_s=0.2))
        async with TestServer(make_app(ServerDeps(collection)), host="127.0.0.1") as exporter:
            port = _free_port()
            config = tmp_path / "prometheus.yml"
            config.write_text("global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
                              "scrape_configs:\n- job_name: exporter\n  honor_labels: true\n"
                              f"  static_configs: [{{targets: ['127.0.0.1:{exporter.port}']}}]\n")
            proc = await asyncio.create_subprocess_exec(
                prometheus_bin, f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
                stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
            try:
                async with aiohttp.ClientSession() as session:
                    base = f"http://127.0.0.1:{port}"
                    # Prometheus answers 503 to queries until it has opened its TSDB.
                    await asyncio.to_thread(wait_for, functools.partial(http_ok, f"{base}/-/ready"),
                                            DEADLINE_S, "Prometheus ready")
                    util = await _query(session, base,
                                        'avg by (namespace, pod) (gpu_utilization_ratio{pod!=""})')
                    rate = await _query(session, base,
                                        "sum by (namespace, pod) (rate(inference_requests_total[5s]))")
            finally:
                proc.terminate()
                await asyncio.wait_for(proc.wait(), 10)
    assert [(r["metric"]["pod"], float(r["value"][1])) for r in util] == [("llm-0", 0.6)]
    assert rate[0]["metric"] == {"namespace": "serving", "pod": "llm-0"}
    assert float(rate[0]["value"][1]) > 0
