"""The adapter's own metrics, on an explicit registry (never the global one)."""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

_LATENCY_BUCKETS = (
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1,
    2.5,
    5,
    10,
)


class AdapterMetrics:
    """Requests by route and code, latencies, upstream queries, value freshness."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            "prescale_adapter_requests_total",
            "API requests by route and code.",
            ["route", "code"],
            registry=r,
        )
        self.latency = Histogram(
            "prescale_adapter_request_duration_seconds",
            "API request latency.",
            ["route"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.upstream_latency = Histogram(
            "prescale_adapter_upstream_query_duration_seconds",
            "Upstream (Prometheus) query latency.",
            ["source"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.upstream_errors = Counter(
            "prescale_adapter_upstream_errors_total",
            "Failed upstream queries by source and reason.",
            ["source", "reason"],
            registry=r,
        )
        self.freshness = Histogram(
            "prescale_adapter_value_age_seconds",
            "Age of served values (now - sample timestamp).",
            ["api"],
            buckets=(1, 2, 5, 10, 15, 30, 60, 120, 300, 600),
            registry=r,
        )
        self.dropped = Counter(
            "prescale_adapter_values_dropped_total",
            "Values not served by the NaN/Inf policy.",
            ["api"],
            registry=r,
        )
        self.auth = Counter(
            "prescale_adapter_auth_total", "Authentication/authorization outcomes.", ["result"], registry=r
        )
        self.scrape_series = Gauge(
            "prescale_adapter_scrape_series", "Series held by the scrape source.", registry=r
        )
        # Label children cached per label tuple: ``labels()`` takes a lock and re-validates on
        # every call, which is a visible share of a cached metric GET. Both label sets are
        # bounded (fixed routes and status codes; two APIs).
        self._children: dict[tuple[str, ...], Any] = {}

    def _child(self, key: tuple[str, ...], make: Any) -> Any:
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = make()
        return child

    def request_done(self, route: str, code: int, seconds: float) -> None:
        """Count one API request and record its latency."""
        self._child(("req", route, str(code)), lambda: self.requests.labels(route, str(code))).inc()
        self._child(("lat", route), lambda: self.latency.labels(route)).observe(seconds)

    def served(self, api: str, ages_s: list[float], dropped: int) -> None:
        """Record the age of each served value and how many the value policy dropped."""
        hist = self._child(("age", api), lambda: self.freshness.labels(api))
        for age in ages_s:
            hist.observe(age)
        if dropped:
            self._child(("drop", api), lambda: self.dropped.labels(api)).inc(dropped)
