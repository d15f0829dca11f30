"""Routes over the real example models on a loopback server: answers, errors, metrics."""

from __future__ import annotations

import asyncio
import io
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from serving_testlib import Client, GatedModel, config, deps_for, poll_metric, start

from serving import example

ROWS = [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]]


def expected_labels() -> list[int]:
    return [int(v) for v in example.train().predict(np.asarray(ROWS, dtype=np.float32))]


@pytest.mark.parametrize("model", ["iris", "iris-onnx"])
async def test_v1_predict_matches_the_model(client: Client, model: str) -> None:
    resp = await client.post(f"/v1/models/{model}:predict", json={"instances": ROWS})
    assert resp.status == 200
    assert (await resp.json())["predictions"] == expected_labels() == [0, 2]


async def test_v1_versioned_predict_and_status(client: Client) -> None:
    resp = await client.post("/v1/models/iris/versions/1:predict", json={"instances": ROWS})
    assert resp.status == 200
    status = await (await client.get("/v1/models/iris")).json()
    assert status["model_version_status"][0]["version"] == "1"
    assert status["model_version_status"][0]["state"] == "AVAILABLE"


async def test_v2_infer_round_trip(client: Client) -> None:
    body = {"id": "req-1", "inputs": [{"name": "input", "shape": [2, 4], "datatype": "FP32",
                                       "data": [x for row in ROWS for x in row]}]}
    resp = await client.post("/v2/models/iris-onnx/versions/1/infer", json=body)
    assert resp.status == 200
    doc = await resp.json()
    assert doc["id"] == "req-1"
    assert doc["model_name"] == "iris-onnx"
    assert doc["model_version"] == "1"
    assert doc["outputs"] == [
        {"name": "label", "shape": [2], "datatype": "INT64", "data": expected_labels()}]


async def test_v2_metadata_health_and_readiness(client: Client) -> None:
    meta = await (await client.get("/v2/models/iris")).json()
    assert meta["versions"] == ["1"]
    assert meta["platform"] == "sklearn"
    assert meta["inputs"] == [{"name": "input", "datatype": "FP32", "shape": [-1, 4]}]
    for path in ("/healthz", "/ready", "/v2/health/live", "/v2/health/ready", "/v2/models/iris/ready",
                 "/v2/models/iris/versions/1/ready", "/v2"):
        assert (await client.get(path)).status == 200, path


def _v2(shape: list[int], datatype: str, data: Any) -> dict[str, Any]:
    return {"inputs": [{"name": "input", "shape": shape, "datatype": datatype, "data": data}]}


BAD_REQUESTS: list[tuple[str, str, Any, int, str]] = [
    ("POST", "/v1/models/iris:predict", b"{not json", 400, "malformed JSON"),
    ("POST", "/v1/models/iris:predict", b"", 400, "empty request body"),
    ("POST", "/v1/models/iris:predict", {"rows": ROWS}, 400, "'instances'"),
    ("POST", "/v1/models/iris:predict", {"instances": "abc"}, 400, "must be a list"),
    ("POST", "/v1/models/iris:predict", {"instances": [[1, 2, 3]]}, 400, "expects ['batch', 4]"),
    ("POST", "/v1/models/iris:predict", {"instances": [[1, 2, 3, 4], [1, 2]]}, 400, "rectangular"),
    ("POST", "/v1/models/iris:predict", {"instances": [["a", "b", "c", "d"]]}, 400, "FP32 numbers"),
    ("POST", "/v1/models/iris:predict", {"instances": []}, 400, "at least one instance"),
    ("POST", "/v1/models/nope:predict", {"instances": ROWS}, 404, "unknown model 'nope'"),
    ("POST", "/v1/models/iris/versions/7:predict", {"instances": ROWS}, 404, "no loaded version 7"),
    ("POST", "/v1/models/iris/versions/x:predict", {"instances": ROWS}, 400, "not a non-negative integer"),
    ("POST", "/v2/models/iris/infer", {"inputs": "x"}, 400, "'inputs' list"),
    ("POST", "/v2/models/iris/infer", {"inputs": [{"name": "input"}]}, 400, "missing 'shape'"),
    ("POST", "/v2/models/iris/infer", _v2([1, 4], "BYTES", ["a"] * 4), 400, "not supported"),
    ("POST", "/v2/models/iris/infer", _v2([1, 4], "FP32", [1, 2, 3]), 400, "has 3 elements"),
    ("POST", "/v2/models/iris/infer", _v2([2, 2], "FP32", [1, 2, 3, 4]), 400, "expects ['batch', 4]"),
    ("POST", "/v2/models/iris/infer", _v2([1, 4], "FP32", [1, 2, "x", 4]), 400, "FP32 numbers"),
    ("POST", "/v2/models/iris/infer", _v2([-1, 4], "FP32", [1, 2, 3, 4]), 400, "non-negative"),
    ("GET", "/v2/models/nope", None, 404, "unknown model"),
    ("GET", "/v2/models/iris/versions/9", None, 404, "no loaded version 9"),
    ("GET", "/no/such/path", None, 404, "no route"),
    ("GET", "/v1/models/iris:predict", None, 405, "Method Not Allowed"),
]


