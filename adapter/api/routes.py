"""aiohttp routes for external.metrics.k8s.io and custom.metrics.k8s.io.

``make_app(deps)`` builds the application; state lives under typed ``AppKey``s. Every error
leaves as a ``metav1.Status`` (never a traceback), every request has a deadline, and discovery
never touches a backend, so the aggregator's availability probe cannot fail because
Prometheus is down.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Final

from aiohttp import web
from aiohttp.typedefs import Middleware
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from adapter.api import openapi
from adapter.api import serialization as ser
from adapter.api.security import Security, security_middleware
from adapter.api.selectors import SelectorError, parse_selector
from adapter.metrics import AdapterMetrics
from adapter.provider import BadQuery, CustomQuery, MetricNotFound, MetricsProvider, Unavailable

log = logging.getLogger(__name__)

HEALTH_PATHS: Final = frozenset({"/healthz", "/livez", "/readyz"})
EXT: Final = f"/apis/{ser.EXTERNAL_GROUP}"
CUS: Final = f"/apis/{ser.CUSTOM_GROUP}"
_MAX_NAME: Final = 253
_JSON: Final = "application/json"


@dataclass(frozen=True)
class Deps:
    """What the app needs; ``security`` None disables auth (local development and benchmarks)."""

    provider: MetricsProvider
    metrics: AdapterMetrics
    security: Security | None = None
    request_timeout_s: float = 10.0
    """Deadline for one metric request; past it the answer is 503, so no HPA worker hangs."""
    public_metrics: bool = True
    """Serve ``/metrics`` without authentication (like the health paths)."""
    response_cache_s: float = 0.0
    """Reuse an encoded 200 answer for the same path and query this long (0: off). Sources
    already cache per rule interval; this skips re-serialising for the many HPAs that poll the
    same metric, at the price of values up to this much older."""


class BodyCache:
    """Encoded 200 bodies by ``path?query``, expiring, bounded (oldest evicted first)."""

    def __init__(self, ttl_s: float, max_entries: int = 4096) -> None:
        self._ttl_s = ttl_s
        self._max = max_entries
        self._entries: OrderedDict[str, tuple[float, bytes]] = OrderedDict()

    def get(self, key: str) -> bytes | None:
        hit = self._entries.get(key)
        if hit is None or hit[0] < time.monotonic():
            return None
        return hit[1]

    def put(self, key: str, body: bytes) -> None:
        self._entries[key] = (time.monotonic() + self._ttl_s, body)
        self._entries.move_to_end(key)
        if len(self._entries) > self._max:
            self._entries.popitem(last=False)


DEPS: Final = web.AppKey("deps", Deps)
BODIES: Final = web.AppKey("bodies", BodyCache)


def json_response(doc: Any, status: int = 200) -> web.Response:
    """Compact JSON, ``application/json`` (client-go picks its decoder from this header)."""
    return web.Response(
        body=json.dumps(doc, separators=(",", ":")).encode(), status=status, content_type=_JSON
    )


def status_response(code: int, reason: str, message: str) -> web.Response:
    """A ``metav1.Status`` failure response."""
    return json_response(ser.status(code, reason, message), code)


def _check_names(*names: str) -> None:
    for n in names:
        if not n or len(n) > _MAX_NAME:
            raise web.HTTPNotFound


def _cached(request: web.Request) -> web.Response | None:
    body = request.app[BODIES].get(request.path_qs) if request.app[DEPS].response_cache_s else None
    return None if body is None else web.Response(body=body, content_type=_JSON)


def _store(request: web.Request, doc: Any) -> web.Response:
    resp = json_response(doc)
    if request.app[DEPS].response_cache_s and isinstance(resp.body, bytes):
        request.app[BODIES].put(request.path_qs, resp.body)
    return resp


async def _external_value(request: web.Request) -> web.Response:
    if (hit := _cached(request)) is not None:
        return hit
    deps = request.app[DEPS]
    ns, metric = request.match_info["namespace"], request.match_info["metric"]
    _check_names(ns, metric)
    selector = parse_selector(request.query.get("labelSelector"))
    async with asyncio.timeout(deps.request_timeout_s):
        samples = await deps.provider.external(ns, metric, selector)
    doc, dropped = ser.external_list(metric, samples)
    _observe(deps, "external", samples_ts=[s.timestamp_s for s in samples], dropped=dropped)
    return _store(request, doc)


def _observe(deps: Deps, api: str, *, samples_ts: list[float], dropped: int) -> None:
    now = time.time()
    deps.metrics.served(api, [max(0.0, now - ts) for ts in samples_ts], dropped)


async def _custom_value(request: web.Request) -> web.Response:
    deps = request.app[DEPS]
    info = request.match_info
    version = info["version"]
    if version not in ser.CUSTOM_VERSIONS:
        raise web.HTTPNotFound
    if "resource" in info:
        resource, name, namespace = info["resource"], info["name"], info.get("namespace")
    else:  # namespaces/{ns}/metrics/{metric}: an Object metric on the Namespace itself
        resource, name, namespace = "namespaces", info["namespace"], None
    metric = info["metric"]
    _check_names(resource, name, metric, *(x for x in (namespace,) if x is not None))
    query = CustomQuery(
        resource,
        namespace,
        name,
        metric,
        parse_selector(request.query.get("labelSelector")),
        parse_selector(request.query.get("metricLabelSelector")),
    )
    async with asyncio.timeout(deps.request_timeout_s):
        samples = await deps.provider.custom(query)
    doc, dropped = ser.custom_list(version, metric, query.metric_selector, samples)
    _observe(deps, "custom", samples_ts=[s.timestamp_s for s in samples], dropped=dropped)
    if name != "*" and not doc["items"]:
        where = f"{resource} {name}" + (f" in namespace {namespace}" if namespace else "")
        raise MetricNotFound(f"the server could not find the metric {metric} for {where}")
    return json_response(doc)


def _static(doc_fn: Callable[[Deps], Any]) -> Callable[[web.Request], Awaitable[web.Response]]:
    async def handler(request: web.Request) -> web.Response:
        return json_response(doc_fn(request.app[DEPS]))

    return handler


async def _health(request: web.Request) -> web.Response:
    return web.Response(text="ok")


async def _metrics(request: web.Request) -> web.Response:
    body = generate_latest(request.app[DEPS].metrics.registry)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


def _route_name(request: web.Request) -> str:
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else "unmatched"


@web.middleware
async def errors_middleware(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """Status errors, request counters and latency: the one place codes are mapped.

    The request deadline applies where a request can wait, the upstream query and the
    SubjectAccessReview, so cached answers and static documents pay nothing for it.
    """
    deps = request.app[DEPS]
    started = time.perf_counter()
    try:
        resp = await handler(request)
    except MetricNotFound as e:
        resp = status_response(404, "NotFound", str(e))
    except (SelectorError, BadQuery) as e:
        resp = status_response(400, "BadRequest", str(e))
    except (Unavailable, TimeoutError) as e:
        resp = status_response(
            503, "ServiceUnavailable", str(e) or "the metrics source did not answer in time"
        )
    except web.HTTPMethodNotAllowed:
        resp = status_response(405, "MethodNotAllowed", f"method {request.method} is not supported")
    except web.HTTPNotFound:
        resp = status_response(404, "NotFound", "the server could not find the requested resource")
    except web.HTTPException as e:  # anything else aiohttp raises itself (e.g. 413): keep its code
        resp = status_response(e.status, e.reason.replace(" ", ""), e.reason)
    except Exception:
        log.exception("unhandled error", extra={"fields": {"path": request.path[:200]}})
        resp = status_response(500, "InternalError", "an internal error occurred")
    deps.metrics.request_done(_route_name(request), resp.status, time.perf_counter() - started)
    return resp


def _custom_resources(version: str, deps: Deps) -> Any:
    return ser.custom_resources(version, deps.provider.custom_metrics())


def make_app(deps: Deps) -> web.Application:
    """The API server application (TLS and listening are the caller's business)."""
    middlewares: list[Middleware] = [errors_middleware]
    if deps.security is not None:
        open_paths = HEALTH_PATHS | ({"/metrics"} if deps.public_metrics else frozenset())
        middlewares.append(
            security_middleware(deps.security, open_paths, deps.metrics, deps.request_timeout_s))
    app = web.Application(middlewares=middlewares, client_max_size=64 * 1024)
    app[DEPS] = deps
    app[BODIES] = BodyCache(deps.response_cache_s)
    get = app.router.add_get
    for path in HEALTH_PATHS:
        get(path, _health, allow_head=False)
    get("/metrics", _metrics, allow_head=False)
    get("/apis", _static(lambda d: ser.api_group_list()), allow_head=False)
    get(EXT, _static(lambda d: ser.api_group(ser.EXTERNAL_GROUP, ser.EXTERNAL_VERSIONS)), allow_head=False)
    get(
        f"{EXT}/v1beta1",
        _static(lambda d: ser.external_resources(d.provider.external_metrics())),
        allow_head=False,
    )
    get(EXT + "/v1beta1/namespaces/{namespace}/{metric}", _external_value, allow_head=False)
    get(CUS, _static(lambda d: ser.api_group(ser.CUSTOM_GROUP, ser.CUSTOM_VERSIONS)), allow_head=False)
    for v in ser.CUSTOM_VERSIONS:
        get(f"{CUS}/{v}", _static(functools.partial(_custom_resources, v)), allow_head=False)
    get(CUS + "/{version}/namespaces/{namespace}/metrics/{metric}", _custom_value, allow_head=False)
    get(CUS + "/{version}/namespaces/{namespace}/{resource}/{name}/{metric}", _custom_value, allow_head=False)
    get(CUS + "/{version}/{resource}/{name}/{metric}", _custom_value, allow_head=False)
    openapi.add_routes(app, json_response)
    return app
