"""Prometheus-compatible upstreams with auth and tenancy (Mimir/Thanos style), as a loopback fake."""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from adapter import rules
from adapter.api.selectors import EVERYTHING
from adapter.provider import Unavailable
from adapter.providers.prometheus import PrometheusConfig, PrometheusProvider

RULES = rules.from_mapping({"rules": [{"name": "q", "query": "sum(x{<<matchers>>})"}]})


async def _upstream(seen: list[dict[str, Any]], status: int = 200) -> TestServer:
    async def query(request: web.Request) -> web.Response:
        seen.append({"headers": dict(request.headers), "query": request.query.get("query")})
        if status != 200:
            return web.Response(status=status, text="<html>oops " + "x" * 5000)
        return web.json_response(
            {
                "status": "success",
                "data": {
                    "resultType": "vector",
                    "result": [
                        {"metric": {"namespace": "llm"}, "value": [1_700_000_000.5, "NaN"]},
                        {"metric": {"namespace": "llm"}, "value": [1_700_000_000.5, "2.5"]},
                    ],
                },
            }
        )

    app = web.Application()
    app.router.add_get("/prometheus/api/v1/query", query)
    server = TestServer(app)
    await server.start_server()
    return server


async def test_bearer_and_tenant_headers() -> None:
    seen: list[dict[str, Any]] = []
    server = await _upstream(seen)
    cfg = PrometheusConfig(
        str(server.make_url("/prometheus")), bearer_token="tok", tenant="team-a", headers={"X-Extra": "1"}
    )
    try:
        async with PrometheusProvider(cfg, RULES) as p:
            got = await p.external("llm", "q", EVERYTHING)
    finally:
        await server.close()
    assert [s.value for s in got][1] == 2.5
    assert got[0].value != got[0].value  # NaN reaches the API layer, which drops it
    headers = seen[0]["headers"]
    assert headers["Authorization"] == "Bearer tok"
    assert headers["X-Scope-OrgID"] == "team-a"
    assert headers["X-Extra"] == "1"
    assert seen[0]["query"] == 'sum(x{namespace="llm"})'


async def test_basic_auth_and_error_status() -> None:
    seen: list[dict[str, Any]] = []
    server = await _upstream(seen, status=502)
    cfg = PrometheusConfig(str(server.make_url("/prometheus")), basic_auth=("u", "p"))
    try:
        async with PrometheusProvider(cfg, RULES) as p:
            with pytest.raises(Unavailable) as info:
                await p.external("llm", "q", EVERYTHING)
    finally:
        await server.close()
    assert seen[0]["headers"]["Authorization"].startswith("Basic ")
    assert "oops" not in str(info.value)  # upstream bodies never reach clients


def test_config_validation() -> None:
    with pytest.raises(ValueError, match="cannot both"):
        PrometheusConfig("http://x", bearer_token="t", basic_auth=("u", "p"))
    with pytest.raises(ValueError, match="must be > 0"):
        PrometheusConfig("http://x", timeout_s=0)
