"""The controller's forecasts and decisions as Prometheus metrics (names pinned in docs/design.md).

A custom Collector over the latest :class:`Outcome` per PredictiveAutoscaler, computed at
scrape time on an explicit registry: a scrape never waits on a reconcile. Per-target
families carry ``namespace`` and ``target`` (the PredictiveAutoscaler's name).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Final

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from forecaster.controller.state import Outcome

PUBLISHED_QUANTILES: Final = (0.5, 0.8, 0.9, 0.95, 0.99)
"""Forecast quantiles always published (the adapter selects one with ``quantile="0.9"``);
the planning quantile is published too."""


class ControllerMetrics(Collector):
    """Snapshot of the latest outcome per target, plus controller-wide figures."""

    def __init__(self) -> None:
        self.outcomes: dict[tuple[str, str], Outcome] = {}
        self.leader = False
        self.cycle_seconds = 0.0
        self.cycles = 0
        self.errors = 0

    def record(self, outcome: Outcome) -> None:
        self.outcomes[(outcome.namespace, outcome.name)] = outcome

    def forget(self, namespace: str, name: str) -> None:
        self.outcomes.pop((namespace, name), None)

    def register(self, registry: CollectorRegistry) -> ControllerMetrics:
        registry.register(self)
        return self

    def collect(self) -> Iterator[Metric]:
        labels = ["namespace", "target"]
        forecast = GaugeMetricFamily(
            "prescale_forecast_requests_per_second",
            "Forecast peak demand over the planning window, by quantile",
            labels=[*labels, "quantile", "horizon_seconds"],
        )
        gauges = {
            "desired": GaugeMetricFamily(
                "prescale_desired_replicas", "Replicas the last decision asked for", labels=labels
            ),
            "capacity": GaugeMetricFamily(
                "prescale_capacity_per_replica", "Requests/s one replica serves at its SLO", labels=labels
            ),
            "lead": GaugeMetricFamily(
                "prescale_lead_time_seconds", "Pod lead time planned for", labels=labels
            ),
            "error": GaugeMetricFamily(
                "prescale_forecast_error_ratio", "Recent window-peak forecast error ratio", labels=labels
            ),
            "coverage": GaugeMetricFamily(
                "prescale_interval_coverage_ratio",
                "Recent share of windows at or below the planned band",
                labels=labels,
            ),
            "demand": GaugeMetricFamily(
                "prescale_observed_demand_requests_per_second", "Latest observed demand", labels=labels
            ),
            "headroom": GaugeMetricFamily(
                "prescale_node_headroom_gpus", "Extra GPUs asked of the node pool", labels=labels
            ),
        }
        decisions = CounterMetricFamily(
            "prescale_decisions", "Decisions made, by reason", labels=[*labels, "reason"]
        )
        for (ns, name), o in sorted(self.outcomes.items()):
            lv = [ns, name]
            self._per_target(o, lv, forecast, gauges)
            for reason, n in sorted(o.decisions.items()):
                decisions.add_metric([*lv, reason], n)
        yield forecast
        yield from gauges.values()
        yield decisions
        yield GaugeMetricFamily(
            "prescale_controller_leader",
            "1 while this replica holds the leader Lease",
            value=1.0 if self.leader else 0.0,
        )
        yield GaugeMetricFamily(
            "prescale_controller_cycle_seconds",
            "Duration of the last reconcile cycle",
            value=self.cycle_seconds,
        )
        yield CounterMetricFamily(
            "prescale_controller_reconcile_errors", "Reconciles that raised", value=self.errors
        )

    @staticmethod
    def _per_target(
        o: Outcome, lv: list[str], forecast: GaugeMetricFamily, gauges: dict[str, GaugeMetricFamily]
    ) -> None:
        if o.window is not None and o.horizon_s is not None:
            levels = sorted(
                {*PUBLISHED_QUANTILES, *([o.decision.quantile] if o.decision and o.decision.quantile else [])}
            )
            for q in levels:
                forecast.add_metric([*lv, f"{q:g}", f"{o.horizon_s:.0f}"], o.window.at(q))
        if o.decision is not None:
            gauges["desired"].add_metric(lv, o.decision.replicas)
        values = {
            "capacity": o.capacity_rps,
            "lead": o.lead_time_s,
            "demand": o.demand_rps,
            "headroom": None if o.headroom is None else float(o.headroom.gpus),
            "error": o.quality[0] if o.quality else None,
            "coverage": o.quality[1] if o.quality else None,
        }
        for key, value in values.items():
            if value is not None:
                gauges[key].add_metric(lv, value)
