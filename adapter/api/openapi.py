"""``/openapi/v2`` and ``/openapi/v3``: small hand-written specs of what we serve.

The aggregator merges them into the kube-apiserver's spec (``kubectl explain``); the fuzz
tests walk the same paths. Definitions name the Go types so merged specs stay recognisable.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from typing import Any, Final

from aiohttp import web

from adapter.api.serialization import CUSTOM_GROUP, CUSTOM_VERSIONS, EXTERNAL_GROUP

_STATUS: Final = {"$ref": "#/definitions/io.k8s.apimachinery.pkg.apis.meta.v1.Status"}
_SEL: Final = {"name": "labelSelector", "in": "query", "type": "string", "uniqueItems": True}
_MSEL: Final = {"name": "metricLabelSelector", "in": "query", "type": "string", "uniqueItems": True}


def _op(op_id: str, kind: str, params: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "get": {
            "operationId": op_id,
            "produces": ["application/json"],
            "schemes": ["https"],
            "parameters": params,
            "responses": {
                "200": {"description": "OK", "schema": {"$ref": f"#/definitions/{kind}"}},
                "401": {"description": "Unauthorized", "schema": _STATUS},
                "404": {"description": "NotFound", "schema": _STATUS},
                "503": {"description": "ServiceUnavailable", "schema": _STATUS},
            },
        }
    }


def _path_param(name: str) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "type": "string", "uniqueItems": True}


def spec_v2() -> dict[str, Any]:
    """Swagger 2.0 document for both groups."""
    ext_kind = "io.k8s.metrics.pkg.apis.external_metrics.v1beta1.ExternalMetricValueList"
    paths: dict[str, Any] = {
        f"/apis/{EXTERNAL_GROUP}/v1beta1/namespaces/{{namespace}}/{{metric}}": _op(
            "readExternalMetricValue", ext_kind, [_path_param("namespace"), _path_param("metric"), _SEL]
        ),
    }
    for v in CUSTOM_VERSIONS:
        kind = f"io.k8s.metrics.pkg.apis.custom_metrics.{v}.MetricValueList"
        base = f"/apis/{CUSTOM_GROUP}/{v}"
        paths[f"{base}/namespaces/{{namespace}}/{{resource}}/{{name}}/{{metric}}"] = _op(
            f"readNamespacedCustomMetric{v}",
            kind,
            [_path_param(p) for p in ("namespace", "resource", "name", "metric")] + [_SEL, _MSEL],
        )
        paths[f"{base}/namespaces/{{namespace}}/metrics/{{metric}}"] = _op(
            f"readNamespaceCustomMetric{v}", kind, [_path_param("namespace"), _path_param("metric"), _MSEL]
        )
        paths[f"{base}/{{resource}}/{{name}}/{{metric}}"] = _op(
            f"readClusterCustomMetric{v}",
            kind,
            [_path_param(p) for p in ("resource", "name", "metric")] + [_SEL, _MSEL],
        )
    obj = {"type": "object"}
    definitions = {ext_kind: obj, "io.k8s.apimachinery.pkg.apis.meta.v1.Status": obj}
    for v in CUSTOM_VERSIONS:
        definitions[f"io.k8s.metrics.pkg.apis.custom_metrics.{v}.MetricValueList"] = obj
    return {
        "swagger": "2.0",
        "info": {"title": "prescale-adapter", "version": "v0.1.0"},
        "paths": paths,
        "definitions": definitions,
    }


def _v3_for(prefix: str, v2: dict[str, Any]) -> dict[str, Any]:
    paths = {p: op for p, op in v2["paths"].items() if p.startswith(prefix + "/")}
    schemas = {k.replace("#/definitions/", ""): val for k, val in v2["definitions"].items()}
    text = json.dumps(paths).replace("#/definitions/", "#/components/schemas/")
    return {
        "openapi": "3.0.0",
        "info": v2["info"],
        "paths": json.loads(text),
        "components": {"schemas": schemas},
    }


def add_routes(app: web.Application, respond: Callable[[Any], web.Response]) -> None:
    """Register ``/openapi/v2``, ``/openapi/v3`` and one v3 document per group-version."""
    v2 = spec_v2()
    gvs = [f"apis/{EXTERNAL_GROUP}/v1beta1"] + [f"apis/{CUSTOM_GROUP}/{v}" for v in CUSTOM_VERSIONS]
    docs = {gv: _v3_for("/" + gv, v2) for gv in gvs}
    root = {
        "paths": {
            gv: {
                "serverRelativeURL": f"/openapi/v3/{gv}?hash="
                + hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:32].upper()
            }
            for gv, doc in docs.items()
        }
    }

    async def get_v2(request: web.Request) -> web.Response:
        return respond(v2)

    async def get_v3(request: web.Request) -> web.Response:
        return respond(root)

    async def get_v3_gv(request: web.Request) -> web.Response:
        doc = docs.get(request.match_info["gv"])
        if doc is None:
            raise web.HTTPNotFound
        return respond(doc)

    app.router.add_get("/openapi/v2", get_v2, allow_head=False)
    app.router.add_get("/openapi/v3", get_v3, allow_head=False)
    app.router.add_get("/openapi/v3/{gv:apis/.+}", get_v3_gv, allow_head=False)
