"""Version policy and hot loading over a real repository on disk, through the HTTP routes."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer
from serving_testlib import config, deps_for, poll, start

from serving.app import make_app
from serving.config import VersionPolicy

ROW = {"instances": [[5.1, 3.5, 1.4, 0.2]]}


@pytest.mark.parametrize(("policy", "on_disk", "chosen"), [
    (VersionPolicy(latest=1), [1, 3, 2], [3]),
    (VersionPolicy(latest=2), [1, 3, 2], [3, 2]),
    (VersionPolicy(latest=5), [1], [1]),
    (VersionPolicy(versions=(1, 2)), [1, 3, 2], [2, 1]),
    (VersionPolicy(versions=(7,)), [1, 3], []),
])
def test_version_policy(policy: VersionPolicy, on_disk: list[int], chosen: list[int]) -> None:
    assert policy.select(on_disk) == chosen


async def test_a_new_version_goes_live_without_restart_and_the_old_one_leaves(example_repo: Path) -> None:
    client = await start(deps_for(config(example_repo, models=["iris"], poll_interval_s=0.05)))
    try:
        assert (await (await client.get("/v2/models/iris")).json())["versions"] == ["1"]
        shutil.copytree(example_repo / "iris" / "1", example_repo / "iris" / "2")
        await poll("/v2/models/iris/versions/2/ready", client)
        await poll("/v2/models/iris/versions/1/ready", client, status=404)
        doc = await (await client.post("/v2/models/iris/infer", json={"inputs": [
            {"name": "input", "shape": [1, 4], "datatype": "FP32", "data": ROW["instances"][0]}]})).json()
        assert doc["model_version"] == "2"
        assert (await client.get("/ready")).status == 200
    finally:
        await client.close()


async def test_pinned_versions_serve_side_by_side(example_repo: Path) -> None:
    shutil.copytree(example_repo / "iris" / "1", example_repo / "iris" / "4")
    shutil.copytree(example_repo / "iris" / "1", example_repo / "iris" / "5")
    client = await start(deps_for(config(example_repo, models=["iris"], version_policy={"versions": [1, 4]})))
    try:
        assert (await (await client.get("/v2/models/iris")).json())["versions"] == ["4", "1"]
        assert (await client.post("/v1/models/iris/versions/1:predict", json=ROW)).status == 200
        assert (await client.post("/v1/models/iris/versions/5:predict", json=ROW)).status == 404
    finally:
        await client.close()


async def test_a_broken_version_is_skipped_and_the_server_stays_up(example_repo: Path) -> None:
    broken = example_repo / "iris" / "2"
    broken.mkdir()
    (broken / "model.joblib").write_bytes(b"not a pickle")
    client = await start(deps_for(config(example_repo, models=["iris"], version_policy={"latest": 2})))
    try:
        assert (await (await client.get("/v2/models/iris")).json())["versions"] == ["1"]
        text = await (await client.get("/metrics")).text()
        assert 'inference_model_load_failures_total{model="iris",namespace="ns",pod="pod-0"} 1.0' in text
    finally:
        await client.close()


async def test_not_ready_while_an_expected_model_has_no_version(example_repo: Path) -> None:
    deps = deps_for(config(example_repo, models=["iris", "missing"]))
    client = TestClient(TestServer(make_app(deps)))
    await client.start_server()
    try:
        await poll("/v2/models/iris/ready", client)
        resp = await client.get("/ready")
        assert resp.status == 503
        assert (await resp.json())["ready"] is False
        assert (await client.get("/healthz")).status == 200
        missing = await client.post("/v1/models/missing:predict", json=ROW)
        assert missing.status == 404
        assert "no loaded version yet" in (await missing.json())["error"]
    finally:
        await client.close()
