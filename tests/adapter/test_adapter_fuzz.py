"""Seeded fuzzing of paths and query strings: no 5xx except the documented 503, never a traceback."""

from __future__ import annotations

import random
import time
from typing import Any

from aiohttp.test_utils import TestClient, TestServer

from adapter.api.routes import Deps, make_app
from adapter.metrics import AdapterMetrics
from adapter.provider import ObjectRef, Sample
from adapter.providers.memory import MemoryProvider

PIECES = [
    "apis",
    "external.metrics.k8s.io",
    "custom.metrics.k8s.io",
    "v1beta1",
    "v1beta2",
    "namespaces",
    "default",
    "ns",
    "pods",
    "*",
    "m",
    "metrics",
    "deployments.apps",
    "%2F",
    "..",
    ".",
    "%00",
    "x" * 300,
    "openapi",
    "v2",
    "v3",
    "healthz",
    "%E2%82%AC",
    "a%20b",
    "",
]
SELECTOR_BITS = [
    "a",
    "=",
    "==",
    "!=",
    " in ",
    " notin ",
    "(",
    ")",
    ",",
    "!",
    "b",
    "+",
    "%2C",
    "%3D",
    ">",
    "<",
    "1",
    "x.y/z",
    "%28",
    "%29",
    " ",
    "\\",
    '"',
    "}",
    "{",
    "%0A",
]


def _provider() -> MemoryProvider:
    p = MemoryProvider()
    p.set_external("m", "default", [Sample(1.5, time.time(), {"a": "b"})])
    p.set_custom("pods", "m", ObjectRef("Pod", "p", "ns"), 2.0, labels={"a": "b"})
    return p


async def test_fuzz_routes_and_queries() -> None:
    rng = random.Random(20261121)
    async with TestClient(TestServer(make_app(Deps(_provider(), AdapterMetrics())))) as client:
        for _ in range(600):
            path = "/" + "/".join(rng.choice(PIECES) for _ in range(rng.randint(0, 8)))
            path = "/_" + path[1:] if path.startswith("//") else path  # not a scheme-relative URL
            params = "".join(rng.choice(SELECTOR_BITS) for _ in range(rng.randint(0, 12)))
            key = rng.choice(["labelSelector", "metricLabelSelector", "x", "labelSelector"])
            await _check(client, f"{path}?{key}={params}")


async def _check(client: TestClient[Any, Any], url: str) -> None:
    resp = await client.get(url)
    text = await resp.text()
    assert resp.status < 500 or resp.status == 503, (url, resp.status, text)
    assert "Traceback" not in text, url
    if resp.status >= 400 and resp.content_type == "application/json":
        assert '"kind":"Status"' in text, url
