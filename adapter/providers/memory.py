"""An in-memory provider: the route tests use it, and a forecaster or a test can push into it.

Values are set explicitly; nothing expires on its own, but an optional freshness limit makes
reads of old values fail like a real source would (``Unavailable``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from adapter.api.selectors import Selector
from adapter.provider import (
    CustomMetricInfo,
    CustomQuery,
    MetricNotFound,
    ObjectRef,
    ObjectSample,
    Sample,
    Unavailable,
)


@dataclass(frozen=True)
class _Obj:
    sample: ObjectSample
    labels: Mapping[str, str]


class MemoryProvider:
    """Holds external series per (namespace, metric) and custom values per object."""

    def __init__(self, *, freshness_s: float | None = None, clock: Callable[[], float] = time.time) -> None:
        self._external: dict[str, dict[str, list[Sample]]] = {}
        self._custom: dict[tuple[str, str], dict[tuple[str | None, str], _Obj]] = {}
        self._freshness_s = freshness_s
        self._clock = clock

    def set_external(self, metric: str, namespace: str, samples: Sequence[Sample]) -> None:
        """Replace the series of ``metric`` in ``namespace`` (an empty list is a known metric)."""
        self._external.setdefault(metric, {})[namespace] = list(samples)

    def set_custom(
        self,
        group_resource: str,
        metric: str,
        obj: ObjectRef,
        value: float,
        *,
        labels: Mapping[str, str] | None = None,
        timestamp_s: float | None = None,
    ) -> None:
        """Set the value of ``metric`` for one object; ``labels`` are the object's labels."""
        ts = self._clock() if timestamp_s is None else timestamp_s
        store = self._custom.setdefault((group_resource, metric), {})
        store[(obj.namespace, obj.name)] = _Obj(ObjectSample(obj, value, ts), dict(labels or {}))

    def external_metrics(self) -> Sequence[str]:
        return sorted(self._external)

    def custom_metrics(self) -> Sequence[CustomMetricInfo]:
        return [CustomMetricInfo(gr, m, gr != "namespaces") for gr, m in sorted(self._custom)]

    def _check_fresh(self, metric: str, timestamps: Sequence[float]) -> None:
        if self._freshness_s is None or not timestamps:
            return
        age = self._clock() - max(timestamps)
        if age > self._freshness_s:
            raise Unavailable(f"metric {metric} is stale: newest value is {age:.0f}s old")

    async def external(self, namespace: str, metric: str, selector: Selector) -> Sequence[Sample]:
        by_ns = self._external.get(metric)
        if by_ns is None:
            raise MetricNotFound(f"the server could not find the external metric {metric}")
        found = [s for s in by_ns.get(namespace, []) if selector.matches(s.labels)]
        self._check_fresh(metric, [s.timestamp_s for s in found])
        return found

    async def custom(self, query: CustomQuery) -> Sequence[ObjectSample]:
        store = self._custom.get((query.group_resource, query.metric))
        if store is None:
            raise MetricNotFound(
                f"the server could not find the metric {query.metric} for {query.group_resource}"
            )
        found = [
            o.sample
            for (ns, name), o in sorted(store.items(), key=lambda kv: kv[0][1])
            if ns == query.namespace and (query.name in ("*", name)) and query.selector.matches(o.labels)
        ]
        self._check_fresh(query.metric, [s.timestamp_s for s in found])
        return found
