"""Helpers for the controller's tests on the real control plane: the CRD, a replayed trace
served to Prometheus, a readiness poller, and the controller itself running in the test's
event loop (the HPA baseline's external-metrics API is in ``controller_external_api``)."""

from __future__ import annotations

import asyncio
import contextlib
import csv
import inspect
import math
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from forecaster.controller.clock import SystemClock
from forecaster.controller.events import EventRecorder
from forecaster.controller.loop import Controller
from forecaster.controller.metrics import ControllerMetrics
from forecaster.controller.reconcile import Deps, Reconciler
from forecaster.kube import Kube, Retrying
from forecaster.source import PrometheusSource
from prescale.stack import polling, procs
from prescale.stack import prometheus as prom
from prescale.stack.cluster import Cluster

ROOT = Path(__file__).resolve().parents[2]
CRD = ROOT / "deploy" / "crds" / "predictiveautoscalers.yaml"
TRACE = Path(__file__).parent / "data" / "nasa_jul95_weekdays_18min.csv"


def wait_for(cond: Callable[[], Any], timeout_s: float, what: str) -> Any:
    return polling.wait_for(cond, timeout_s, what)


async def async_wait_for(cond: Callable[[], Any], timeout_s: float, what: str) -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        value = cond()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout_s}s")
        await asyncio.sleep(0.25)


def install_crd(cluster: Cluster) -> None:
    cluster.apply_crds(CRD.read_text())


def gpu_deployment(name: str, namespace: str, replicas: int, ready_delay: str) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {
                    "labels": {"app": name},
                    "annotations": {"pod-ready.stage.kwok.x-k8s.io/delay": ready_delay},
                },
                "spec": {
                    "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
                    "containers": [
                        {
                            "name": "server",
                            "image": "example.invalid/server:1",
                            "resources": {"limits": {"nvidia.com/gpu": "1"}},
                        }
                    ],
                },
            },
        },
    }


def pa_manifest(
    namespace: str,
    name: str,
    target: str,
    *,
    pod_delay_s: float,
    capacity_rps: float,
    step_s: float,
    **extra: Any,
) -> dict[str, Any]:
    """A PredictiveAutoscaler on the replayed trace (seasonality: one compressed day, 160 s)."""
    spec: dict[str, Any] = {
        "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": target},
        "minReplicas": 1,
        "maxReplicas": 7,
        "demand": {"query": "sum(trace_requests_per_second)", "stepSeconds": step_s, "historySeconds": 800},
        "capacity": {"requestsPerSecondPerReplica": capacity_rps},
        "leadTime": {"podSeconds": pod_delay_s + 2, "measure": True},
        "forecast": {
            "seasonalitiesSeconds": [160],
            "models": ["seasonal_naive"],
            "refitIntervalSeconds": 600,
        },
        "behavior": {"scaleDownDelaySeconds": 60},
        "actuation": {"mode": "direct"},
    }
    spec.update(extra)
    return {
        "apiVersion": "autoscaling.prescale.dev/v1alpha1",
        "kind": "PredictiveAutoscaler",
        "metadata": {"name": name, "namespace": namespace},
        "spec": spec,
    }


def hpa_manifest(
    namespace: str, name: str, max_replicas: int, target_rps: float, min_replicas: int = 1
) -> dict[str, Any]:
    """A real HPA on the external metric ``trace_requests_per_second`` (AverageValue per pod)."""
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
            "minReplicas": min_replicas,
            "maxReplicas": max_replicas,
            "metrics": [
                {
                    "type": "External",
                    "external": {
                        "metric": {"name": "trace_requests_per_second"},
                        "target": {"type": "AverageValue", "averageValue": str(int(target_rps))},
                    },
                }
            ],
        },
    }