@pytest.mark.parametrize("case", BAD_REQUESTS, ids=[f"{c[1]}-{c[3]}-{c[4]}" for c in BAD_REQUESTS])
async def test_bad_input_gets_a_json_4xx_naming_the_problem(
        client: Client, case: tuple[str, str, Any, int, str]) -> None:
    method, path, body, status, message = case
    data = body if isinstance(body, bytes) or body is None else json.dumps(body).encode()
    resp = await client.request(method, path, data=data)
    assert resp.status == status
    doc = await resp.json()
    assert message in doc["error"]
    assert "Traceback" not in doc["error"]
    # and the server keeps serving
    assert (await client.post("/v1/models/iris:predict", json={"instances": ROWS})).status == 200


async def test_oversized_body_is_413(client: Client) -> None:
    big = b'{"instances": [' + b"[1,2,3,4]," * 500_000 + b"[1,2,3,4]]}"
    resp = await client.post("/v1/models/iris:predict", data=io.BytesIO(big))
    assert resp.status == 413
    assert "exceeds" in (await resp.json())["error"]


async def test_deadline_header_is_validated(client: Client) -> None:
    resp = await client.post("/v1/models/iris:predict", json={"instances": ROWS},
                             headers={"X-Request-Timeout-Ms": "soon"})
    assert resp.status == 400
    resp = await client.post("/v1/models/iris:predict", json={"instances": ROWS},
                             headers={"X-Request-Timeout-Ms": "5000"})
    assert resp.status == 200


async def test_metrics_use_the_inference_families(client: Client) -> None:
    await client.post("/v1/models/iris:predict", json={"instances": ROWS})
    await client.post("/v1/models/iris:predict", data=b"{")
    await client.post("/v1/models/ghost:predict", json={"instances": ROWS})
    text = await (await client.get("/metrics")).text()
    where = 'namespace="ns",pod="pod-0"'
    assert f'inference_requests_total{{code="200",model="iris",{where}}} 1.0' in text
    assert f'inference_requests_total{{code="400",model="iris",{where}}} 1.0' in text
    assert f'inference_requests_total{{code="404",model="",{where}}} 1.0' in text  # no label per bad name
    assert f'inference_request_duration_seconds_count{{model="iris",{where}}} 1.0' in text
    assert f'inference_batch_size_sum{{model="iris",{where}}} 2.0' in text
    for family in ("inference_queue_depth", "inference_inflight_requests",
                   "inference_queue_wait_seconds_count", "inference_model_load_seconds",
                   "inference_model_seconds_count",
                   "inference_startup_seconds", "inference_ready"):
        assert f"\n{family}{{" in text, family
    assert f"inference_ready{{{where}}} 1.0" in text


async def test_full_queue_is_429_with_retry_after_and_requests_still_complete(example_repo: Path) -> None:
    model = GatedModel()
    cfg = config(example_repo, models=["iris"],
                 batching={"max_batch_size": 1, "workers": 1, "max_queue_size": 1})
    client = await start(deps_for(cfg, loader=lambda _: model))
    try:
        model.gate.clear()
        calls_before = model.calls
        url = "/v1/models/iris:predict"
        running = asyncio.create_task(client.post(url, json={"instances": [[1, 0, 0, 0]]}))
        deadline = asyncio.get_running_loop().time() + 5
        while model.calls == calls_before:  # the first request is inside the model
            assert asyncio.get_running_loop().time() < deadline
            await asyncio.sleep(0.005)
        queued = asyncio.create_task(client.post(url, json={"instances": [[2, 0, 0, 0]]}))
        await poll_metric(client, "inference_queue_depth", 1.0)
        rejected = await client.post(url, json={"instances": [[3, 0, 0, 0]]})
        assert rejected.status == 429
        assert int(rejected.headers["Retry-After"]) >= 1
        assert "queue full" in (await rejected.json())["error"]
        model.gate.set()
        assert [(await (await t).json())["predictions"] for t in (running, queued)] == [[1.0], [2.0]]
    finally:
        model.gate.set()
        await client.close()
