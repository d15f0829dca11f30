"""The adapter's own metrics, on an explicit registry (never the global one)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

_LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)


class AdapterMetrics:
    """Requests by route and code, latencies, upstream queries, value freshness."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter("prescale_adapter_requests_total", "API requests by route and code.",
                                ["route", "code"], registry=r)
        self.latency = Histogram("prescale_adapter_request_duration_seconds", "API request latency.",
                                 ["route"], buckets=_LATENCY_BUCKETS, registry=r)
        self.upstream_latency = Histogram(
            "prescale_adapter_upstream_query_duration_seconds", "Upstream (Prometheus) query latency.",
            ["source"], buckets=_LATENCY_BUCKETS, registry=r)
        self.upstream_errors = Counter("prescale_adapter_upstream_errors_total",
                                       "Failed upstream queries by source and reason.",
                                       ["source", "reason"], registry=r)
        self.freshness = Histogram(
            "prescale_adapter_value_age_seconds", "Age of served values (now - sample timestamp).",
            ["api"], buckets=(1, 2, 5, 10, 15, 30, 60, 120, 300, 600), registry=r)
        self.dropped = Counter("prescale_adapter_values_dropped_total",
                               "Values not served by the NaN/Inf policy.", ["api"], registry=r)
        self.auth = Counter("prescale_adapter_auth_total", "Authentication/authorization outcomes.",
                            ["result"], registry=r)
        self.scrape_series = Gauge("prescale_adapter_scrape_series", "Series held by the scrape source.",
                                   registry=r)
