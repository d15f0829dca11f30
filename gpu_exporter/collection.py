"""The background collection loop and the immutable snapshot that scrapes serialize.

Three refreshers run on their own intervals so a slow part never delays another: GPUs (NVML on
a dedicated thread, default every 1 s), pod attribution (kubelet PodResources on another thread,
every 5 s) and inference traffic (aiohttp, every 5 s). Each writes its latest result; after each
refresh a new ``Snapshot`` is composed. A scrape only reads ``Collection.latest``.

Time comes from an injected ``Clock`` so the loops run in tests without waiting.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Protocol, TypeVar

import aiohttp

from gpu_exporter.backend import Backend, BackendError, BackendReading, Device
from gpu_exporter.pods import EMPTY, Attribution, KubeletError, PodResourcesClient
from gpu_exporter.traffic import Target, TrafficResult, scrape_all

log = logging.getLogger(__name__)
T = TypeVar("T")


class Clock(Protocol):
    """Wall-clock seconds and a way to wait; tests pass a fake that advances instantly."""

    def now(self) -> float: ...

    async def sleep(self, seconds: float) -> None: ...


class SystemClock:
    def now(self) -> float:
        return time.time()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


class TargetSource(Protocol):
    """Where the serving pods to scrape come from (kubelet pod list, or a static list)."""

    async def targets(self, session: aiohttp.ClientSession, timeout_s: float) -> tuple[Target, ...]: ...


@dataclass(frozen=True)
class StaticTargets:
    fixed: tuple[Target, ...]

    async def targets(self, session: aiohttp.ClientSession, timeout_s: float) -> tuple[Target, ...]:
        return self.fixed


@dataclass(frozen=True)
class Intervals:
    """Loop timing, seconds."""

    gpu_s: float = 1.0
    pods_s: float = 5.0
    traffic_s: float = 5.0
    gpu_timeout_s: float = 5.0
    """A GPU read slower than this counts as failed (a wedged driver call keeps its thread)."""
    pods_timeout_s: float = 2.0
    traffic_timeout_s: float = 2.0
    attribution_max_age_s: float = 60.0
    """Keep the last good attribution this long while the kubelet is unreachable, then drop it."""


@dataclass(frozen=True)
class Snapshot:
    """Everything a scrape shows. Immutable; replaced, never modified."""

    seq: int
    node: str
    backend: str
    reading: BackendReading = field(default_factory=lambda: BackendReading(()))
    known: Mapping[str, Device] = field(default_factory=dict)
    """Every device seen since start (uuid -> identity): those not in ``reading`` show gpu_up 0."""
    backend_up: bool = False
    attribution: Attribution = EMPTY
    kubelet_up: bool | None = None
    """None when attribution is disabled."""
    traffic: TrafficResult = field(default_factory=TrafficResult)
    field_errors_total: Mapping[tuple[str, str], int] = field(default_factory=dict)
    collection_duration_s: float = 0.0
    last_success_s: float = 0.0
    """Wall time of the last successful GPU read; 0 before the first."""
    collection_failures_total: int = 0


class Collection:
    """Owns the refreshers and the latest snapshot."""

    def __init__(self, backend: Backend, node: str, *, clock: Clock | None = None,
                 pods: PodResourcesClient | None = None, targets: TargetSource | None = None,
                 intervals: Intervals = Intervals()) -> None:
        self.backend = backend
        self.clock: Clock = clock or SystemClock()
        self.pods = pods
        self.targets = targets
        self.intervals = intervals
        self.latest = Snapshot(0, node, backend.name, kubelet_up=None if pods is None else False)
        self._gpu_thread = ThreadPoolExecutor(1, thread_name_prefix="gpu-read")
        self._pods_thread = ThreadPoolExecutor(1, thread_name_prefix="podresources")
        self._inflight: dict[str, Future[object]] = {}
        self._errors: dict[tuple[str, str], int] = {}
        self._attribution_at = 0.0
        self.listeners: list[Callable[[Snapshot], None]] = []
        """Called with each new snapshot, on the loop (the server pre-renders the exposition here)."""

    def _publish(self, **changes: object) -> Snapshot:
        self.latest = replace(self.latest, seq=self.latest.seq + 1, **changes)  # type: ignore[arg-type]
        for listener in self.listeners:
            listener(self.latest)
        return self.latest

    async def _in_thread(self, pool: ThreadPoolExecutor, key: str, fn: Callable[[], T],
                         timeout_s: float) -> T:
        """Run ``fn`` on ``pool``; never queue a second call behind a stuck one."""
        running = self._inflight.get(key)
        if running is not None and not running.done():
            raise TimeoutError(f"{key}: previous call still running")
        future = pool.submit(fn)
        self._inflight[key] = future  # type: ignore[assignment]
        return await asyncio.wait_for(asyncio.wrap_future(future), timeout_s)

    async def refresh_gpu(self) -> Snapshot:
        now = self.clock.now()
        started = time.perf_counter()
        try:
            reading = await self._in_thread(self._gpu_thread, "gpu", lambda: self.backend.read(now),
                                            self.intervals.gpu_timeout_s)
        except (BackendError, TimeoutError) as e:
            log.warning("GPU collection failed", extra={"fields": {"error": str(e)[:200]}})
            return self._publish(reading=BackendReading(()), backend_up=False,
                                 collection_duration_s=time.perf_counter() - started,
                                 collection_failures_total=self.latest.collection_failures_total + 1)
        for err in reading.field_errors:
            self._errors[(err.field, err.reason)] = self._errors.get((err.field, err.reason), 0) + 1
        known = dict(self.latest.known)
        known.update((r.device.uuid, r.device) for r in reading.devices)
        known.update((d.uuid, d) for d in reading.lost)
        return self._publish(reading=reading, known=known, backend_up=True,
                             field_errors_total=dict(self._errors),
                             collection_duration_s=time.perf_counter() - started, last_success_s=now)

    async def refresh_pods(self) -> Snapshot:
        if self.pods is None:
            return self.latest
        pods = self.pods
        now = self.clock.now()
        try:
            attribution = await self._in_thread(self._pods_thread, "pods", pods.attribution,
                                                self.intervals.pods_timeout_s + 1.0)
        except (KubeletError, TimeoutError) as e:
            log.warning("pod attribution failed", extra={"fields": {"error": str(e)[:200]}})
            stale = now - self._attribution_at > self.intervals.attribution_max_age_s
            return self._publish(kubelet_up=False, attribution=EMPTY if stale else self.latest.attribution)
        self._attribution_at = now
        return self._publish(kubelet_up=True, attribution=attribution)

    async def refresh_traffic(self, session: aiohttp.ClientSession) -> Snapshot:
        if self.targets is None:
            return self.latest
        timeout = self.intervals.traffic_timeout_s
        try:
            targets = await self.targets.targets(session, timeout)
        except (aiohttp.ClientError, TimeoutError, ValueError) as e:
            log.warning("serving pod discovery failed", extra={"fields": {"error": str(e)[:200]}})
            return self.latest  # keep the last traffic result; targets come back next round
        return self._publish(traffic=await scrape_all(session, targets, timeout))

    async def _every(self, interval_s: float, step: Callable[[], Awaitable[Snapshot]],
                     stop: asyncio.Event) -> None:
        next_at = self.clock.now()
        while not stop.is_set():
            try:
                await step()
            except Exception:  # a bug in one refresher must not stop the others; it is logged
                log.exception("collection step failed")
            next_at += interval_s
            delay = next_at - self.clock.now()
            if delay < 0:  # fell behind: skip missed rounds rather than bursting
                next_at, delay = self.clock.now(), 0.0
            await self.clock.sleep(delay)

    async def run(self, stop: asyncio.Event) -> None:
        """Run the refreshers until ``stop`` is set."""
        async with aiohttp.ClientSession() as session:
            tasks = [asyncio.create_task(self._every(self.intervals.gpu_s, self.refresh_gpu, stop))]
            if self.pods is not None:
                tasks.append(asyncio.create_task(self._every(self.intervals.pods_s, self.refresh_pods, stop)))
            if self.targets is not None:
                tasks.append(asyncio.create_task(self._every(
                    self.intervals.traffic_s, lambda: self.refresh_traffic(session), stop)))
            try:
                await stop.wait()
            finally:
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)

    def close(self) -> None:
        self._gpu_thread.shutdown(wait=False, cancel_futures=True)
        self._pods_thread.shutdown(wait=False, cancel_futures=True)
        if self.pods is not None:
            self.pods.close()
        self.backend.close()
