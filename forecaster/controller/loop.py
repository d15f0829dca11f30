"""The controller loop: a watched cache of PredictiveAutoscalers and a reconcile cycle.

- The watch lists once, then watches from the list's resourceVersion; a closed stream is
  resumed from the last seen version (bookmarks keep it fresh), ``410 Gone`` relists, and
  transport errors and 5xx back off exponentially. A spec change (``generation``) wakes the
  cycle at once; status-only changes (our own writes) do not.
- Every ``interval_s`` the leader reconciles every cached object, ``concurrency`` at a time.
  One object's failure is logged and counted, never stops the others.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

from forecaster.controller.clock import sleep_or_stop
from forecaster.controller.metrics import ControllerMetrics
from forecaster.controller.reconcile import Reconciler
from forecaster.controller.spec import GROUP, PLURAL, VERSION
from forecaster.kube import Gone, JsonObj, KubeError

log = logging.getLogger(__name__)

Key = tuple[str, str]


def collection_path(namespace: str | None) -> str:
    ns = f"/namespaces/{namespace}" if namespace else ""
    return f"/apis/{GROUP}/{VERSION}{ns}/{PLURAL}"


def key_of(obj: Mapping[str, Any]) -> Key:
    meta = obj.get("metadata") or {}
    return str(meta.get("namespace", "")), str(meta.get("name", ""))


class Controller:
    """Watches PredictiveAutoscalers and reconciles them while ``is_leader()``."""

    def __init__(
        self,
        reconciler: Reconciler,
        metrics: ControllerMetrics,
        *,
        namespace: str | None = None,
        concurrency: int = 16,
        watch_timeout_s: int = 300,
        is_leader: Callable[[], bool] = lambda: True,
    ) -> None:
        self.reconciler, self.metrics = reconciler, metrics
        self.deps = reconciler.deps
        self.namespace, self.concurrency, self.watch_timeout_s = namespace, concurrency, watch_timeout_s
        self.is_leader = is_leader
        self.cache: dict[Key, JsonObj] = {}
        self._reconciled_generation: dict[Key, int] = {}
        self._wake = asyncio.Event()
        self.synced = asyncio.Event()
        """Set once the first list has filled the cache."""
        self.relists = 0

    # -- watch ----------------------------------------------------------------------------

    async def _list(self) -> str:
        doc = await self.deps.kube.get(collection_path(self.namespace))
        fresh = {key_of(o): o for o in doc.get("items") or []}
        for gone in set(self.cache) - set(fresh):
            self._forget(gone)
        self.cache = fresh
        self.relists += 1
        self.synced.set()
        self._wake.set()
        return str((doc.get("metadata") or {}).get("resourceVersion", ""))

    def _forget(self, key: Key) -> None:
        self.cache.pop(key, None)
        self._reconciled_generation.pop(key, None)
        self.reconciler.forget(*key)
        self.metrics.forget(*key)

    def _apply_event(self, kind: str, obj: JsonObj) -> None:
        key = key_of(obj)
        if kind == "DELETED":
            self._forget(key)
            return
        self.cache[key] = obj
        gen = int((obj.get("metadata") or {}).get("generation", 0))
        if self._reconciled_generation.get(key) != gen:
            self._wake.set()

    async def watch(self, stop: asyncio.Event) -> None:
        """Keep the cache in step with the API until ``stop``."""
        rv: str | None = None
        backoff = 0.5
        while not stop.is_set():
            try:
                if rv is None:
                    rv = await self._list()
                async for kind, obj in self.deps.kube.watch(
                    collection_path(self.namespace), rv, self.watch_timeout_s
                ):
                    rv = str((obj.get("metadata") or {}).get("resourceVersion", rv))
                    if kind != "BOOKMARK":
                        self._apply_event(kind, obj)
                    if stop.is_set():
                        break
                backoff = 0.5
            except Gone:
                rv = None
            except (KubeError, ValueError) as e:
                log.warning(
                    "watch failed; retrying", extra={"fields": {"error": str(e), "backoff_s": backoff}}
                )
                if isinstance(e, ValueError) or e.status in (403, 404):
                    rv = None  # malformed stream, or the CRD/permission is missing: relist
                if await sleep_or_stop(self.deps.clock, stop, backoff):
                    return
                backoff = min(backoff * 2, 30.0)

    # -- reconcile cycle ------------------------------------------------------------------

    async def reconcile_all(self) -> int:
        """Reconcile every cached object once; returns how many raised."""
        sem = asyncio.Semaphore(self.concurrency)
        failures = 0

        async def one(key: Key, obj: JsonObj) -> None:
            nonlocal failures
            async with sem:
                try:
                    outcome = await self.reconciler.reconcile(obj)
                except Exception as e:  # one object never stops the others
                    failures += 1
                    self.metrics.errors += 1
                    log.exception(
                        "reconcile failed", extra={"fields": {"pa": f"{key[0]}/{key[1]}", "error": str(e)}}
                    )
                    return
                self._reconciled_generation[key] = int((obj.get("metadata") or {}).get("generation", 0))
                if key in self.cache:
                    self.metrics.record(outcome)

        await asyncio.gather(*(one(k, o) for k, o in list(self.cache.items())))
        return failures

    async def cycle(self, stop: asyncio.Event) -> None:
        """Reconcile every ``interval_s`` (sooner on a spec change) while leader, until ``stop``."""
        while not stop.is_set():
            self._wake.clear()
            self.metrics.leader = self.is_leader()
            if self.is_leader() and self.synced.is_set():
                started = time.perf_counter()
                await self.reconcile_all()
                self.metrics.cycle_seconds = time.perf_counter() - started
                self.metrics.cycles += 1
            await self._sleep_or_wake(stop)

    async def _sleep_or_wake(self, stop: asyncio.Event) -> None:
        wake = asyncio.ensure_future(self._wake.wait())
        halt = asyncio.ensure_future(stop.wait())
        nap = asyncio.ensure_future(self.deps.clock.sleep(self.deps.interval_s if self.is_leader() else 0.5))
        tasks = {wake, halt, nap}
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def run(self, stop: asyncio.Event) -> None:
        """Watch and reconcile until ``stop``; a reconcile in progress finishes first."""
        watch = asyncio.create_task(self.watch(stop))
        cycle = asyncio.create_task(self.cycle(stop))
        try:
            await stop.wait()
        finally:
            watch.cancel()
            await asyncio.gather(watch, return_exceptions=True)
            if not stop.is_set():
                cycle.cancel()
            await asyncio.gather(cycle, return_exceptions=True)
