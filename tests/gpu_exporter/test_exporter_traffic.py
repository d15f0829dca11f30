"""Serving-metric presets and scraping, against real aiohttp servers on loopback."""

from __future__ import annotations

import aiohttp
import pytest
from aiohttp import web
from exporter_samples import BY_PRESET

from gpu_exporter.presets import FAMILY_TYPES, PRESETS, TrafficSample, normalize
from gpu_exporter.traffic import KubeletPods, Target, deployment_of, scrape_all, targets_from_pods


def _value(samples: tuple[TrafficSample, ...], name: str, **labels: str) -> float:
    return sum(s.value for s in samples if s.name == name and labels.items() <= dict(s.labels).items())


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_every_preset_produces_only_contract_families(preset: str) -> None:
    samples = normalize(BY_PRESET[preset], PRESETS[preset])
    assert samples, preset
    assert {s.family for s in samples} <= FAMILY_TYPES.keys()
    assert _value(samples, "inference_requests_total") > 0


def test_vllm_sums_dropped_labels_and_maps_model() -> None:
    samples = normalize(BY_PRESET["vllm"], PRESETS["vllm"])
    assert _value(samples, "inference_requests_total", model="llama", code="200") == 100
    assert _value(samples, "inference_queue_depth") == 4
    assert _value(samples, "inference_request_duration_seconds_bucket", le="1.0") == 60
    assert _value(samples, "inference_generation_tokens_total") == 20000


def test_units_and_codes() -> None:
    tf = normalize(BY_PRESET["tfserving"], PRESETS["tfserving"])
    assert _value(tf, "inference_request_duration_seconds_sum") == pytest.approx(0.9)
    assert _value(tf, "inference_request_duration_seconds_bucket", le="0.01") == 50
    assert _value(tf, "inference_requests_total", code="INVALID_ARGUMENT") == 3
    tgi = normalize(BY_PRESET["tgi"], PRESETS["tgi"])
    assert _value(tgi, "inference_prompt_tokens_total") == 3100
    assert _value(tgi, "inference_requests_total", code="500") == 1
    kserve = normalize(BY_PRESET["kserve"], PRESETS["kserve"])
    assert _value(kserve, "inference_requests_total") == 20


POD_LIST = {"items": [
    {"metadata": {"name": "llm-7d9f-abcde", "namespace": "serving", "labels": {"pod-template-hash": "7d9f"},
                  "ownerReferences": [{"kind": "ReplicaSet", "name": "llm-7d9f"}]},
     "spec": {"containers": [{"image": "vllm/vllm-openai:v0.9"}]},
     "status": {"phase": "Running", "podIP": "127.0.0.1"}},
    {"metadata": {"name": "custom", "namespace": "serving",
                  "annotations": {"prescale.dev/scrape": "true", "prescale.dev/port": "9000"}},
     "spec": {"containers": [{"image": "example/app"}]}, "status": {"phase": "Running", "podIP": "10.0.0.2"}},
    {"metadata": {"name": "pending", "namespace": "serving"},
     "spec": {"containers": [{"image": "nvcr.io/nvidia/tritonserver:24.08"}]},
     "status": {"phase": "Pending"}},
    {"metadata": {"name": "web", "namespace": "default"}, "spec": {"containers": [{"image": "nginx"}]},
     "status": {"phase": "Running", "podIP": "10.0.0.3"}},
]}


def test_discovery_from_pod_list() -> None:
    targets = targets_from_pods(POD_LIST)
    assert [(t.pod, t.preset, t.url, t.deployment) for t in targets] == [
        ("custom", "prescale", "http://10.0.0.2:9000/metrics", ""),
        ("llm-7d9f-abcde", "vllm", "http://127.0.0.1:8000/metrics", "llm")]
    assert deployment_of({"metadata": {"ownerReferences": [{"kind": "StatefulSet", "name": "db"}]}}) == "db"


async def _serve(app: web.Application) -> tuple[web.AppRunner, str]:
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    return runner, f"http://127.0.0.1:{port}"


async def test_scrape_real_servers_one_failing() -> None:
    async def handle(request: web.Request) -> web.Response:
        name = request.match_info["name"]
        return web.Response(text=BY_PRESET[name]) if name in BY_PRESET else web.Response(status=500)

    app = web.Application()
    app.router.add_get("/{name}", handle)
    runner, base = await _serve(app)
    try:
        targets = [Target("ns", f"{p}-0", p, f"{base}/{p}", p) for p in BY_PRESET]
        targets.append(Target("ns", "broken-0", "broken", f"{base}/broken", "vllm"))
        async with aiohttp.ClientSession() as session:
            result = await scrape_all(session, targets, timeout_s=2.0)
    finally:
        await runner.cleanup()
    assert [(t.pod, ok) for t, ok in result.up][-1] == ("broken-0", False)
    assert all(ok for _t, ok in result.up[:-1])
    assert _value(result.samples, "inference_requests_total", pod="vllm-0", deployment="vllm") == 100


async def test_kubelet_pods_source_over_http() -> None:
    app = web.Application()
    seen: list[str] = []

    async def pods(request: web.Request) -> web.Response:
        seen.append(request.headers.get("Authorization", ""))
        return web.json_response(POD_LIST)

    app.router.add_get("/pods", pods)
    runner, base = await _serve(app)
    try:
        async with aiohttp.ClientSession() as session:
            targets = await KubeletPods(f"{base}/pods").targets(session, 2.0)
    finally:
        await runner.cleanup()
    assert len(targets) == 2
    assert seen == [""]
