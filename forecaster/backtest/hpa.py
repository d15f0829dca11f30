"""The upstream Kubernetes HPA (kube-controller-manager), exactly, on a per-pod QPS target.

``replica_calculator.go`` (Pods metric, AverageValue target) for the proposal and
``horizontal.go`` behavior normalization with the v2 defaults: tolerance 0.1; scale-up
stabilization 0 s with policies {4 pods, 100 %} per 15 s, selectPolicy Max; scale-down
stabilization 300 s with {100 %} per 15 s. Starting pods are Pending, hence unready. The
metric is seen ``metric_delay_s`` late (60 s: scrape + rate window + adapter).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from forecaster.backtest.policies import observed, replicas_for
from forecaster.backtest.replay import Cluster
from forecaster.models.base import FloatArray


@dataclass(frozen=True)
class HPAConfig:
    """HPA knobs; defaults are upstream's."""

    target_utilization: float = 0.7
    """Per-pod QPS target as a share of capacity per replica."""
    tolerance: float = 0.1
    min_replicas: int = 1
    max_replicas: int = 1000
    downscale_stabilization_s: float = 300.0
    upscale_stabilization_s: float = 0.0
    scale_up_pods: int = 4
    scale_up_percent: float = 100.0
    scale_up_period_s: float = 15.0
    scale_down_percent: float = 100.0
    scale_down_period_s: float = 15.0
    metric_delay_s: float = 60.0


def pods_metric_proposal(
    total: float, ready: int, unready: int, cur: int, *, target: float, tol: float
) -> int | None:
    """``calcPlainMetricReplicas``; None when no pod has a metric (the cycle aborts)."""
    if ready == 0:
        return None
    ratio = total / ready / target
    if not (unready > 0 and ratio > 1.0):
        if abs(1.0 - ratio) <= tol:
            return cur
        return math.ceil(ratio * ready)
    new_ratio = total / (ready + unready) / target  # unready pods count as 0 usage
    crosses = (ratio < 1.0 < new_ratio) or (ratio > 1.0 > new_ratio)
    if abs(1.0 - new_ratio) <= tol or crosses:
        return cur
    n = math.ceil(new_ratio * (ready + unready))
    if (n < cur and new_ratio > 1.0) or (n > cur and new_ratio < 1.0):
        return cur
    return n


class HPA:
    """One HPA object, replayed every control step (its 15 s sync period)."""

    name = "hpa"

    def __init__(self, lam: FloatArray, capacity: float, step_s: float, config: HPAConfig) -> None:
        self.lam = lam
        self.capacity = capacity
        self.step_s = step_s
        self.config = config
        self.delay_steps = math.ceil(config.metric_delay_s / step_s - 1e-9)
        self.recommendations: list[tuple[float, int]] = []
        self.events: list[tuple[float, int]] = []  # (t, +added / -removed)

    def initial(self) -> int:
        return replicas_for(float(self.lam[0]), self.capacity * self.config.target_utilization)

    def _stabilize(self, t: float, desired: int, cur: int) -> int:
        c = self.config
        up_rec = down_rec = desired
        for rt, r in self.recommendations:
            if rt > t - c.upscale_stabilization_s:
                up_rec = min(up_rec, r)
            if rt > t - c.downscale_stabilization_s:
                down_rec = max(down_rec, r)
        keep = t - max(c.upscale_stabilization_s, c.downscale_stabilization_s)
        self.recommendations = [r for r in self.recommendations if r[0] > keep]
        self.recommendations.append((t, desired))
        rec = cur
        rec = max(rec, up_rec)
        return min(rec, down_rec)

    def _changes(self, t: float, period_s: float) -> tuple[int, int]:
        added = sum(d for et, d in self.events if et > t - period_s and d > 0)
        removed = -sum(d for et, d in self.events if et > t - period_s and d < 0)
        return added, removed

    def _rate_limit(self, t: float, rec: int, cur: int) -> int:
        c = self.config
        if rec > cur:
            added, removed = self._changes(t, c.scale_up_period_s)
            start = cur - added + removed
            limit = max(start + c.scale_up_pods, math.ceil(start * (1 + c.scale_up_percent / 100)))
            return min(rec, c.max_replicas, max(limit, cur))
        if rec < cur:
            added, removed = self._changes(t, c.scale_down_period_s)
            start = cur - added + removed
            limit = min(int(start * (1 - c.scale_down_percent / 100)), cur)
            return max(rec, c.min_replicas, limit)
        return rec

    def decide(self, i: int, cluster: Cluster) -> int:
        c = self.config
        t = i * self.step_s
        cur = cluster.requested
        if cur > c.max_replicas:
            desired = c.max_replicas
        elif cur < c.min_replicas:
            desired = c.min_replicas
        else:
            total = observed(self.lam, i, self.delay_steps)
            target = self.capacity * c.target_utilization
            proposal = pods_metric_proposal(
                total, cluster.ready, cur - cluster.ready, cur, target=target, tol=c.tolerance
            )
            if proposal is None:
                return cur
            desired = self._rate_limit(t, self._stabilize(t, proposal, cur), cur)
        if desired != cur:
            self.events = [e for e in self.events if e[0] > t - 60.0]
            self.events.append((t, desired - cur))
        return desired
