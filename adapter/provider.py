"""What a metrics source must answer, with no HTTP in sight.

Routes (``adapter/api``) turn these values into ``ExternalMetricValueList`` and
``MetricValueList`` documents; providers (``adapter/providers``) fetch them. The errors below
are the whole vocabulary a provider may raise; the API maps each to one ``Status``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from adapter.api.selectors import Selector


class ProviderError(Exception):
    """Base of everything a provider raises on purpose; messages are safe for clients."""


class MetricNotFound(ProviderError):
    """No rule or series defines this metric for this API (answered 404 NotFound)."""


class BadQuery(ProviderError):
    """The request cannot be expressed for this source, e.g. ``>`` in PromQL (400 BadRequest)."""


class Unavailable(ProviderError):
    """The source failed, timed out, or its value is older than the freshness limit (503)."""


@dataclass(frozen=True)
class Sample:
    """One external-metric series value. ``timestamp_s`` is Unix seconds of the sample."""

    value: float
    timestamp_s: float
    labels: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ObjectRef:
    """The Kubernetes object a custom metric describes (``describedObject``)."""

    kind: str
    name: str
    namespace: str | None
    api_version: str = "/v1"


@dataclass(frozen=True)
class ObjectSample:
    """One custom-metric value for one object; ``window_s`` is the rate window, if any."""

    obj: ObjectRef
    value: float
    timestamp_s: float
    window_s: int | None = None


@dataclass(frozen=True)
class CustomMetricInfo:
    """A custom metric as listed in discovery: ``pods/<metric>`` and whether it is namespaced."""

    group_resource: str
    metric: str
    namespaced: bool = True


@dataclass(frozen=True)
class CustomQuery:
    """A custom-metrics request.

    ``name`` is an object name or ``"*"`` (all objects matching ``selector``);
    ``namespace`` is None for root-scoped objects; ``group_resource`` is e.g. ``pods``,
    ``deployments.apps`` or ``namespaces``.
    """

    group_resource: str
    namespace: str | None
    name: str
    metric: str
    selector: Selector
    metric_selector: Selector


class MetricsProvider(Protocol):
    """The one plugin interface every source implements (memory, prometheus, scrape)."""

    def external_metrics(self) -> Sequence[str]:
        """Names served under ``external.metrics.k8s.io`` (cheap, no I/O)."""
        ...

    def custom_metrics(self) -> Sequence[CustomMetricInfo]:
        """Metrics served under ``custom.metrics.k8s.io`` (cheap, no I/O)."""
        ...

    async def external(self, namespace: str, metric: str, selector: Selector) -> Sequence[Sample]:
        """Current values of an external metric; may be empty. Raises ``ProviderError``."""
        ...

    async def custom(self, query: CustomQuery) -> Sequence[ObjectSample]:
        """Current values of a custom metric, one per object. Raises ``ProviderError``."""
        ...
