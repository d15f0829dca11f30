"""``scrape``: the embedded source for clusters without Prometheus.

Scrapes exporters/pods directly (Prometheus text format) every ``interval_s`` into a bounded
in-memory window per series and computes values itself: the latest sample (gauges) or the
per-second increase over ``rate_window_s`` with counter resets handled (like PromQL
``rate``, without extrapolation). Memory is bounded by ``max_series`` and ``window_s``.
``ScrapeStore`` is pure (time passed in); ``ScrapeProvider`` adds the HTTP loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from adapter.api.selectors import Op, Requirement, Selector
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
from adapter.rules import Rule

log = logging.getLogger(__name__)
Labels = tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class ScrapeTarget:
    """One endpoint; ``labels`` (e.g. namespace, pod) are added to every series it exposes."""

    url: str
    labels: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ScrapeConfig:
    """Scrape loop and memory bounds."""

    targets: Sequence[ScrapeTarget]
    """Endpoints to scrape."""
    interval_s: float = 15.0
    """Seconds between scrapes of all targets."""
    timeout_s: float = 5.0
    """Per-target deadline."""
    window_s: float = 600.0
    """Samples older than this are dropped; series unseen this long are forgotten."""
    max_series: int = 100_000
    """New series beyond this are not stored (counted in a self-metric, logged once per scrape)."""
    max_samples_per_series: int = 256
    """Hard cap on one series' window, whatever the interval."""


class ScrapeStore:
    """Series windows keyed by (name, labels)."""

    def __init__(self, *, window_s: float, max_series: int, max_samples: int) -> None:
        self._series: dict[tuple[str, Labels], deque[tuple[float, float]]] = {}
        self._by_name: dict[str, set[Labels]] = {}
        self._window_s = window_s
        self._max_series = max_series
        self._max_samples = max_samples
        self.rejected = 0

    def __len__(self) -> int:
        return len(self._series)

    def ingest(self, text: str, target_labels: Mapping[str, str], now: float) -> int:
        """Parse one exposition and append its samples at ``now``; returns samples stored."""
        stored = 0
        for family in text_string_to_metric_families(text):
            for s in family.samples:
                labels = tuple(sorted({**s.labels, **target_labels}.items()))
                stored += self._append(s.name, labels, now, float(s.value))
        return stored

    def _append(self, name: str, labels: Labels, now: float, value: float) -> int:
        key = (name, labels)
        window = self._series.get(key)
        if window is None:
            if len(self._series) >= self._max_series:
                self.rejected += 1
                return 0
            window = self._series[key] = deque(maxlen=self._max_samples)
            self._by_name.setdefault(name, set()).add(labels)
        window.append((now, value))
        return 1

    def expire(self, now: float) -> None:
        """Drop samples older than the window and series left empty."""
        horizon = now - self._window_s
        for key in list(self._series):
            window = self._series[key]
            while window and window[0][0] < horizon:
                window.popleft()
            if not window:
                del self._series[key]
                names = self._by_name[key[0]]
                names.discard(key[1])
                if not names:
                    del self._by_name[key[0]]

    def select(
        self, name: str, selector: Selector
    ) -> list[tuple[dict[str, str], deque[tuple[float, float]]]]:
        """Windows of the series ``name`` whose labels match ``selector``."""
        out = []
        for labels in self._by_name.get(name, ()):
            as_dict = dict(labels)
            if selector.matches(as_dict):
                out.append((as_dict, self._series[(name, labels)]))
        return out


def rate(window: Sequence[tuple[float, float]], rate_window_s: float, now: float) -> float | None:
    """Per-second increase over the last ``rate_window_s``; counter resets count from zero."""
    points = [(t, v) for t, v in window if t >= now - rate_window_s]
    if len(points) < 2:
        return None
    increase = 0.0
    for (_, prev), (_, cur) in itertools.pairwise(points):
        increase += cur - prev if cur >= prev else cur
    span = points[-1][0] - points[0][0]
    return increase / span if span > 0 else None


def _aggregate(values: list[float], how: str) -> float:
    if how == "max":
        return max(values)
    if how == "avg":
        return sum(values) / len(values)
    return sum(values)


