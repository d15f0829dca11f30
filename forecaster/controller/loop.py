"""The controller loop: watched caches of PredictiveAutoscalers and their targets, and a
reconcile cycle.

- Each watch lists once, then watches from the list's resourceVersion; a closed stream is
  resumed from the last seen version (bookmarks keep it fresh), ``410 Gone`` relists, and
  transport errors and 5xx back off exponentially.
- Every ``interval_s`` the leader reconciles every cached object, ``concurrency`` at a time.
  One object's failure is logged and counted, never stops the others.
- Between cycles, a spec change (``generation``; status-only changes, our own writes, do
  not count) reconciles that object at once, and a change of a watched target (Deployment or
  StatefulSet: replicas, ready replicas, created, deleted) reconciles the objects pointing at
  it, ``trigger_delay_s`` later so that a burst of events costs one reconcile. Such a
  triggered reconcile may raise the target (or the HPA floor, or node headroom) but never
  lowers it: scale-downs, their rate limits and headroom releases stay with the cycle.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from forecaster.controller import targets
from forecaster.controller.clock import sleep_or_stop
from forecaster.controller.metrics import ControllerMetrics
from forecaster.controller.reconcile import Reconciler
from forecaster.controller.spec import GROUP, PLURAL, VERSION
from forecaster.kube import Gone, JsonObj, KubeError

log = logging.getLogger(__name__)

Key = tuple[str, str]
SPEC, TARGET = "spec", "target"
"""Why an object is due before the next cycle (a spec change outranks a target change)."""


def collection_path(namespace: str | None) -> str:
    ns = f"/namespaces/{namespace}" if namespace else ""
    return f"/apis/{GROUP}/{VERSION}{ns}/{PLURAL}"


def key_of(obj: Mapping[str, Any]) -> Key:
    meta = obj.get("metadata") or {}
    return str(meta.get("namespace", "")), str(meta.get("name", ""))


class Controller:
    """Watches PredictiveAutoscalers and their targets; reconciles while ``is_leader()``."""

    def __init__(
        self,
        reconciler: Reconciler,
        metrics: ControllerMetrics,
        *,
        namespace: str | None = None,
        concurrency: int = 16,
        watch_timeout_s: int = 300,
        trigger_delay_s: float = 0.5,
        watch_targets: bool = True,
        is_leader: Callable[[], bool] = lambda: True,
    ) -> None:
        self.reconciler, self.metrics = reconciler, metrics
        self.deps = reconciler.deps
        self.namespace, self.concurrency, self.watch_timeout_s = namespace, concurrency, watch_timeout_s
        self.trigger_delay_s, self.watch_targets = trigger_delay_s, watch_targets
        self.is_leader = is_leader
        self.cache: dict[Key, JsonObj] = {}
        self.index = targets.TargetIndex()
        self._reconciled_generation: dict[Key, int] = {}
        self._due: dict[Key, str] = {}
        self._listed: set[str] = set()
        self._wake = asyncio.Event()
        self.synced = asyncio.Event()
        """Set once the first list has filled the cache."""
        self.relists = 0
        self.target_relists = 0
        self.triggered = 0
        """Reconciles run between cycles (spec or target changes)."""

    # -- watches --------------------------------------------------------------------------

    async def _list(self) -> str:
        doc = await self.deps.kube.get(collection_path(self.namespace))
        fresh = {key_of(o): o for o in doc.get("items") or []}
        for gone in set(self.cache) - set(fresh):
            self._forget(gone)
        for key, obj in fresh.items():
            self.index.point(key, obj)
        self.cache = fresh
        self.relists += 1
        self.synced.set()
        self._wake.set()
        return str((doc.get("metadata") or {}).get("resourceVersion", ""))

    def _forget(self, key: Key) -> None:
        self.cache.pop(key, None)
        self._reconciled_generation.pop(key, None)
        self._due.pop(key, None)
        self.index.drop(key)
        self.reconciler.forget(*key)
        self.metrics.forget(*key)

    def _mark(self, keys: set[Key], why: str) -> None:
        for key in keys:
            if key in self.cache and self._due.get(key) != SPEC:
                self._due[key] = why
        if keys:
            self._wake.set()

    def _apply_event(self, kind: str, obj: JsonObj) -> None:
        key = key_of(obj)
        if kind == "DELETED":
            self._forget(key)
            return
        self.cache[key] = obj
        self.index.point(key, obj)
        gen = int((obj.get("metadata") or {}).get("generation", 0))
        if self._reconciled_generation.get(key) != gen:
            self._mark({key}, SPEC)

    async def _list_targets(self, collection: str) -> str:
        doc = await self.deps.kube.get(collection)
        changed = self.index.relist(collection, list(doc.get("items") or []))
        self.target_relists += 1
        if collection in self._listed:  # a collection's first list only fills the cache
            self._mark(changed, TARGET)
        self._listed.add(collection)
        return str((doc.get("metadata") or {}).get("resourceVersion", ""))

    def _apply_target_event(self, collection: str, kind: str, obj: JsonObj) -> None:
        path = targets.item_path(collection, obj)
        value = None if kind == "DELETED" else targets.summary(obj)
        self._mark(self.index.observe(path, value), TARGET)

    async def _watch(
        self,
        path: str,
        relist: Callable[[], Awaitable[str]],
        apply: Callable[[str, JsonObj], None],
        stop: asyncio.Event,
    ) -> None:
        """List, then watch ``path`` until ``stop``: resume, relist on 410, back off on errors."""
        rv: str | None = None
        backoff = 0.5
        while not stop.is_set():
            try:
                if rv is None:
                    rv = await relist()
                async for kind, obj in self.deps.kube.watch(path, rv, self.watch_timeout_s):
                    rv = str((obj.get("metadata") or {}).get("resourceVersion", rv))
                    if kind != "BOOKMARK":
                        apply(kind, obj)
                    if stop.is_set():
                        break
                backoff = 0.5
            except Gone:
                rv = None
            except (KubeError, ValueError) as e:
                log.warning(
                    "watch failed; retrying",
                    extra={"fields": {"path": path, "error": str(e), "backoff_s": backoff}},
                )
                if isinstance(e, ValueError) or e.status in (403, 404):
                    rv = None  # malformed stream, or the CRD/permission is missing: relist
                if await sleep_or_stop(self.deps.clock, stop, backoff):
                    return
                backoff = min(backoff * 2, 30.0)

    async def watch(self, stop: asyncio.Event) -> None:
        """Keep the caches in step with the API until ``stop``."""
        watches = [self._watch(collection_path(self.namespace), self._list, self._apply_event, stop)]
        if self.watch_targets:
            for coll in targets.collections(self.namespace):
                relist = functools.partial(self._list_targets, coll)
                apply = functools.partial(self._apply_target_event, coll)
                watches.append(self._watch(coll, relist, apply, stop))
        await asyncio.gather(*watches)

    # -- reconcile cycle ------------------------------------------------------------------

    async def reconcile_all(self, keys: Mapping[Key, str] | None = None) -> int:
        """Reconcile every cached object once (or those of ``keys``, each with why it is due);
        returns how many raised."""
        sem = asyncio.Semaphore(self.concurrency)
        failures = 0

        async def one(key: Key, obj: JsonObj, why: str | None) -> None:
            nonlocal failures
            async with sem:
                if key not in self.cache:
                    return  # deleted while waiting
                # Before the call: our own status write must not look like a new spec.
                self._reconciled_generation[key] = int((obj.get("metadata") or {}).get("generation", 0))
                try:
                    if why == TARGET:
                        outcome = await self.reconciler.reconcile(obj, triggered=True)
                    else:
                        outcome = await self.reconciler.reconcile(obj)
                except Exception as e:  # one object never stops the others
                    failures += 1
                    self.metrics.errors += 1
                    fields = {"fields": {"pa": f"{key[0]}/{key[1]}", "error": str(e)}}
                    if isinstance(e, KubeError):  # the API refused or is away: no traceback needed
                        log.warning("reconcile failed", extra=fields)
                    else:
                        log.exception("reconcile failed", extra=fields)
                    return
                if key in self.cache:
                    self.metrics.record(outcome)

        work: list[tuple[Key, JsonObj, str | None]]
        if keys is None:
            self._due.clear()
            work = [(k, o, None) for k, o in list(self.cache.items())]
        else:
            work = [(k, self.cache[k], why) for k, why in keys.items() if k in self.cache]
        await asyncio.gather(*(one(k, o, why) for k, o, why in work))
        return failures

    async def cycle(self, stop: asyncio.Event) -> None:
        """Reconcile everything every ``interval_s`` while leader, and what is due in between,
        until ``stop``."""
        next_full = self.deps.clock.now()
        while not stop.is_set():
            self._wake.clear()
            leader = self.is_leader()
            self.metrics.leader = leader
            if not leader:
                self._due.clear()
                next_full = self.deps.clock.now()
            elif self.synced.is_set() and self.deps.clock.now() >= next_full:
                started = time.perf_counter()
                await self.reconcile_all()
                self.metrics.cycle_seconds = time.perf_counter() - started
                self.metrics.cycles += 1
                next_full = self.deps.clock.now() + self.deps.interval_s
            elif self.synced.is_set() and self._due:
                if await sleep_or_stop(self.deps.clock, stop, self.trigger_delay_s):
                    return
                due, self._due = self._due, {}
                self.triggered += len(due)
                await self.reconcile_all(due)
            ready = leader and self.synced.is_set()
            await self._sleep_or_wake(stop, max(0.0, next_full - self.deps.clock.now()) if ready else 0.5)

    async def _sleep_or_wake(self, stop: asyncio.Event, seconds: float) -> None:
        wake = asyncio.ensure_future(self._wake.wait())
        halt = asyncio.ensure_future(stop.wait())
        nap = asyncio.ensure_future(self.deps.clock.sleep(seconds))
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
