"""HTTP side: ``/metrics`` serializes the latest snapshot (cached per snapshot), ``/healthz``.

The exposition of a snapshot is rendered once, on the collection loop as soon as the snapshot is
published, and reused by every scrape until the next one; only
``gpu_exporter_snapshot_age_seconds`` is computed per scrape. A scrape therefore costs a lookup
and a small concatenation, whatever the GPU count, and never waits for a render.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from aiohttp import web
from prometheus_client import CollectorRegistry, generate_latest

from gpu_exporter.collection import Collection, Snapshot
from gpu_exporter.collector import FreshnessCollector, Naming, render
from gpu_exporter.exposition import TextSerializer

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
"""``generate_latest`` writes the classic text format (prometheus_client 0.26's
``CONTENT_TYPE_LATEST`` announces 1.0.0, which older Prometheus servers do not negotiate)."""


class Renderer:
    """Exposition bytes for the latest snapshot, rendered at most once per snapshot.

    With a ``pool`` the render runs on that thread, so a scrape arriving meanwhile is answered
    from the previous snapshot's bytes after at most one GIL switch interval instead of waiting
    for the whole render on the event loop (tens of ms at 64 GPUs).
    """

    def __init__(self, source: Callable[[], Snapshot], naming: Naming, now: Callable[[], float],
                 pool: ThreadPoolExecutor | None = None) -> None:
        self.source = source
        self.naming = naming
        self.pool = pool
        self._seq = -1
        self._body = b""
        self._lock = threading.Lock()
        self._queued = False
        self._serializer = TextSerializer()
        self._fresh = CollectorRegistry(auto_describe=False)
        self._fresh.register(FreshnessCollector(source, now))

    def _render(self, snap: Snapshot) -> None:
        body = render(snap, self.naming, self._serializer)
        with self._lock:
            if snap.seq > self._seq:
                self._body, self._seq = body, snap.seq

    def _render_latest(self) -> None:
        with self._lock:
            self._queued = False
        self._render(self.source())

    def on_snapshot(self, snap: Snapshot) -> None:
        """A new snapshot was published: render it ahead of the next scrape."""
        if self.pool is None:
            self._render(snap)
            return
        with self._lock:
            if self._queued:
                return  # the queued render will pick up this (latest) snapshot
            self._queued = True
        self.pool.submit(self._render_latest)

    def body(self) -> bytes:
        snap = self.source()
        if self._seq < 0 or (self.pool is None and snap.seq != self._seq):
            self._render(snap)  # nothing rendered yet, or no render thread: render now
        return self._body + generate_latest(self._fresh)


@dataclass(frozen=True)
class ServerDeps:
    """What the app needs; built by the CLI or a test."""

    collection: Collection
    naming: Naming = "prescale"
    stale_after_s: float = 10.0
    """``/healthz`` fails when the last good GPU read is older than this."""
    run_loop: bool = True
    """Start ``collection.run`` with the app (tests that drive refreshes by hand pass False)."""


DEPS = web.AppKey("deps", ServerDeps)
RENDERER = web.AppKey("renderer", Renderer)


async def _metrics(request: web.Request) -> web.Response:
    body = request.app[RENDERER].body()
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE})


async def _healthz(request: web.Request) -> web.Response:
    deps = request.app[DEPS]
    snap = deps.collection.latest
    age = deps.collection.clock.now() - snap.last_success_s
    if snap.last_success_s == 0:
        return web.Response(status=503, text="no GPU reading yet\n")
    if age > deps.stale_after_s:
        return web.Response(status=503, text=f"stale: last GPU reading {age:.1f}s ago\n")
    return web.Response(text=f"ok: last GPU reading {age:.1f}s ago\n")


async def _index(_request: web.Request) -> web.Response:
    return web.Response(text="prescale GPU exporter: /metrics /healthz\n")


async def _run_collection(app: web.Application) -> AsyncIterator[None]:
    collection = app[DEPS].collection
    renderer = app[RENDERER]
    renderer.pool = ThreadPoolExecutor(1, thread_name_prefix="render")
    stop = asyncio.Event()
    task = asyncio.create_task(collection.run(stop))
    yield
    stop.set()
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    collection.close()
    renderer.pool.shutdown(wait=True, cancel_futures=True)
    renderer.pool = None


def make_app(deps: ServerDeps) -> web.Application:
    app = web.Application()
    app[DEPS] = deps
    collection = deps.collection
    renderer = app[RENDERER] = Renderer(lambda: collection.latest, deps.naming, collection.clock.now)
    collection.listeners.append(renderer.on_snapshot)
    app.router.add_get("/metrics", _metrics)
    app.router.add_get("/healthz", _healthz)
    app.router.add_get("/", _index)
    if deps.run_loop:
        app.cleanup_ctx.append(_run_collection)
    return app