class ScrapeProvider:
    """Serves rules whose ``source`` is ``scrape``; the rule's ``query`` is a series name."""

    def __init__(
        self,
        config: ScrapeConfig,
        rules: Sequence[Rule],
        *,
        metrics: AdapterMetrics | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._config = config
        self._external = {r.name: r for r in rules if r.api == "external" and r.source == "scrape"}
        self._custom = {(r.resource, r.name): r for r in rules if r.api == "custom" and r.source == "scrape"}
        self.store = ScrapeStore(
            window_s=config.window_s,
            max_series=config.max_series,
            max_samples=config.max_samples_per_series,
        )
        self._metrics = metrics
        self._clock = clock
        self._session: aiohttp.ClientSession | None = None
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> ScrapeProvider:
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self._config.timeout_s))
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop_loop()
        if self._session is not None:
            await self._session.close()
            self._session = None

    def start_loop(self) -> None:
        """Scrape every ``interval_s`` in the background until ``stop_loop``."""
        self._task = asyncio.create_task(self._loop())

    async def stop_loop(self) -> None:
        """Stop the background loop and wait for it."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _loop(self) -> None:
        while True:
            await self.scrape_once()
            await asyncio.sleep(self._config.interval_s)

    async def scrape_once(self) -> None:
        """Scrape every target once (concurrently), then expire old samples."""
        await asyncio.gather(*(self._scrape(t) for t in self._config.targets))
        self.store.expire(self._clock())
        if self._metrics is not None:
            self._metrics.scrape_series.set(len(self.store))

    async def _scrape(self, target: ScrapeTarget) -> None:
        if self._session is None:
            raise RuntimeError("ScrapeProvider used outside 'async with'")
        started = time.perf_counter()
        try:
            async with self._session.get(target.url) as resp:
                text = await resp.text()
                if resp.status != 200:
                    raise ValueError(f"HTTP {resp.status}")
            self.store.ingest(text, target.labels, self._clock())
        except (aiohttp.ClientError, TimeoutError, ValueError) as e:
            if self._metrics is not None:
                self._metrics.upstream_errors.labels("scrape", type(e).__name__).inc()
            log.warning("scrape failed", extra={"fields": {"target": target.url, "error": str(e)[:200]}})
        finally:
            if self._metrics is not None:
                self._metrics.upstream_latency.labels("scrape").observe(time.perf_counter() - started)

    def external_metrics(self) -> Sequence[str]:
        return sorted(self._external)

    def custom_metrics(self) -> Sequence[CustomMetricInfo]:
        return [CustomMetricInfo(gr, m, gr != "namespaces") for gr, m in sorted(self._custom)]

    def _values(self, rule: Rule, selector: Selector) -> list[tuple[dict[str, str], float, float]]:
        """(labels, value, timestamp) per matching series, freshness enforced."""
        now = self._clock()
        out = []
        newest = None
        for labels, window in self.store.select(rule.query, selector):
            if not window:
                continue
            ts = window[-1][0]
            newest = ts if newest is None else max(newest, ts)
            value = rate(window, rule.rate_window_s, now) if rule.rate_window_s else window[-1][1]
            if value is not None:
                out.append((labels, value, ts))
        if newest is not None and now - newest > rule.freshness_s:
            raise Unavailable(f"metric {rule.name} is stale: newest sample is {now - newest:.0f}s old")
        return out

    @staticmethod
    def _scoped(rule: Rule, namespace: str | None, selector: Selector) -> Selector:
        if not rule.namespaced or namespace is None:
            return selector
        extra = Requirement("namespace", Op.EQUALS, (namespace,))
        return Selector(tuple(sorted((*selector.requirements, extra), key=lambda r: (r.key, r.op.value))))

    async def external(self, namespace: str, metric: str, selector: Selector) -> Sequence[Sample]:
        rule = self._external.get(metric)
        if rule is None:
            raise MetricNotFound(f"the server could not find the external metric {metric}")
        rows = self._values(rule, self._scoped(rule, namespace, selector))
        if not rows:
            return [Sample(0.0, self._clock())] if rule.on_empty == "zero" else []
        if rule.aggregate == "none":
            return [Sample(v, ts, labels) for labels, v, ts in rows]
        return [Sample(_aggregate([v for _, v, _ in rows], rule.aggregate), max(ts for _, _, ts in rows))]

    async def custom(self, query: CustomQuery) -> Sequence[ObjectSample]:
        rule = self._custom.get((query.group_resource, query.metric))
        if rule is None:
            raise MetricNotFound(
                f"the server could not find the metric {query.metric} for {query.group_resource}"
            )
        grouped: dict[str, list[tuple[float, float]]] = {}
        # The pod label selector is matched against series labels: give targets the pod's labels.
        both = Selector(
            tuple(
                sorted(
                    {*query.selector.requirements, *query.metric_selector.requirements},
                    key=lambda r: (r.key, r.op.value, r.values),
                )
            )
        )
        for labels, v, ts in self._values(rule, self._scoped(rule, query.namespace, both)):
            name = labels.get(rule.object_label)
            if name and query.name in ("*", name):
                grouped.setdefault(name, []).append((v, ts))
        kind = "Pod" if query.group_resource == "pods" else query.group_resource.split(".")[0]
        window = int(rule.rate_window_s) or None
        return [
            ObjectSample(
                ObjectRef(kind, name, query.namespace),
                _aggregate([v for v, _ in vals], "sum" if rule.aggregate == "none" else rule.aggregate),
                max(ts for _, ts in vals),
                window,
            )
            for name, vals in sorted(grouped.items())
        ]
