"""Admission control: the event-loop lag probe, and 429s while the loop is behind."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from serving_testlib import Client, config, deps_for, start

from serving.admission import LoopLag, check
from serving.errors import Overloaded

HOG_S = 0.3
"""Each busy-loop iteration blocks this long: far above any lag a loaded machine adds by itself."""
CALM_S = 0.05
"""Lag below this counts as a free loop (a loaded CI machine adds a few milliseconds)."""
URL = "/v1/models/iris:predict"
BODY = {"instances": [[6.7, 3.0, 5.2, 2.3]]}


@contextmanager
def busy_loop() -> Iterator[None]:
    """Keep the running loop busy: every iteration spends HOG_S in a blocking callback."""
    loop = asyncio.get_running_loop()
    handle: asyncio.Handle | None = None

    def hog() -> None:
        nonlocal handle
        time.sleep(HOG_S)  # deliberately blocks the loop: this is the load under test
        handle = loop.call_soon(hog)

    handle = loop.call_soon(hog)
    try:
        yield
    finally:
        handle.cancel()


async def _until(cond: Callable[[], bool], timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not cond():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.005)


def test_check_refuses_only_past_the_budget() -> None:
    check(0.010, 0.010)
    with pytest.raises(Overloaded) as exc:
        check(0.0105, 0.010)
    assert exc.value.status == 429
    assert exc.value.retry_after_s == 1
    assert "expected wait 10 ms exceeds the admission limit (10 ms)" in exc.value.message


async def test_lag_probe_sees_a_busy_loop_and_its_recovery() -> None:
    lag = LoopLag(interval_s=0.005)
    async with lag.running():
        await _until(lambda: lag.lag_s < CALM_S)
        with busy_loop():
            await _until(lambda: lag.lag_s >= HOG_S / 2)
        await _until(lambda: lag.lag_s < CALM_S)


async def _status(client: Client) -> tuple[int, str]:
    resp = await client.post(URL, json=BODY)
    return resp.status, (await resp.json()).get("error", "")


async def test_busy_loop_past_the_admission_limit_gives_429_then_serves_again(example_repo: Path) -> None:
    client = await start(deps_for(config(example_repo, models=["iris"], batching={"max_wait_s": 0.1})))
    try:
        deadline = time.monotonic() + 5
        while (await _status(client))[0] != 200:  # a free loop is served (once start-up lag has passed)
            assert time.monotonic() < deadline, "refused with a free loop"
        with busy_loop():
            status, error = await _status(client)
            resp = await client.post(URL, json=BODY)
            assert int(resp.headers["Retry-After"]) >= 1
        assert status == 429
        assert "exceeds the admission limit (100 ms)" in error
        metrics = await (await client.get("/metrics")).text()
        assert 'inference_requests_total{code="429",model="iris"' in metrics
        assert "\ninference_event_loop_lag_seconds{" in metrics
        deadline = time.monotonic() + 5
        while (await _status(client))[0] != 200:  # the lag falls back once the loop is free
            assert time.monotonic() < deadline
    finally:
        await client.close()


async def test_without_a_limit_a_busy_loop_is_not_refused(example_repo: Path) -> None:
    client = await start(deps_for(config(example_repo, models=["iris"])))
    try:
        with busy_loop():
            assert (await _status(client))[0] == 200
    finally:
        await client.close()
