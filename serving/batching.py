"""Dynamic batching with a bounded queue, parallel workers and per-request deadlines.

Requests wait in a bounded FIFO. A worker takes the first one, then gathers more until the
batch holds ``max_batch_size`` rows or ``batch_timeout_s`` has passed since it took the first,
and runs the model on the concatenated rows in a thread. A full queue answers at once
(``Overloaded`` -> 429 with Retry-After) instead of letting latency grow without bound; a
request whose deadline passes while it waits is dropped before the model sees it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from serving.config import BatchConfig
from serving.errors import DeadlineExceeded, ModelFailed, Overloaded, Unavailable
from serving.metrics import ModelMetrics
from serving.runtimes import Model

log = logging.getLogger(__name__)
Array = npt.NDArray[Any]


@dataclass
class _Pending:
    rows: Array
    deadline: float
    enqueued: float
    future: asyncio.Future[Array] = field(repr=False)


class Batcher:
    """Batches requests for one loaded model version."""

    def __init__(self, model: Model, cfg: BatchConfig, metrics: ModelMetrics,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._model = model
        self._cfg = cfg
        self._metrics = metrics
        self._clock = clock
        self._queue: asyncio.Queue[_Pending] = asyncio.Queue(maxsize=cfg.max_queue_size)
        self._executor = ThreadPoolExecutor(max_workers=cfg.workers, thread_name_prefix="batch")
        self._workers: list[asyncio.Task[None]] = []
        self._outstanding = 0  # requests submitted and not yet answered
        self._idle = asyncio.Event()  # set while nothing is outstanding
        self._idle.set()
        self._closing = False
        self._batch_s_ewma = 0.0

    def start(self) -> None:
        self._workers = [asyncio.create_task(self._work(), name=f"batch-worker-{i}")
                         for i in range(self._cfg.workers)]

    @property
    def pending(self) -> int:
        """Requests submitted and not yet answered (queued, being batched or computed)."""
        return self._outstanding

    def _answered(self, _: asyncio.Future[Array]) -> None:
        self._outstanding -= 1
        if self._outstanding == 0:
            self._idle.set()

    def queue_wait_s(self) -> float:
        """Expected wait of a request queued now: queued batches / workers x recent batch time."""
        batches = math.ceil(self._queue.qsize() / self._cfg.max_batch_size) / self._cfg.workers
        return batches * self._batch_s_ewma

    def retry_after_s(self) -> int:
        """Seconds until the queue has likely drained (at least 1)."""
        return max(1, math.ceil(self.queue_wait_s()))

    @property
    def full(self) -> bool:
        return self._queue.full()

    def overloaded(self) -> Overloaded:
        return Overloaded(f"queue full ({self._cfg.max_queue_size} requests waiting); retry later",
                          self.retry_after_s())

    async def submit(self, rows: Array, deadline: float) -> Array:
        """Queue ``rows`` and wait for the model's output rows (raises a ServeError)."""
        if self._closing:
            raise Unavailable("this model version is being unloaded; retry")
        item = _Pending(rows, deadline, self._clock(), asyncio.get_running_loop().create_future())
        try:
            self._queue.put_nowait(item)
        except asyncio.QueueFull:
            raise self.overloaded() from None
        self._outstanding += 1
        self._idle.clear()
        item.future.add_done_callback(self._answered)
        self._metrics.queue_depth.set(self._queue.qsize())
        try:
            return await asyncio.wait_for(asyncio.shield(item.future), max(0.0, deadline - self._clock()))
        except TimeoutError:
            item.future.cancel()
            raise DeadlineExceeded("the request deadline passed before the model answered") from None

    async def _work(self) -> None:
        carry: _Pending | None = None
        while True:
            first = carry if carry is not None else await self._queue.get()
            batch, carry = await self._gather(first)
            self._metrics.queue_depth.set(self._queue.qsize())
            await self._run(batch)

    async def _gather(self, first: _Pending) -> tuple[list[_Pending], _Pending | None]:
        """Collect requests after ``first`` until the batch is full or the timeout passes."""
        batch, rows = [first], len(first.rows)
        until = self._clock() + self._cfg.batch_timeout_s
        while rows < self._cfg.max_batch_size:
            try:
                nxt = self._queue.get_nowait()
            except asyncio.QueueEmpty:
                remaining = until - self._clock()
                if remaining <= 0:
                    break
                try:
                    nxt = await asyncio.wait_for(self._queue.get(), remaining)
                except TimeoutError:
                    break
            if rows + len(nxt.rows) > self._cfg.max_batch_size:
                return batch, nxt  # starts the next batch: a batch never exceeds the limit
            batch.append(nxt)
            rows += len(nxt.rows)
        return batch, None

    def _live(self, batch: list[_Pending], now: float) -> list[_Pending]:
        live = []
        for p in batch:
            if p.future.done():  # the client gave up (deadline or disconnect)
                continue
            if p.deadline <= now:
                p.future.set_exception(DeadlineExceeded("the request deadline passed while it was queued"))
                continue
            self._metrics.queue_wait.observe(now - p.enqueued)
            live.append(p)
        return live

    async def _run(self, batch: list[_Pending]) -> None:
        live = self._live(batch, self._clock())
        if not live:
            return
        x = live[0].rows if len(live) == 1 else np.concatenate([p.rows for p in live])
        started = self._clock()
        try:
            y = await asyncio.get_running_loop().run_in_executor(self._executor, self._model.predict, x)
            if len(y) != len(x):
                raise ValueError(f"model returned {len(y)} rows for {len(x)} inputs")
        except Exception as e:
            log.exception("model call failed", extra={"fields": {"rows": len(x)}})
            for p in live:
                if not p.future.done():
                    failed = ModelFailed(f"the model failed on this batch ({type(e).__name__})")
                    p.future.set_exception(failed)
            return
        elapsed = self._clock() - started
        self._batch_s_ewma = elapsed if self._batch_s_ewma == 0 else 0.8 * self._batch_s_ewma + 0.2 * elapsed
        self._metrics.batch_size.observe(len(x))
        self._metrics.model_seconds.observe(elapsed)
        offset = 0
        for p in live:
            n = len(p.rows)
            if not p.future.done():
                p.future.set_result(y[offset : offset + n])
            offset += n

    async def stop(self, timeout_s: float) -> None:
        """Refuse new requests, let queued ones finish for up to ``timeout_s``, then stop."""
        self._closing = True
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._idle.wait(), timeout_s)
        for task in self._workers:
            task.cancel()
        for task in self._workers:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        while not self._queue.empty():
            left = self._queue.get_nowait()
            if not left.future.done():
                left.future.set_exception(Unavailable("the server stopped before this request ran"))
        self._executor.shutdown(wait=False, cancel_futures=True)
