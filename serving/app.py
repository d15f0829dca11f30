"""HTTP routes: KServe v1, the Open Inference Protocol v2, health, readiness and metrics.

``make_app(deps)`` builds the application; the repository's start-up load, the hot-loading
poller and the batchers live in ``cleanup_ctx``, so they start with the server and stop after
in-flight requests have been answered. Every error is JSON (``{"error": ...}``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from serving import admission
from serving.config import ServeConfig
from serving.errors import BadRequest, Overloaded, PayloadTooLarge, ServeError
from serving.lifecycle import Lifecycle
from serving.metrics import ServerMetrics
from serving.protocol import decode_json, format_v1, format_v2, parse_v1, parse_v2, tensor_metadata
from serving.repository import LoadedVersion, Repository

log = logging.getLogger(__name__)
DEADLINE_HEADER = "X-Request-Timeout-Ms"
SERVER_NAME = "prescale-serving"
SERVER_VERSION = "0.1.0"


@dataclass(frozen=True)
class ServeDeps:
    """What the routes need; tests build it with a short poll interval and a tmp repository."""

    config: ServeConfig
    repository: Repository
    metrics: ServerMetrics
    lifecycle: Lifecycle


DEPS = web.AppKey("deps", ServeDeps)
LAG = web.AppKey("lag", admission.LoopLag)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response({"error": message}, status=status, headers=headers)


@web.middleware
async def json_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every failure becomes a JSON error; nothing leaks a traceback to the client."""
    try:
        return await handler(request)
    except ServeError as e:
        headers = {"Retry-After": str(e.retry_after_s)} if isinstance(e, Overloaded) else None
        return _error(e.status, e.message, headers)
    except web.HTTPException as e:
        if e.status < 400:
            raise
        message = f"no route for {request.method} {request.path}" if e.status == 404 else e.reason
        return _error(e.status, message)
    except Exception:
        log.exception("unhandled error", extra={"fields": {"path": request.path}})
        return _error(500, "internal error")


def _version(request: web.Request) -> int | None:
    raw = request.match_info.get("version")
    if raw is None:
        return None
    if not raw.isdigit():
        raise BadRequest(f"version {raw!r} is not a non-negative integer")
    return int(raw)


async def _body(request: web.Request) -> Any:
    try:
        raw = await request.read()
    except web.HTTPRequestEntityTooLarge:
        limit = request.app[DEPS].config.max_body_bytes
        raise PayloadTooLarge(f"request body exceeds {limit} bytes") from None
    return decode_json(raw)


def _deadline(request: web.Request, cfg: ServeConfig, arrived: float) -> float:
    timeout_s = cfg.batching.request_timeout_s
    raw = request.headers.get(DEADLINE_HEADER)
    if raw is not None:
        if not raw.isdigit() or int(raw) == 0:
            raise BadRequest(f"{DEADLINE_HEADER}: {raw!r} is not a positive integer of milliseconds")
        timeout_s = min(timeout_s, int(raw) / 1000)
    return arrived + timeout_s


async def _infer(request: web.Request, v2: bool) -> web.Response:
    deps = request.app[DEPS]
    arrived = time.monotonic()
    name = request.match_info["model"]
    label, code = "", 500  # unknown model names never become label values
    try:
        lv: LoadedVersion = deps.repository.get(name, _version(request))
        label = name
        # Shed before reading and parsing the body: a refusal costs about half of an answer.
        if lv.batcher.full:
            raise lv.batcher.overloaded()
        if deps.config.batching.max_wait_s > 0:
            admission.check(request.app[LAG].lag_s + lv.batcher.queue_wait_s(),
                            deps.config.batching.max_wait_s)
        deadline = _deadline(request, deps.config, arrived)
        inflight = deps.metrics.for_model(name).inflight
        inflight.inc()
        try:
            doc = await _body(request)
            if v2:
                x, request_id = parse_v2(doc, lv.model.signature)
            else:
                x, request_id = parse_v1(doc, lv.model.signature), None
            y = await lv.batcher.submit(x, deadline)
        finally:
            inflight.dec()
        out = format_v2(name, lv.version, lv.model.signature, y, request_id) if v2 else format_v1(y)
        code = 200
        return web.Response(text=json.dumps(out), content_type="application/json")
    except ServeError as e:
        code = e.status
        raise
    finally:
        deps.metrics.request_done(label, code, time.monotonic() - arrived)


async def v1_predict(request: web.Request) -> web.Response:
    return await _infer(request, v2=False)


async def v2_infer(request: web.Request) -> web.Response:
    return await _infer(request, v2=True)


