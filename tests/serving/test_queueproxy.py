"""The queue proxy (serving/queueproxy, Go) in front of a real ``prescale serve`` app: it passes
traffic through, refuses at once what it cannot place, exports what it refused, and drains."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from serving_testlib import (
    ROOT,
    Child,
    Client,
    GatedModel,
    child,
    config,
    deps_for,
    go_build,
    needs_go,
    start,
)

from gpu_exporter.presets import PRESETS, normalize

PREDICT = "/v1/models/iris:predict"
BODY = {"instances": [[6.7, 3.0, 5.2, 2.3]]}

pytestmark = needs_go


@pytest.fixture(scope="module")
def binary(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return go_build(ROOT / "serving" / "queueproxy", tmp_path_factory)


def proxy(binary: Path, backend: str, *args: str) -> AbstractAsyncContextManager[Child]:
    return child([str(binary), "-listen", "127.0.0.1:0", "-backend", backend, "-namespace", "ns",
                  "-pod", "pod-0", *args], timeout_s=10)


@asynccontextmanager
async def gated_server(repo: Path, **batching: Any) -> AsyncIterator[tuple[Client, GatedModel]]:
    """The real serving app on loopback, its model held while ``gate`` is clear."""
    model = GatedModel()
    cfg = config(repo, batching={"max_batch_size": 1, "workers": 1, **batching})
    client = await start(deps_for(cfg, loader=lambda _: model))
    try:
        yield client, model
    finally:
        model.gate.set()
        await client.close()


def _backend(client: Client) -> str:
    return str(client.make_url("")).rstrip("/")


async def _until(cond: Callable[[], Any], timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not await cond():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


async def _post(session: aiohttp.ClientSession, url: str) -> tuple[int, dict[str, Any], dict[str, str]]:
    async with session.post(url, json=BODY) as resp:
        return resp.status, await resp.json(), dict(resp.headers)


def _sample(text: str, family: str) -> dict[str, float]:
    """``{labels: value}`` of one family in an exposition."""
    out = {}
    for line in text.splitlines():
        if line.startswith(family + "{"):
            labels, value = line[len(family):].rsplit(" ", 1)
            out[labels] = float(value)
    return out


async def test_passes_inference_probes_and_metadata_through(binary: Path, example_repo: Path) -> None:
    async with gated_server(example_repo) as (server, _), proxy(binary, _backend(server)) as px, \
            aiohttp.ClientSession() as session:
        status, doc, _ = await _post(session, px.url + PREDICT)
        assert status == 200
        assert doc == {"predictions": [pytest.approx(6.7)]}
        for path in ("/ready", "/healthz", "/v2/health/ready", "/v1/models/iris", "/v2/models/iris"):
            async with session.get(px.url + path) as resp:
                assert resp.status == 200, path
        async with session.post(px.url + "/v1/models/absent:predict", json=BODY) as resp:
            assert resp.status == 404
            assert "absent" in (await resp.json())["error"]
        async with session.get(px.url + "/metrics") as resp:
            text = await resp.text()
    # The server's own families and the proxy's, in one valid exposition.
    assert _sample(text, "inference_requests_total") == {
        '{code="200",model="iris",namespace="ns",pod="pod-0"}': 1.0,
        '{code="404",model="",namespace="ns",pod="pod-0"}': 1.0}
    assert _sample(text, "inference_proxy_backend_up") == {'{namespace="ns",pod="pod-0"}': 1.0}
    assert _sample(text, "inference_proxy_concurrency_limit") == {'{namespace="ns",pod="pod-0"}': 64.0}
    normalize(text, PRESETS["prescale"])  # parses as a whole


async def test_full_proxy_refuses_at_once_and_the_refusals_count_as_demand(
        binary: Path, example_repo: Path) -> None:
    async with gated_server(example_repo) as (server, model), \
            proxy(binary, _backend(server), "-concurrency", "1", "-queue", "1", "-max-wait", "10s") as px, \
            aiohttp.ClientSession() as session:
        assert (await _post(session, px.url + PREDICT))[0] == 200  # the model name is now known
        held = await _hold(session, px.url, model)
        queued = asyncio.create_task(_post(session, px.url + PREDICT))
        await _until(lambda: _metric(session, px.url, "inference_proxy_queued", 1))
        t0 = time.monotonic()
        status, doc, headers = await _post(session, px.url + PREDICT)
        refused_in = time.monotonic() - t0
        assert status == 429
        assert headers["Retry-After"] == "1"
        assert doc["error"].startswith("overloaded: 1 requests at the model server and 1 waiting")
        assert refused_in < 1.0, "a full queue must refuse without waiting"
        async with session.get(px.url + "/ready") as resp:
            assert resp.status == 200, "probes are never limited"
        async with session.get(px.url + "/metrics") as resp:
            text = await resp.text()
        model.gate.set()
        assert [r[0] for r in await asyncio.gather(held, queued)] == [200, 200]
    where = '{namespace="ns",pod="pod-0"'
    assert _sample(text, "inference_proxy_refused_total") == {where + ',model="iris"}': 1.0}
    assert _sample(text, "inference_proxy_inflight") == {'{namespace="ns",pod="pod-0"}': 1.0}
    folded = {(dict(s.labels)["model"], dict(s.labels)["code"], s.value)
              for s in normalize(text, PRESETS["prescale"]) if s.name == "inference_requests_total"}
    assert folded == {("iris", "200", 1.0), ("iris", "429", 1.0)}


async def _hold(session: aiohttp.ClientSession, url: str, model: GatedModel
                ) -> asyncio.Task[tuple[int, dict[str, Any], dict[str, str]]]:
    """A request held in the model (the gate closed): it occupies the proxy's one slot."""
    model.gate.clear()
    before = model.calls  # loading warms the model up with calls of its own
    task = asyncio.create_task(_post(session, url + PREDICT))

    async def reached() -> bool:
        return model.calls > before
    await _until(reached)
    return task


