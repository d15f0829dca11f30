"""A Prometheus-compatible HTTP API as a metrics source (Prometheus, Thanos, Mimir, VictoriaMetrics).

One instant query per (rule, namespace, selector) per ``cache_s``, coalesced (see ``cache``).
Failures, timeouts and malformed answers become ``Unavailable`` with a message that names the
metric but never echoes upstream bodies to clients (they are logged, truncated).
"""

from __future__ import annotations

import base64
import logging
import math
import ssl
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import aiohttp

from adapter.api.selectors import EVERYTHING, Selector
from adapter.metrics import AdapterMetrics
from adapter.provider import (
    CustomMetricInfo,
    CustomQuery,
    MetricNotFound,
    ObjectRef,
    ObjectSample,
    Sample,
    Unavailable,
)
from adapter.providers.cache import CoalescingCache
from adapter.rules import Rule, render

log = logging.getLogger(__name__)

_KINDS = {
    "pods": ("Pod", "/v1"),
    "namespaces": ("Namespace", "/v1"),
    "services": ("Service", "/v1"),
    "nodes": ("Node", "/v1"),
    "deployments.apps": ("Deployment", "apps/v1"),
    "statefulsets.apps": ("StatefulSet", "apps/v1"),
}


@dataclass(frozen=True)
class PrometheusConfig:
    """How to reach the query API."""

    url: str
    """Base URL, e.g. ``http://prometheus:9090`` or a Mimir ``.../prometheus`` prefix."""
    timeout_s: float = 5.0
    """Per-query deadline; a slower answer is a 503, never a hung HPA worker."""
    bearer_token: str | None = None
    """Sent as ``Authorization: Bearer``."""
    basic_auth: tuple[str, str] | None = None
    """User and password for HTTP basic auth."""
    tenant: str | None = None
    """Sent as ``X-Scope-OrgID`` (Mimir, Cortex, Thanos receive tenancy)."""
    ca_file: str | None = None
    """CA bundle to verify an HTTPS upstream."""
    insecure_skip_verify: bool = False
    """Do not verify the upstream's certificate (testing only)."""
    headers: Mapping[str, str] = field(default_factory=dict)
    """Extra request headers."""

    def __post_init__(self) -> None:
        if self.bearer_token and self.basic_auth:
            raise ValueError("prometheus: a bearer token and basic auth cannot both be set")
        if self.timeout_s <= 0:
            raise ValueError(f"prometheus: timeout_s={self.timeout_s} must be > 0")


class PodLister(Protocol):
    """Names of the pods matching a label selector (the HPA's Pods metrics select by pod labels)."""

    async def pod_names(self, namespace: str, selector: Selector) -> Sequence[str]: ...


def _float(raw: Any) -> float:
    try:
        return float(raw)
    except (TypeError, ValueError):
        return math.nan


