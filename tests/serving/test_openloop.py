"""The benchmarks' open-loop load generator (bench/openloop, Go): schedule, statuses, errors."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from serving_testlib import ROOT, go_build, needs_go

pytestmark = needs_go


@pytest.fixture(scope="module")
def generator(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return go_build(ROOT / "bench" / "openloop", tmp_path_factory)


@asynccontextmanager
async def serving(app: web.Application) -> AsyncIterator[TestServer]:
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        yield server
    finally:
        await server.close()


async def run(generator: Path, *args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        str(generator), *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_offers_on_schedule_and_counts_every_status(generator: Path) -> None:
    """Every third request is refused; each request is counted once under its status, the
    server sees the body, and warm-up HEADs open connections without being counted."""
    seen: list[bytes] = []
    heads = 0

    async def predict(request: web.Request) -> web.Response:
        nonlocal heads
        if request.method == "HEAD":
            heads += 1
            return web.Response(status=405)
        seen.append(await request.read())
        status = 429 if len(seen) % 3 == 0 else 200
        return web.json_response({"n": len(seen)}, status=status)

    app = web.Application()
    app.router.add_route("*", "/p", predict)
    async with serving(app) as server:
        code, out, err = await run(
            generator, "-url", str(server.make_url("/p")), "-body", '{"x": 1}',
            "-rate", "200", "-duration", "1s", "-warm-conns", "4",
        )  # fmt: skip
    assert code == 0, err
    doc = json.loads(out)
    assert doc["offered"] == 200
    assert len(seen) == 200
    assert set(seen) == {b'{"x": 1}'}
    assert heads == 4
    counts = {k: len(v) for k, v in doc["latencies_ms"].items()}
    assert counts == {"200": 134, "429": 66}
    assert all(v == sorted(v) and v[0] >= 0 for v in doc["latencies_ms"].values())
    assert doc["wall_s"] >= 0.99, "requests left before their scheduled time"
    assert set(doc["p99_ms_by_second"]) == {"0"}


async def test_unanswered_and_refused_connections_are_reported(generator: Path) -> None:
    """A server that never answers within the drain time: status -1; a closed port: status 0."""

    async def hang(request: web.Request) -> web.Response:
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    app = web.Application()
    app.router.add_post("/p", hang)
    async with serving(app) as server:
        url = str(server.make_url("/p"))
        code, out, err = await run(
            generator, "-url", url, "-body", "{}", "-rate", "20", "-duration", "0.5s", "-drain", "0.3s"
        )
    assert code == 0, err
    assert {k: len(v) for k, v in json.loads(out)["latencies_ms"].items()} == {"-1": 10}
    code, out, err = await run(generator, "-url", url, "-body", "{}", "-rate", "20", "-duration", "0.5s")
    assert code == 0, err
    assert {k: len(v) for k, v in json.loads(out)["latencies_ms"].items()} == {"0": 10}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["-body", "{}", "-rate", "10"], "-url and -body are required"),
        (["-url", "http://127.0.0.1:1/", "-body", "{}", "-rate", "0"], "-rate must be > 0, got 0"),
        (["-url", "http://127.0.0.1:1/", "-body", "{}", "-rate", "5", "-max-conns", "2", "-warm-conns", "3"],
         "-warm-conns must be in [0, -max-conns], got 3"),
    ],
)
async def test_bad_flags_exit_2_with_the_reason(generator: Path, args: list[str], message: str) -> None:
    code, out, err = await run(generator, *args)
    assert code == 2
    assert out == ""
    assert err.strip() == f"openloop: {message}"
