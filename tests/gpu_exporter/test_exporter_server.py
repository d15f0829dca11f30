"""Collection loop, snapshot, /metrics and /healthz on the simulated backend (fresh registries)."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from exporter_fakes import FakeClock
from exporter_kubelet import FakeKubelet, pod
from prometheus_client.parser import text_string_to_metric_families

from gpu_exporter.backend import PROFILES, SimulatedBackend, constant_load, simulated_from_spec, trace_load
from gpu_exporter.collection import Collection, Intervals
from gpu_exporter.collector import render
from gpu_exporter.fields import FIELDS
from gpu_exporter.pods import PodResourcesClient
from gpu_exporter.server import ServerDeps, make_app

NODE = "gpu-node-1"
Client = tuple[TestClient[web.Request, web.Application], Collection, FakeClock]


def _sim(**kw: object) -> SimulatedBackend:
    return SimulatedBackend(PROFILES["h100-80gb"], 8, constant_load(0.5), node=NODE, **kw)  # type: ignore[arg-type]


def _samples(text: str, name: str) -> list[tuple[dict[str, str], float]]:
    return [(s.labels, s.value) for f in text_string_to_metric_families(text) for s in f.samples
            if s.name == name]


@pytest.fixture
async def client() -> AsyncIterator[Client]:
    clock = FakeClock()
    collection = Collection(_sim(), NODE, clock=clock)
    app = make_app(ServerDeps(collection, run_loop=False))
    async with TestClient(TestServer(app)) as c:
        yield c, collection, clock
    collection.close()


async def test_metrics_and_health(client: Client) -> None:
    c, collection, clock = client
    assert (await c.get("/healthz")).status == 503
    await collection.refresh_gpu()
    resp = await c.get("/metrics")
    text = await resp.text()
    assert resp.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    assert len(_samples(text, "gpu_utilization_ratio")) == 8
    assert _samples(text, "gpu_power_usage_watts")[0][0]["node"] == NODE
    assert (await c.get("/healthz")).status == 200
    clock.t += 30
    assert (await c.get("/healthz")).status == 503
    assert _samples(await (await c.get("/metrics")).text(), "gpu_exporter_snapshot_age_seconds")[0][1] == 30


async def test_lost_gpu_and_driver_reload() -> None:
    sim = _sim()
    collection = Collection(sim, NODE, clock=FakeClock())
    await collection.refresh_gpu()
    sim.lost_indices.add(3)
    text = render(await collection.refresh_gpu(), "prescale").decode()
    up = {labels["gpu"]: v for labels, v in _samples(text, "gpu_up")}
    assert up["3"] == 0
    assert sum(up.values()) == 7
    assert len(_samples(text, "gpu_temperature_celsius")) == 7
    sim.unavailable = True
    text = render(await collection.refresh_gpu(), "prescale").decode()
    assert _samples(text, "gpu_temperature_celsius") == []
    assert _samples(text, "gpu_exporter_backend_up")[0][1] == 0
    assert _samples(text, "gpu_exporter_collection_failures_total")[0][1] == 1
    sim.unavailable = False
    sim.lost_indices.clear()
    text = render(await collection.refresh_gpu(), "prescale").decode()
    assert sum(v for _l, v in _samples(text, "gpu_up")) == 8
    collection.close()


async def test_field_errors_counted_and_xid_counter() -> None:
    sim = _sim(unsupported=frozenset({"gpu_memory_temperature_celsius"}))
    collection = Collection(sim, NODE, clock=FakeClock())
    await collection.refresh_gpu()
    sim.inject_xid(2, 79)
    text = render(await collection.refresh_gpu(), "prescale").decode()
    errors = _samples(text, "gpu_exporter_field_errors_total")
    assert errors == [({"field": "gpu_memory_temperature_celsius", "reason": "NotSupported"}, 16.0)]
    xids = _samples(text, "gpu_xid_errors_total")
    assert [(labels["gpu"], labels["xid"], v) for labels, v in xids] == [("2", "79", 1.0)]
    collection.close()


async def test_pod_labels_and_shared_gpus(tmp_path: Path) -> None:
    sim = _sim()
    uuids = [d.uuid for d in sim.devices]
    kubelet = FakeKubelet(tmp_path / "kubelet.sock", [
        pod("serving", "llm-0", "server", "nvidia.com/gpu", uuids[0]),
        pod("serving", "a", "server", "nvidia.com/gpu", uuids[1] + "::0"),
        pod("serving", "b", "server", "nvidia.com/gpu", uuids[1] + "::1")]).start()
    collection = Collection(sim, NODE, clock=FakeClock(), pods=PodResourcesClient(tmp_path / "kubelet.sock"))
    try:
        await collection.refresh_gpu()
        text = render(await collection.refresh_pods(), "prescale").decode()
        util = _samples(text, "gpu_utilization_ratio")
        pods = sorted(labels.get("pod", "") for labels, _v in util)
        assert pods == ["", "", "", "", "", "", "a", "b", "llm-0"]
        assert len(_samples(text, "gpu_allocation_info")) == 3
        assert _samples(text, "gpu_exporter_kubelet_up")[0][1] == 1
        kubelet.stop()
        # kubelet down: the recent mapping is kept (attribution_max_age_s)
        text = render(await collection.refresh_pods(), "prescale").decode()
        assert _samples(text, "gpu_exporter_kubelet_up")[0][1] == 0
        assert len(_samples(text, "gpu_allocation_info")) == 3
    finally:
        collection.close()


async def test_run_loop_on_injected_clock() -> None:
    clock = FakeClock(0.0)
    sim = SimulatedBackend(PROFILES["h100-80gb"], 1, trace_load([(0.0, 0.0), (10.0, 1.0)]))
    collection = Collection(sim, NODE, clock=clock, intervals=Intervals(gpu_s=1.0))
    stop = asyncio.Event()
    task = asyncio.create_task(collection.run(stop))
    deadline = asyncio.get_running_loop().time() + 5
    while collection.latest.last_success_s < 5.0:
        assert asyncio.get_running_loop().time() < deadline, "loop did not advance"
        await asyncio.sleep(0.001)
    stop.set()
    await task
    collection.close()
    reading = collection.latest.reading.devices[0]
    assert reading.timestamp_s >= 5.0
    assert reading.timestamp_s.is_integer()
    assert reading.values["gpu_sm_active_ratio"] == pytest.approx(0.95 * min(1.0, reading.timestamp_s / 10))


async def test_dcgm_naming_and_mig() -> None:
    collection = Collection(simulated_from_spec("h100-80gbx2:mig=3g.40gb", NODE), NODE, clock=FakeClock())
    text = render(await collection.refresh_gpu(), "dcgm").decode()
    fb = _samples(text, "DCGM_FI_DEV_FB_TOTAL")
    assert len(fb) == 4
    assert fb[0][0]["GPU_I_PROFILE"] == "3g.40gb"
    assert fb[0][0]["hostname"] == NODE
    assert fb[0][1] == pytest.approx(80 * 1024 * 3 / 7)
    assert "gpu_memory_total_bytes" not in text
    assert _samples(text, "DCGM_FI_DEV_GPU_UTIL") == []  # not available on MIG instances
    collection.close()


def test_metric_names_are_the_contract() -> None:
    names = {f.name for f in FIELDS}
    assert {"gpu_utilization_ratio", "gpu_sm_active_ratio", "gpu_memory_used_bytes", "gpu_power_usage_watts",
            "gpu_energy_consumption_joules_total", "gpu_temperature_celsius", "gpu_sm_clock_hertz"} <= names
    assert all(n.endswith("_total") == (f.kind == "counter") for f in FIELDS for n in [f.name])


async def test_promtool_accepts_the_exposition(tmp_path: Path) -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool not installed (Debian package 'prometheus'); exposition lint not run")
    collection = Collection(simulated_from_spec("h100-80gb x8", NODE), NODE, clock=FakeClock())
    await collection.refresh_gpu()
    text = render(collection.latest, "prescale").decode()
    collection.close()
    result = await asyncio.to_thread(subprocess.run, [promtool, "check", "metrics"], input=text,
                                     capture_output=True, text=True, check=False, timeout=30)
    assert result.returncode == 0, result.stdout + result.stderr


async def test_fast_serializer_matches_prometheus_client() -> None:
    from dataclasses import replace  # noqa: PLC0415

    from gpu_exporter.collector import render_with_client  # noqa: PLC0415
    from gpu_exporter.presets import PRESETS, normalize  # noqa: PLC0415
    from gpu_exporter.traffic import Target, TrafficResult  # noqa: PLC0415

    collection = Collection(simulated_from_spec("h100-80gbx2:mig=1g.10gb", NODE), NODE, clock=FakeClock())
    snap = await collection.refresh_gpu()
    collection.close()
    text = ('# TYPE inference_requests_total counter\n'
            'inference_requests_total{model="a\\"b\\\\c\\nd",code="200"} 5\n'
            'inference_requests_total{model="plain",code="500"} 1e+21\n')
    target = Target("ns", "p", "d", "http://x", "prescale")
    snap = replace(snap, traffic=TrafficResult(normalize(text, PRESETS["prescale"]), ((target, True),)))
    for naming in ("prescale", "dcgm"):
        assert render(snap, naming) == render_with_client(snap, naming)