class PrometheusProvider:
    """Serves rules whose ``source`` is ``prometheus``."""

    def __init__(
        self,
        config: PrometheusConfig,
        rules: Sequence[Rule],
        *,
        metrics: AdapterMetrics | None = None,
        pods: PodLister | None = None,
    ) -> None:
        self._config = config
        self._external = {r.name: r for r in rules if r.api == "external" and r.source == "prometheus"}
        self._custom = {
            (r.resource, r.name): r for r in rules if r.api == "custom" and r.source == "prometheus"
        }
        self._metrics = metrics
        self._pods = pods
        self._cache: CoalescingCache[list[tuple[dict[str, str], float, float]]] = CoalescingCache()
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> PrometheusProvider:
        cfg = self._config
        ssl_ctx: ssl.SSLContext | bool = True
        if cfg.insecure_skip_verify:
            ssl_ctx = False
        elif cfg.ca_file:
            ssl_ctx = ssl.create_default_context(cafile=cfg.ca_file)
        headers = dict(cfg.headers)
        if cfg.bearer_token:
            headers["Authorization"] = f"Bearer {cfg.bearer_token}"
        if cfg.tenant:
            headers["X-Scope-OrgID"] = cfg.tenant
        if cfg.basic_auth:
            user, password = cfg.basic_auth
            headers["Authorization"] = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
        self._session = aiohttp.ClientSession(
            headers=headers,
            connector=aiohttp.TCPConnector(ssl=ssl_ctx, limit=64),
            timeout=aiohttp.ClientTimeout(total=cfg.timeout_s),
        )
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    @property
    def upstream_calls(self) -> int:
        """How many queries reached the upstream (for tests of coalescing)."""
        return self._cache.upstream_calls

    def external_metrics(self) -> Sequence[str]:
        return sorted(self._external)

    def custom_metrics(self) -> Sequence[CustomMetricInfo]:
        return [CustomMetricInfo(gr, m, gr not in ("namespaces", "nodes")) for gr, m in sorted(self._custom)]

    async def external(self, namespace: str, metric: str, selector: Selector) -> Sequence[Sample]:
        rule = self._external.get(metric)
        if rule is None:
            raise MetricNotFound(f"the server could not find the external metric {metric}")
        rows = await self._query(rule, render(rule, namespace, selector))
        if not rows and rule.on_empty == "zero":
            return [Sample(0.0, time.time())]
        return [Sample(v, ts, labels) for labels, ts, v in rows]

    async def custom(self, query: CustomQuery) -> Sequence[ObjectSample]:
        rule = self._custom.get((query.group_resource, query.metric))
        if rule is None:
            raise MetricNotFound(
                f"the server could not find the metric {query.metric} for {query.group_resource}"
            )
        wanted = await self._wanted_names(query)
        # One query per (namespace, metric selector): every HPA on this metric shares it, and
        # the described objects are picked from its rows here, not spliced into PromQL.
        rows = await self._query(rule, render(rule, query.namespace, query.metric_selector))
        kind, api_version = _KINDS.get(query.group_resource, (query.group_resource.split(".")[0], "/v1"))
        out = []
        for labels, ts, v in rows:
            name = labels.get(rule.object_label)
            if name and (wanted is None or name in wanted):
                out.append(ObjectSample(ObjectRef(kind, name, query.namespace, api_version), v, ts))
        return sorted(out, key=lambda s: s.obj.name)

    async def _wanted_names(self, query: CustomQuery) -> set[str] | None:
        """Object names to keep; None keeps every row.

        A named object keeps only itself. ``*`` with a pod label selector asks the pod lister
        (the selector is about pod labels, which series usually do not carry); without a
        lister the selector cannot be honoured and every row is served.
        """
        if query.name != "*":
            return {query.name}
        if query.selector == EVERYTHING or self._pods is None or query.namespace is None:
            return None
        try:
            return set(await self._pods.pod_names(query.namespace, query.selector))
        except Exception as e:  # the pod lister is another remote: its failure is ours to report
            raise Unavailable("unable to list the pods matching the selector") from e

    async def _query(self, rule: Rule, promql: str) -> list[tuple[dict[str, str], float, float]]:
        return await self._cache.get(
            promql, lambda: self._fetch(promql), cache_s=rule.cache_s, freshness_s=rule.freshness_s
        )

    async def _fetch(self, promql: str) -> list[tuple[dict[str, str], float, float]]:
        if self._session is None:
            raise RuntimeError("PrometheusProvider used outside 'async with'")
        started = time.perf_counter()
        try:
            async with self._session.get(
                f"{self._config.url.rstrip('/')}/api/v1/query", params={"query": promql}
            ) as resp:
                body = await resp.json(content_type=None)
                if resp.status != 200 or not isinstance(body, dict) or body.get("status") != "success":
                    raise _Upstream(f"HTTP {resp.status}: {str(body)[:200]}", "http")
        except (aiohttp.ClientError, TimeoutError, ValueError) as e:
            self._count_error(type(e).__name__)
            log.warning(
                "prometheus query failed", extra={"fields": {"query": promql[:300], "error": str(e)[:200]}}
            )
            raise Unavailable("unable to fetch metrics from the metrics source") from e
        except _Upstream as e:
            self._count_error(e.reason)
            log.warning("prometheus query failed", extra={"fields": {"query": promql[:300], "error": str(e)}})
            raise Unavailable("unable to fetch metrics from the metrics source") from e
        finally:
            if self._metrics is not None:
                self._metrics.upstream_latency.labels("prometheus").observe(time.perf_counter() - started)
        return _rows(body.get("data", {}))

    def _count_error(self, reason: str) -> None:
        if self._metrics is not None:
            self._metrics.upstream_errors.labels("prometheus", reason).inc()


class _Upstream(Exception):
    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


def _rows(data: Any) -> list[tuple[dict[str, str], float, float]]:
    """(labels, timestamp_s, value) for a vector or scalar result."""
    if not isinstance(data, dict):
        return []
    kind, result = data.get("resultType"), data.get("result")
    if kind == "scalar" and isinstance(result, list) and len(result) == 2:
        return [({}, _float(result[0]), _float(result[1]))]
    if kind != "vector" or not isinstance(result, list):
        return []
    rows = []
    for item in result[:10_000]:
        metric, value = item.get("metric", {}), item.get("value", [])
        if isinstance(metric, dict) and isinstance(value, list) and len(value) == 2:
            labels = {str(k): str(v) for k, v in metric.items() if k != "__name__"}
            rows.append((labels, _float(value[0]), _float(value[1])))
    return rows