async def _metric(session: aiohttp.ClientSession, url: str, family: str, value: float) -> bool:
    async with session.get(url + "/metrics") as resp:
        return value in _sample(await resp.text(), family).values()


async def test_a_queued_request_is_refused_after_max_wait(binary: Path, example_repo: Path) -> None:
    async with gated_server(example_repo) as (server, model), \
            proxy(binary, _backend(server), "-concurrency", "1", "-queue", "4", "-max-wait", "300ms") as px, \
            aiohttp.ClientSession() as session:
        held = await _hold(session, px.url, model)
        t0 = time.monotonic()
        status, _, _ = await _post(session, px.url + PREDICT)
        waited = time.monotonic() - t0
        model.gate.set()
        assert (await held)[0] == 200
    assert status == 429
    assert 0.3 <= waited < 2.0


async def test_unknown_models_never_become_label_values(binary: Path, example_repo: Path) -> None:
    async with gated_server(example_repo) as (server, model), \
            proxy(binary, _backend(server), "-concurrency", "1", "-queue", "0") as px, \
            aiohttp.ClientSession() as session:
        held = await _hold(session, px.url, model)
        for name in ("iris", "made-up-1", "made-up-2"):
            async with session.post(f"{px.url}/v2/models/{name}/infer", json={"inputs": []}) as resp:
                assert resp.status == 429
        async with session.get(px.url + "/metrics") as resp:
            text = await resp.text()
        model.gate.set()
        await held
    # iris had not been answered yet either, so all three share the empty label.
    assert _sample(text, "inference_proxy_refused_total") == {'{namespace="ns",pod="pod-0",model=""}': 3.0}


async def test_sigterm_keeps_serving_for_the_drain_delay_then_finishes_in_flight_and_exits(
        binary: Path, example_repo: Path) -> None:
    async with gated_server(example_repo) as (server, model), \
            proxy(binary, _backend(server), "-concurrency", "1", "-queue", "2", "-max-wait", "10s",
                  "-drain-delay", "500ms", "-grace-period", "10s") as px, \
            aiohttp.ClientSession() as session:
        held = await _hold(session, px.url, model)
        queued = asyncio.create_task(_post(session, px.url + PREDICT))
        await _until(lambda: _metric(session, px.url, "inference_proxy_queued", 1))
        sent = time.monotonic()  # before the signal, so the proxy's drain delay starts after it
        px.proc.send_signal(signal.SIGTERM)
        async with session.get(px.url + "/ready") as resp:  # still serving during the drain delay
            assert resp.status == 200
        await _until(lambda: _refused(px.url), timeout_s=3)
        stopped_after = time.monotonic() - sent
        model.gate.set()
        assert [r[0] for r in await asyncio.gather(held, queued)] == [200, 200]
        rc = await asyncio.wait_for(px.proc.wait(), 10)
    assert rc == 0
    assert 0.5 <= stopped_after < 3
    assert any(json.loads(line)["msg"] == "drained, exiting" for line in px.log)


async def _refused(url: str) -> bool:
    """A new connection is refused (the proxy stopped listening)."""
    try:
        async with aiohttp.ClientSession() as fresh, fresh.get(url + "/ready") as resp:
            await resp.read()
    except aiohttp.ClientConnectionError:
        return True
    return False


@pytest.mark.parametrize(("args", "message"), [
    (["-concurrency", "0"], "-concurrency: 0 is not allowed; expected an integer >= 1"),
    (["-queue", "-1"], "-queue: -1 is not allowed; expected an integer >= 0"),
    (["-max-wait", "0s"], "-max-wait: 0s is not allowed; expected a duration > 0"),
    (["-backend", "ftp://x"], '-backend: "ftp://x" is not allowed; expected http://host:port'),
    (["-drain-delay", "40s"], "-grace-period: 30s is not allowed; it must be longer than -drain-delay (40s)"),
    (["-concurrency", "many"], 'invalid value "many" for flag -concurrency: parse error'),
    (["extra"], 'unexpected argument "extra"; every setting is a flag (see -help)'),
])
def test_bad_flags_exit_2_with_one_line(binary: Path, args: list[str], message: str) -> None:
    out = subprocess.run([str(binary), *args], capture_output=True, text=True, check=False)
    assert out.returncode == 2
    assert out.stdout == ""
    assert out.stderr == f"queueproxy: {message}\n"


def test_help_exits_0(binary: Path) -> None:
    out = subprocess.run([str(binary), "-help"], capture_output=True, text=True, check=False)
    assert out.returncode == 0
    assert "-max-wait" in out.stdout
