"""Several providers behind one: each metric is answered by the first provider that lists it."""

from __future__ import annotations

from collections.abc import Sequence

from adapter.api.selectors import Selector
from adapter.provider import (
    CustomMetricInfo,
    CustomQuery,
    MetricNotFound,
    MetricsProvider,
    ObjectSample,
    Sample,
)


class CompositeProvider:
    """Routes by metric name (external) or by (group-resource, metric) (custom)."""

    def __init__(self, providers: Sequence[MetricsProvider]) -> None:
        self._providers = list(providers)

    def external_metrics(self) -> Sequence[str]:
        return sorted({m for p in self._providers for m in p.external_metrics()})

    def custom_metrics(self) -> Sequence[CustomMetricInfo]:
        seen: dict[tuple[str, str], CustomMetricInfo] = {}
        for p in self._providers:
            for info in p.custom_metrics():
                seen.setdefault((info.group_resource, info.metric), info)
        return [seen[k] for k in sorted(seen)]

    async def external(self, namespace: str, metric: str, selector: Selector) -> Sequence[Sample]:
        for p in self._providers:
            if metric in p.external_metrics():
                return await p.external(namespace, metric, selector)
        raise MetricNotFound(f"the server could not find the external metric {metric}")

    async def custom(self, query: CustomQuery) -> Sequence[ObjectSample]:
        for p in self._providers:
            if any(
                i.group_resource == query.group_resource and i.metric == query.metric
                for i in p.custom_metrics()
            ):
                return await p.custom(query)
        raise MetricNotFound(
            f"the server could not find the metric {query.metric} for {query.group_resource}"
        )