async def v1_status(request: web.Request) -> web.Response:
    """TF Serving's model status: one entry per loaded version."""
    repo = request.app[DEPS].repository
    name, version = request.match_info["model"], _version(request)
    versions = [repo.get(name, version).version] if version is not None else repo.versions(name)
    if not versions:
        repo.get(name)  # raises the right NotFound
    return web.json_response({"model_version_status": [
        {"version": str(v), "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}}
        for v in versions]})


async def v2_model_metadata(request: web.Request) -> web.Response:
    repo = request.app[DEPS].repository
    name = request.match_info["model"]
    lv = repo.get(name, _version(request))
    return web.json_response({
        "name": name,
        "versions": [str(v) for v in repo.versions(name)],
        "platform": lv.model.runtime,
        **tensor_metadata(lv.model.signature),
    })


async def v2_model_ready(request: web.Request) -> web.Response:
    repo, lifecycle = request.app[DEPS].repository, request.app[DEPS].lifecycle
    repo.get(request.match_info["model"], _version(request))
    ready = not lifecycle.draining
    return web.json_response({"ready": ready}, status=200 if ready else 503)


async def live(request: web.Request) -> web.Response:
    return web.json_response({"live": True})


async def ready(request: web.Request) -> web.Response:
    """Ready after every model is loaded and warmed up, and until SIGTERM."""
    deps = request.app[DEPS]
    # Record the start-up time here too, so a 200 here always comes after the "ready" log line and
    # the start-up metric, even when the repository turns ready between two of the poller's steps.
    deps.lifecycle.mark_ready_if(deps.repository, deps.metrics)
    ok = deps.lifecycle.ready(deps.repository)
    body = {"ready": ok, "draining": deps.lifecycle.draining, "models": deps.repository.models()}
    return web.json_response(body, status=200 if ok else 503)


async def server_metadata(request: web.Request) -> web.Response:
    return web.json_response({"name": SERVER_NAME, "version": SERVER_VERSION, "extensions": []})


async def metrics(request: web.Request) -> web.Response:
    deps = request.app[DEPS]
    deps.metrics.set_ready(deps.lifecycle.ready(deps.repository))
    body = generate_latest(deps.metrics.registry)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


async def _poll(deps: ServeDeps) -> None:
    """Initial load, then rescan every ``poll_interval_s`` (0: load once)."""
    await deps.repository.sync()
    deps.lifecycle.mark_ready_if(deps.repository, deps.metrics)
    while deps.config.poll_interval_s > 0:
        await asyncio.sleep(deps.config.poll_interval_s)  # the rescan interval, not a wait for a condition
        await deps.repository.sync()
        deps.lifecycle.mark_ready_if(deps.repository, deps.metrics)


async def _repository_ctx(app: web.Application) -> AsyncIterator[None]:
    deps = app[DEPS]
    poller = asyncio.create_task(_poll(deps), name="repository-poller")
    yield
    poller.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await poller
    # Handlers have finished (or the grace period ran out); anything still queued gets a short tail.
    await deps.repository.close(timeout_s=1.0)


async def _lag_ctx(app: web.Application) -> AsyncIterator[None]:
    async with app[LAG].running():
        yield


def make_app(deps: ServeDeps) -> web.Application:
    app = web.Application(middlewares=[json_errors], client_max_size=deps.config.max_body_bytes)
    app[DEPS] = deps
    m, v = "{model:[A-Za-z0-9][A-Za-z0-9_.-]*}", "{version:[^/:]+}"
    app.add_routes([
        web.get("/healthz", live),
        web.get("/ready", ready),
        web.get("/metrics", metrics),
        web.get(f"/v1/models/{m}", v1_status),
        web.get(f"/v1/models/{m}/versions/{v}", v1_status),
        web.post(f"/v1/models/{m}:predict", v1_predict),
        web.post(f"/v1/models/{m}/versions/{v}:predict", v1_predict),
        web.get("/v2", server_metadata),
        web.get("/v2/health/live", live),
        web.get("/v2/health/ready", ready),
        web.get(f"/v2/models/{m}", v2_model_metadata),
        web.get(f"/v2/models/{m}/versions/{v}", v2_model_metadata),
        web.get(f"/v2/models/{m}/ready", v2_model_ready),
        web.get(f"/v2/models/{m}/versions/{v}/ready", v2_model_ready),
        web.post(f"/v2/models/{m}/infer", v2_infer),
        web.post(f"/v2/models/{m}/versions/{v}/infer", v2_infer),
    ])
    # A fine probe only when admission uses it; otherwise a coarse one keeps the gauge alive.
    limited = deps.config.batching.max_wait_s > 0
    interval_s = admission.LAG_INTERVAL_S if limited else admission.IDLE_INTERVAL_S
    app[LAG] = admission.LoopLag(deps.metrics.loop_lag(), interval_s)
    app.cleanup_ctx.append(_lag_ctx)
    app.cleanup_ctx.append(_repository_ctx)
    return app
