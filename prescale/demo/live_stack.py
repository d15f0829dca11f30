"""The parts the cluster demo starts, each stopped by the ExitStack that started it."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from prescale.stack import aggregation, procs
from prescale.stack import prometheus as prom
from prescale.stack.adapter import EXTERNAL, run_adapter
from prescale.stack.cluster import Cluster

NAMESPACE = "prescale-demo"
HPA_DEPLOYMENT = "model-hpa"
PRESCALE_DEPLOYMENT = "model-prescale"
DEMAND_METRIC = "prescale_demo_demand_requests_per_second"
EXTERNAL_METRIC = "prescale_demo_requests_per_second"
CRD_FILE = Path(__file__).resolve().parents[2] / "deploy" / "crds" / "predictiveautoscalers.yaml"


cli = procs.prescale_command


@dataclass(frozen=True)
class Ports:
    traffic: int
    exporter: int
    controller: int
    adapter: int


def prometheus_config(ports: Ports) -> dict[str, object]:
    def job(name: str, port: int) -> dict[str, object]:
        return {"job_name": name, "static_configs": [{"targets": [f"127.0.0.1:{port}"]}]}
    return {"global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "scrape_configs": [job("demand", ports.traffic), job("gpu-exporter", ports.exporter),
                               job("prescale-forecaster", ports.controller)]}


@contextlib.contextmanager
def process(name: str, argv: list[str], log: Path) -> Iterator[procs.Process]:
    p = procs.start(name, argv, log)
    try:
        yield p
    finally:
        p.stop()


@contextlib.contextmanager
def adapter(cluster: Cluster, work: Path, address: str, prometheus_url: str) -> Iterator[procs.Process]:
    """``prescale adapter`` on the private address, registered as the external metrics API."""
    rules = {"rules": [{"name": EXTERNAL_METRIC, "query": f"max({DEMAND_METRIC}{{<<matchers>>}})",
                        "freshness_s": 60}]}
    with run_adapter(cluster, work, address, prometheus_url, rules=rules, groups=(EXTERNAL,),
                     log=work / "logs" / "adapter.log") as running:
        aggregation.wait_available(cluster, running.backends[0].name, 60)
        yield running.process


def backfill_history(storage: Path, demand: list[tuple[float, float]], traffic_port: int) -> None:
    """History of the demand gauge for both deployments; ``demand`` is (unix time, rps).

    The labels are exactly those the live scrape will add (job, instance), so history and live
    samples form one series: a second series would stay "current" for Prometheus' 5-minute
    lookback after its last sample, which is days of trace time here.
    """
    scrape = {"job": "demand", "instance": f"127.0.0.1:{traffic_port}"}
    series = [prom.Series(DEMAND_METRIC, {"namespace": NAMESPACE, "deployment": d, **scrape}, demand)
              for d in (HPA_DEPLOYMENT, PRESCALE_DEPLOYMENT)]
    prom.backfill(storage, series)


def deployment(name: str, replicas: int, ready_delay_s: float) -> dict[str, object]:
    return {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "namespace": NAMESPACE, "labels": {"app.kubernetes.io/name": name}},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "100%", "maxUnavailable": 0}},
            "template": {
                "metadata": {"labels": {"app": name},
                             "annotations": {"pod-ready.stage.kwok.x-k8s.io/delay": f"{ready_delay_s:.3f}s"}},
                "spec": {
                    "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
                    "containers": [{"name": "server", "image": "prescale/serve:demo",
                                    "resources": {"limits": {"nvidia.com/gpu": "1"}}}],
                },
            },
        },
    }


def quantity(value: float) -> str:
    """A positive number as a milli-unit Quantity string."""
    return f"{max(1, math.ceil(value * 1000))}m"


def hpa(capacity_rps: float, target_utilization: float, max_replicas: int) -> dict[str, object]:
    return {
        "apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": HPA_DEPLOYMENT, "namespace": NAMESPACE},
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": HPA_DEPLOYMENT},
            "minReplicas": 1, "maxReplicas": max_replicas,
            "metrics": [{"type": "External", "external": {
                "metric": {"name": EXTERNAL_METRIC,
                           "selector": {"matchLabels": {"deployment": HPA_DEPLOYMENT}}},
                "target": {"type": "AverageValue",
                           "averageValue": quantity(capacity_rps * target_utilization)}}}],
        },
    }


@dataclass(frozen=True)
class PredictiveSettings:
    """The PredictiveAutoscaler of the demo, in wall-clock units (time is compressed)."""

    capacity_rps: float
    max_replicas: int
    pod_lead_s: float
    history_s: float
    season_s: float
    step_s: float
    scale_down_delay_s: float
    fallback_hold_s: float
    miss_cost_ratio: float


def predictive_autoscaler(s: PredictiveSettings) -> dict[str, object]:
    return {
        "apiVersion": "autoscaling.prescale.dev/v1alpha1", "kind": "PredictiveAutoscaler",
        "metadata": {"name": PRESCALE_DEPLOYMENT, "namespace": NAMESPACE},
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": PRESCALE_DEPLOYMENT},
            "minReplicas": 1, "maxReplicas": s.max_replicas,
            "demand": {"query": f'max({DEMAND_METRIC}{{namespace="{NAMESPACE}",'
                                f'deployment="{PRESCALE_DEPLOYMENT}"}})',
                       "stepSeconds": s.step_s, "historySeconds": s.history_s},
            "capacity": {"requestsPerSecondPerReplica": s.capacity_rps},
            "leadTime": {"podSeconds": s.pod_lead_s, "measure": True},
            "forecast": {"seasonalitiesSeconds": [s.season_s], "missCostRatio": s.miss_cost_ratio},
            "behavior": {"scaleDownDelaySeconds": s.scale_down_delay_s,
                         "fallbackHoldSeconds": s.fallback_hold_s},
            "actuation": {"mode": "direct"},
        },
    }
