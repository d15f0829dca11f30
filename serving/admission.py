"""Admission control: refuse at once what would wait too long, before the body is read.

A bounded queue alone does not bound latency in a single-event-loop server. When the loop
itself is the bottleneck (HTTP parsing, JSON, a model holding the GIL), requests wait in
socket buffers and in the loop's ready queue, where no queue limit sees them, and the queue
in front of the model may never fill. So each request's expected wait is estimated when its
headers have been parsed, before anything else is done for it:

    expected wait = event-loop lag + queued batches / workers x batch time

and a request whose expected wait exceeds ``max_wait_s`` gets 429 with Retry-After. The
event-loop lag is how late a timer that should fire every ``LAG_INTERVAL_S`` actually fires:
while the loop is saturated, that is how long a newly arrived request already waited to be
read. Answering 429 costs about half of serving a request, so shedding frees the loop and the
lag falls back under the budget; the latency of the accepted requests stays near
``max_wait_s`` plus one model call instead of growing with the offered load.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import AsyncIterator, Callable

from prometheus_client import Gauge

from serving.errors import Overloaded

LAG_INTERVAL_S = 0.005
IDLE_INTERVAL_S = 0.1  # without max_wait_s only the gauge needs the probe


class LoopLag:
    """The event loop's current lag, measured by a timer that should fire every interval."""

    def __init__(self, gauge: Gauge | None = None, interval_s: float = LAG_INTERVAL_S,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._gauge = gauge
        self._interval_s = interval_s
        self._clock = clock
        self.lag_s = 0.0

    async def run(self) -> None:
        while True:
            expected = self._clock() + self._interval_s
            await asyncio.sleep(self._interval_s)  # the probe itself: how late does this wake up?
            self.lag_s = max(0.0, self._clock() - expected)
            if self._gauge is not None:
                self._gauge.set(self.lag_s)

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[LoopLag]:
        task = asyncio.create_task(self.run(), name="loop-lag")
        try:
            yield self
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


def check(expected_s: float, max_wait_s: float) -> None:
    """Raise Overloaded when the expected wait exceeds ``max_wait_s``."""
    if expected_s > max_wait_s:
        raise Overloaded(f"expected wait {expected_s * 1000:.0f} ms exceeds the admission limit "
                         f"({max_wait_s * 1000:.0f} ms); retry later", max(1, math.ceil(expected_s)))
