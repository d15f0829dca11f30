"""The batcher with a model whose calls the test controls: batch formation, 429, deadlines, drain."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
from prometheus_client import CollectorRegistry

from serving.batching import Batcher
from serving.config import BatchConfig
from serving.errors import DeadlineExceeded, ModelFailed, Overloaded, Unavailable
from serving.metrics import ServerMetrics
from serving.runtimes import Signature, TensorSpec

SIG = Signature(TensorSpec("x", "FP32", (2,)), TensorSpec("y", "FP32", ()))


class GatedModel:
    """Doubles the first column; each call blocks until the test opens the gate."""

    runtime = "fake"
    signature = SIG

    def __init__(self, fail: bool = False) -> None:
        self.gate = threading.Event()
        self.calls: list[int] = []
        self.fail = fail

    def predict(self, batch: npt.NDArray[Any]) -> npt.NDArray[Any]:
        self.calls.append(len(batch))
        if not self.gate.wait(10):
            raise TimeoutError("gate never opened")
        if self.fail:
            raise RuntimeError("boom")
        return np.asarray(batch[:, 0] * 2)

    def close(self) -> None:
        pass


def rows(*values: float) -> npt.NDArray[Any]:
    return np.asarray([[v, 0.0] for v in values], dtype=np.float32)


def make(model: GatedModel, **cfg: Any) -> Batcher:
    metrics = ServerMetrics(CollectorRegistry(), "ns", "pod").for_model("m")
    b = Batcher(model, BatchConfig(**cfg), metrics)
    b.start()
    return b


def later(s: float = 10.0) -> float:
    return time.monotonic() + s


async def until(cond: Any, timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not cond():
        assert time.monotonic() < deadline, "condition not reached"
        await asyncio.sleep(0.005)


async def test_queued_requests_share_one_model_call_and_get_their_own_rows() -> None:
    model = GatedModel()
    b = make(model, max_batch_size=8, batch_timeout_s=0.0, workers=1)
    first = asyncio.create_task(b.submit(rows(1), later()))
    await until(lambda: model.calls == [1])  # the worker is busy with the first request
    rest = [asyncio.create_task(b.submit(rows(v, v + 0.5), later())) for v in (10, 20, 30)]
    await until(lambda: b.pending == 4)
    model.gate.set()
    assert (await first).tolist() == [2.0]
    assert [(await t).tolist() for t in rest] == [[20.0, 21.0], [40.0, 41.0], [60.0, 61.0]]
    assert model.calls == [1, 6]  # the three waiting requests went in one call
    await b.stop(1.0)


async def test_a_batch_never_exceeds_max_batch_size() -> None:
    model = GatedModel()
    model.gate.set()
    b = make(model, max_batch_size=4, batch_timeout_s=0.05, workers=1)
    outs = await asyncio.gather(*(b.submit(rows(v, v), later()) for v in range(5)))
    assert [o.tolist() for o in outs] == [[2.0 * v, 2.0 * v] for v in range(5)]
    assert max(model.calls) <= 4
    assert sum(model.calls) == 10
    await b.stop(1.0)


async def test_full_queue_answers_overloaded_with_retry_after() -> None:
    model = GatedModel()
    b = make(model, max_batch_size=1, batch_timeout_s=0.0, workers=1, max_queue_size=2)
    running = asyncio.create_task(b.submit(rows(1), later()))
    await until(lambda: model.calls == [1])
    queued = [asyncio.create_task(b.submit(rows(v), later())) for v in (2, 3)]
    await until(lambda: b.pending == 3)
    with pytest.raises(Overloaded) as exc:
        await b.submit(rows(4), later())
    assert exc.value.status == 429
    assert exc.value.retry_after_s >= 1
    model.gate.set()
    assert [(await t).tolist() for t in (running, *queued)] == [[2.0], [4.0], [6.0]]
    await b.stop(1.0)


async def test_deadline_passes_while_queued() -> None:
    model = GatedModel()
    b = make(model, max_batch_size=1, batch_timeout_s=0.0, workers=1)
    running = asyncio.create_task(b.submit(rows(1), later()))
    await until(lambda: model.calls == [1])
    with pytest.raises(DeadlineExceeded):
        await b.submit(rows(2), later(0.05))
    model.gate.set()
    await running
    await until(lambda: b.pending == 0)
    assert model.calls == [1]  # the expired request never reached the model
    await b.stop(1.0)


async def test_model_failure_is_a_generic_error_and_the_batcher_keeps_going() -> None:
    model = GatedModel(fail=True)
    model.gate.set()
    b = make(model, workers=1)
    with pytest.raises(ModelFailed, match="RuntimeError"):
        await b.submit(rows(1), later())
    model.fail = False
    assert (await b.submit(rows(3), later())).tolist() == [6.0]
    await b.stop(1.0)


async def test_stop_finishes_queued_work_then_refuses_new() -> None:
    model = GatedModel()
    b = make(model, max_batch_size=1, batch_timeout_s=0.0, workers=1)
    tasks = [asyncio.create_task(b.submit(rows(v), later())) for v in (1, 2, 3)]
    await until(lambda: model.calls == [1])
    stopping = asyncio.create_task(b.stop(5.0))
    await asyncio.sleep(0)
    with pytest.raises(Unavailable):
        await b.submit(rows(9), later())
    model.gate.set()
    await stopping
    assert [(await t).tolist() for t in tasks] == [[2.0], [4.0], [6.0]]
