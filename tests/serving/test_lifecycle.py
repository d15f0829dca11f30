"""A real ``prescale serve`` process: start-up, readiness, and SIGTERM drain losing nothing."""

from __future__ import annotations

import asyncio
import re
import signal
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import aiohttp
import pytest
from serving_testlib import Child, child

PRESCALE = Path(sys.executable).with_name("prescale")
ROW = {"instances": [[6.7, 3.0, 5.2, 2.3]]}
ROWS = 200
"""Rows per drained request: enough model work that requests queue up behind each other with
either executor, so SIGTERM always finds many in flight."""
GRACE_S = 15.0
DRAIN_DELAY_S = 0.5


@pytest.fixture(params=["thread", "process"])
async def server(example_repo_once: Path, request: pytest.FixtureRequest) -> AsyncIterator[Child]:
    async with child([
        str(PRESCALE), "--log-format", "json", "serve", "--model-repository", str(example_repo_once),
        "--model", "iris", "--host", "127.0.0.1", "--port", "0", "--max-batch-size", "1", "--workers", "1",
        "--max-queue-size", "1000", "--executor", request.param,
        "--drain-delay-s", str(DRAIN_DELAY_S), "--grace-period-s", str(GRACE_S),
    ], timeout_s=30) as c:
        yield c


async def _poll_status(session: aiohttp.ClientSession, url: str, status: int, timeout_s: float) -> float:
    """GET until ``status``; returns the seconds it took."""
    start = time.monotonic()
    while time.monotonic() - start < timeout_s:
        try:
            async with session.get(url) as resp:
                if resp.status == status:
                    return time.monotonic() - start
        except aiohttp.ClientConnectionError:
            pass
        await asyncio.sleep(0.02)
    raise AssertionError(f"{url} did not answer {status} within {timeout_s} s")


async def _poll_log(server: Child, match: Callable[[str], bool], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not any(match(line) for line in server.log):
        assert time.monotonic() < deadline, f"no such log line within {timeout_s} s: {''.join(server.log)}"
        await asyncio.sleep(0.01)


async def _inflight(session: aiohttp.ClientSession, url: str) -> float:
    async with session.get(f"{url}/metrics") as resp:
        text = await resp.text()
    m = re.search(r'^inference_inflight_requests\{model="iris".*\} (\S+)$', text, re.M)
    return float(m.group(1)) if m else 0.0


async def test_ready_after_startup_then_sigterm_drains_in_flight_requests_and_exits(server: Child) -> None:
    n = 300
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        await _poll_status(session, f"{server.url}/ready", 200, 30)
        # The line is written before /ready answers 200; the collector task may still be reading it.
        await _poll_log(server, lambda line: '"msg":"ready"' in line and "startup_s" in line, 5)
        async with session.get(f"{server.url}/metrics") as resp:
            startup = re.search(r"^inference_startup_seconds\{.*\} (\S+)$", await resp.text(), re.M)
        assert startup is not None
        assert 0.0 < float(startup.group(1)) < 60.0

        answered = 0

        async def predict() -> int:
            nonlocal answered
            async with session.post(f"{server.url}/v1/models/iris:predict",
                                    json={"instances": ROW["instances"] * ROWS}) as resp:
                assert (await resp.json())["predictions"] == [2] * ROWS
                answered += 1
                return resp.status

        tasks = [asyncio.create_task(predict()) for _ in range(n)]
        deadline = time.monotonic() + 20
        # Every request has reached the server (answered, or in flight) and the queue is well filled.
        # Answers are counted before in-flight is read, so no request is counted twice.
        while True:
            done = answered
            inflight = await _inflight(session, server.url)
            if done + inflight >= n and inflight >= n / 4:
                break
            assert time.monotonic() < deadline, f"stuck: {done} answered, {inflight} in flight"
            await asyncio.sleep(0.01)
        sent_at = time.monotonic()
        server.proc.send_signal(signal.SIGTERM)
        # Readiness turns false at once, while the server still accepts during the drain delay.
        await _poll_status(session, f"{server.url}/ready", 503, DRAIN_DELAY_S)
        statuses = await asyncio.gather(*tasks)
        rc = await asyncio.wait_for(server.proc.wait(), GRACE_S)
        took = time.monotonic() - sent_at
    assert statuses == [200] * n
    assert rc == 0
    assert took < GRACE_S
    await _poll_log(server, lambda line: '"msg":"drained, exiting"' in line, 5)
