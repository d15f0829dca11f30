"""The demo's demand: a trace replayed in compressed time, exposed as serving metrics.

Every deployment in the demo receives the same demand. The exporter-facing families follow
the ``inference_*`` contract: ``inference_requests_total{namespace,deployment,model,code}``
advances at the trace's rate (requests per *trace* second, per wall second), so dashboards,
the adapter and the controller see the trace's own numbers while its shape plays faster.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from aiohttp import web
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from prescale.demo.clock import CompressedClock

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True)
class Target:
    """A deployment that receives the demand."""

    namespace: str
    deployment: str


class DemandSource:
    """Demand at trace time ``t``: the trace's step value (held constant over each step)."""

    def __init__(self, demand_rps: FloatArray, step_s: float) -> None:
        if demand_rps.ndim != 1 or demand_rps.size == 0:
            raise ValueError("demand must be a non-empty 1-D array")
        if not np.all(np.isfinite(demand_rps)) or np.any(demand_rps < 0):
            raise ValueError("demand must be finite and non-negative")
        self.demand_rps = demand_rps
        self.step_s = step_s

    @property
    def span_s(self) -> float:
        return float(self.demand_rps.size * self.step_s)

    def at(self, sim_s: float) -> float:
        i = int(sim_s // self.step_s)
        i = min(max(i, 0), self.demand_rps.size - 1)
        return float(self.demand_rps[i])


class TrafficCollector(Collector):
    """Integrates demand over wall time at each scrape (and each ``advance``)."""

    def __init__(self, source: DemandSource, clock: CompressedClock, targets: Iterable[Target]) -> None:
        self.source = source
        self.clock = clock
        self.targets = tuple(targets)
        self.total = 0.0
        self._last_wall = clock.elapsed_wall_s()

    def advance(self) -> float:
        """Add the requests since the last call; returns the current demand (rps)."""
        now_wall = self.clock.elapsed_wall_s()
        rps = self.source.at(self.clock.sim_s())
        self.total += rps * max(0.0, now_wall - self._last_wall)
        self._last_wall = now_wall
        return rps

    def collect(self) -> Iterable[Metric]:
        rps = self.advance()
        requests = CounterMetricFamily("inference_requests", "Requests received (demo demand).",
                                       labels=["namespace", "deployment", "model", "code"])
        demand = GaugeMetricFamily("prescale_demo_demand_requests_per_second",
                                   "Demand now, requests per trace second.",
                                   labels=["namespace", "deployment"])
        for t in self.targets:
            requests.add_metric([t.namespace, t.deployment, "demo", "200"], self.total)
            demand.add_metric([t.namespace, t.deployment], rps)
        sim = GaugeMetricFamily("prescale_demo_trace_seconds", "Trace time of the replay.")
        sim.add_metric([], self.clock.sim_s())
        return [requests, demand, sim]


METRICS_KEY = web.AppKey("registry", CollectorRegistry)


async def _metrics(request: web.Request) -> web.Response:
    body = generate_latest(request.app[METRICS_KEY])
    return web.Response(body=body, headers={"Content-Type": "text/plain; version=0.0.4; charset=utf-8"})


def make_app(collector: TrafficCollector) -> web.Application:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    app = web.Application()
    app[METRICS_KEY] = registry
    app.router.add_get("/metrics", _metrics)
    return app