@dataclass
class CompressedTrace:
    """A real trace replayed fast: bucket ``b`` of the trace happens at ``t0 + (b - live_bin) * bin_s``."""

    t0: float
    bin_s: float
    live_bin: int
    scale: float
    counts: np.ndarray = field(default_factory=lambda: load_trace(TRACE))

    def rps(self, t: float) -> float:
        """Demand at wall time ``t`` (linear between buckets)."""
        b = (t - self.t0) / self.bin_s + self.live_bin
        b = min(max(b, 0.0), self.counts.shape[0] - 1.0)
        lo = int(b)
        hi = min(lo + 1, self.counts.shape[0] - 1)
        w = b - lo
        return float(((1 - w) * self.counts[lo] + w * self.counts[hi]) * self.scale)

    def history(self, step_s: float) -> list[tuple[float, float]]:
        """Samples from the trace's first bucket up to ``t0`` (for backfill)."""
        start = self.t0 - self.live_bin * self.bin_s
        n = int((self.t0 - start) / step_s)
        return [(start + i * step_s, self.rps(start + i * step_s)) for i in range(n)]


def load_trace(path: Path) -> np.ndarray:
    with path.open() as f:
        rows = [r for r in csv.reader(line for line in f if not line.startswith("#"))][1:]
    return np.array([float(r[1]) for r in rows])


class _TraceCollector(Collector):
    def __init__(self, value: Callable[[], float]) -> None:
        self.value = value

    def collect(self) -> Iterator[Metric]:
        yield GaugeMetricFamily("trace_requests_per_second", "replayed demand", value=self.value())


@contextlib.contextmanager
def trace_exporter(value: Callable[[], float]) -> Iterator[int]:
    """Serve ``trace_requests_per_second`` on a free loopback port."""
    registry = CollectorRegistry()
    registry.register(_TraceCollector(value))
    port = procs.free_port()
    server, thread = start_http_server(port, addr="127.0.0.1", registry=registry)
    try:
        yield port
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def trace_prometheus(start_prometheus: Any, port: int, history: list[tuple[float, float]]) -> Any:
    """A real Prometheus scraping the trace exporter on ``port`` every second, with ``history``
    backfilled under the scrape's own labels so history and live samples form one series."""
    labels = {"job": "trace", "instance": f"127.0.0.1:{port}"}
    return start_prometheus(
        {
            "global": {"scrape_interval": "1s"},
            "scrape_configs": [{"job_name": "trace", "static_configs": [{"targets": [f"127.0.0.1:{port}"]}]}],
        },
        backfill=[prom.Series("trace_requests_per_second", labels, history)],
    )


def sine_history(end_s: float, rps: float) -> list[tuple[float, float]]:
    """800 one-second samples ending at ``end_s``: ``rps`` plus a 160 s sine of amplitude 2."""
    return [(end_s - 800 + i, rps + 2.0 * math.sin(2 * math.pi * i / 160.0)) for i in range(800)]


@dataclass
class ReadyHistory:
    """``(wall time, ready replicas, spec replicas)`` samples per Deployment."""

    samples: dict[str, list[tuple[float, int, int]]] = field(default_factory=dict)

    def first_ready(self, name: str, k: int) -> float | None:
        return next((t for t, r, _ in self.samples.get(name, []) if r >= k), None)


async def poll_ready(
    kube: Kube,
    namespace: str,
    names: list[str],
    history: ReadyHistory,
    stop: asyncio.Event,
    *,
    period_s: float = 0.25,
) -> None:
    while not stop.is_set():
        for name in names:
            obj = await kube.get(f"/apis/apps/v1/namespaces/{namespace}/deployments/{name}")
            ready = int((obj.get("status") or {}).get("readyReplicas", 0) or 0)
            history.samples.setdefault(name, []).append((time.time(), ready, int(obj["spec"]["replicas"])))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), period_s)


@contextlib.asynccontextmanager
async def running_controller(
    kubeconfig: Path, prometheus_url: str, *, interval_s: float, namespace: str | None = None
) -> AsyncIterator[Controller]:
    """The controller (no leader election) running in this event loop until the block ends."""
    clock = SystemClock()
    async with Kube(str(kubeconfig)) as raw, aiohttp.ClientSession() as session:
        kube = Retrying(raw)
        deps = Deps(
            kube,
            PrometheusSource(prometheus_url, session),
            clock,
            EventRecorder(kube, clock),
            interval_s=interval_s,
        )
        controller = Controller(Reconciler(deps), ControllerMetrics(), namespace=namespace)
        stop = asyncio.Event()
        task = asyncio.create_task(controller.run(stop))
        try:
            yield controller
        finally:
            stop.set()
            await task
