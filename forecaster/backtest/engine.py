"""A whole backtest: parameters, demand per step, every policy, scores over one window."""

from __future__ import annotations

import argparse
import math
from dataclasses import asdict, dataclass, replace
from typing import Any

from forecaster.backtest.hpa import HPA, HPAConfig
from forecaster.backtest.kpa import KPA, KPAConfig
from forecaster.backtest.policies import Oracle, ReplayPolicy
from forecaster.backtest.predictive import Predictive, PredictiveConfig
from forecaster.backtest.replay import ReplayConfig
from forecaster.backtest.run import (
    PolicyRun,
    PolicyScore,
    Progress,
    run_policy,
    score,
    step_coverage,
    window_coverage,
)
from forecaster.backtest.trace import Trace, demand_per_step
from forecaster.decider import ScalingPolicy
from forecaster.models.base import FloatArray
from forecaster.models.seasonality import InsufficientHistoryError, requested_seasonalities

POLICIES = ("oracle", "hpa", "kpa", "predictive")
MIN_WARMUP_S = 600.0
MIN_STEPS = 2
"""A replay needs at least this many control steps over the trace (one decided, one scored)."""
WARMUP_SHARE = 0.25


class BacktestError(Exception):
    """Options that cannot be replayed; one line for the user."""


@dataclass(frozen=True)
class BacktestParams:
    """Everything a run depends on (echoed into the JSON)."""

    step_s: float = 15.0
    peak_replicas: int | None = 40
    capacity_per_replica: float | None = None
    pod_lead_s: float = 180.0
    node_lead_s: float = 0.0
    gpus_per_node: int | None = None
    gpus_per_replica: int = 1
    hpa_target_utilization: float = 0.7
    kpa_target_utilization: float = 0.7
    miss_cost_ratio: float | None = None
    scale_down_delay_s: float | None = None
    seasonalities: tuple[str, ...] = ()
    score_from_s: float | None = None
    policies: tuple[str, ...] = POLICIES

    def __post_init__(self) -> None:
        positive = {
            "step_s": self.step_s,
            "gpus_per_replica": self.gpus_per_replica,
            "hpa_target_utilization": self.hpa_target_utilization,
            "kpa_target_utilization": self.kpa_target_utilization,
        }
        for key, v in positive.items():
            if not (math.isfinite(v) and v > 0):
                raise BacktestError(f"--{key.replace('_', '-')}={v:g} must be > 0")
        for key, v in {"pod_lead_s": self.pod_lead_s, "node_lead_s": self.node_lead_s}.items():
            if not (math.isfinite(v) and v >= 0):
                raise BacktestError(f"--{key.replace('_', '-')}={v:g} must be >= 0")
        self._check_optional()
        bad = [p for p in self.policies if p not in POLICIES]
        if bad or not self.policies:
            raise BacktestError(
                f"--policies: unknown {bad[0] if bad else 'empty'!r}; allowed: {','.join(POLICIES)}"
            )

    def _check_optional(self) -> None:
        for key, v in {
            "hpa_target_utilization": self.hpa_target_utilization,
            "kpa_target_utilization": self.kpa_target_utilization,
        }.items():
            if v > 1:
                raise BacktestError(f"--{key.replace('_', '-')}={v:g} must be in (0, 1]")
        if self.peak_replicas is not None and self.peak_replicas < 1:
            raise BacktestError(f"--peak-replicas={self.peak_replicas} must be >= 1")
        if self.capacity_per_replica is not None and not self.capacity_per_replica > 0:
            raise BacktestError(f"--capacity-per-replica={self.capacity_per_replica:g} must be > 0")
        if self.gpus_per_node is not None and self.gpus_per_node < self.gpus_per_replica:
            raise BacktestError(f"--gpus-per-node={self.gpus_per_node} must be >= --gpus-per-replica")
        if self.node_lead_s > 0 and self.gpus_per_node is None:
            raise BacktestError("--node-lead-s needs --gpus-per-node (the node size)")
        if self.scale_down_delay_s is not None and not self.scale_down_delay_s >= 0:
            raise BacktestError(f"--scale-down-delay-s={self.scale_down_delay_s:g} must be >= 0")
        if self.miss_cost_ratio is not None and not self.miss_cost_ratio > 0:
            raise BacktestError(f"--miss-cost-ratio={self.miss_cost_ratio:g} must be > 0")

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> BacktestParams:
        peak = (
            args.peak_replicas
            if args.capacity_per_replica is None and args.peak_replicas is not None
            else None
        )
        if args.capacity_per_replica is None and peak is None:
            peak = 40
        return cls(
            step_s=args.step_s,
            peak_replicas=peak,
            capacity_per_replica=args.capacity_per_replica,
            pod_lead_s=args.pod_lead_s,
            node_lead_s=args.node_lead_s,
            gpus_per_node=args.gpus_per_node,
            gpus_per_replica=args.gpus_per_replica,
            hpa_target_utilization=args.hpa_target_utilization,
            kpa_target_utilization=args.kpa_target_utilization,
            miss_cost_ratio=args.miss_cost_ratio,
            scale_down_delay_s=args.scale_down_delay_s,
            score_from_s=args.score_from_s,
            policies=tuple(p.strip() for p in args.policies.split(",") if p.strip()),
            seasonalities=tuple(s.strip() for s in (args.seasonality or "").split(",") if s.strip()),
        )


@dataclass(frozen=True)
class BacktestResult:
    """Runs, scores and what the report needs."""

    runs: list[PolicyRun]
    scores: dict[str, PolicyScore]
    lam: FloatArray
    capacity: float
    band: FloatArray | None
    scored_from_s: float
    parameters: dict[str, Any]
    extra: dict[str, Any]


def default_score_from_s(span_s: float, step_s: float) -> float:
    """After the predictive warm-up: a quarter of the trace, at least 10 minutes."""
    return math.ceil(max(MIN_WARMUP_S, WARMUP_SHARE * span_s) / step_s) * step_s


def _predictive_config(trace: Trace, p: BacktestParams) -> PredictiveConfig:
    """Defaults for the trace; requested seasons must fit twice into the trace (else one line)."""
    config = PredictiveConfig.for_trace(trace.span_s, trace.bucket_s, p.step_s)
    if not p.seasonalities:
        return config
    n_points = int(trace.span_s // config.model_step_s)
    try:
        found = requested_seasonalities(p.seasonalities, n_points, config.model_step_s)
    except (ValueError, InsufficientHistoryError) as e:
        raise BacktestError(f"--seasonality: {e}") from e
    return replace(config, seasons=tuple(s.period_steps for s in found))


def _policies(lam: FloatArray, p: BacktestParams, capacity: float, trace: Trace) -> list[ReplayPolicy]:
    replay = ReplayConfig(p.step_s, p.pod_lead_s, p.gpus_per_replica, p.node_lead_s, p.gpus_per_node)
    lead_steps = replay.steps(replay.total_lead_s)
    max_replicas = max(1000, 10 * math.ceil(float(lam.max()) / capacity))
    overrides: dict[str, float] = {}
    if p.miss_cost_ratio is not None:
        overrides["miss_cost_ratio"] = p.miss_cost_ratio
    if p.scale_down_delay_s is not None:
        overrides["scale_down_delay_s"] = p.scale_down_delay_s
    decider = ScalingPolicy(
        capacity_per_replica_rps=capacity,
        max_replicas=max_replicas,
        fallback_utilization=p.hpa_target_utilization,
        **overrides,  # type: ignore[arg-type]
    )
    made: dict[str, ReplayPolicy] = {
        "oracle": Oracle(lam, capacity, lead_steps),
        "hpa": HPA(
            lam,
            capacity,
            p.step_s,
            HPAConfig(target_utilization=p.hpa_target_utilization, max_replicas=max_replicas),
        ),
        "kpa": KPA(
            lam,
            capacity,
            p.step_s,
            KPAConfig(target_utilization=p.kpa_target_utilization, max_scale=max_replicas),
        ),
        "predictive": Predictive(
            lam,
            p.step_s,
            replay.total_lead_s,
            decider,
            _predictive_config(trace, p),
        ),
    }
    return [made[name] for name in p.policies]


def _predictive_extra(pol: Predictive, lam: FloatArray, lead_steps: int, from_step: int) -> dict[str, Any]:
    """Coverage of the planned band, decision reasons and the model, over the scored window."""
    cov, steps = step_coverage(pol.record.planned, lam, lead_steps, from_step)
    wcov, windows = window_coverage(pol.record.point, pol.record.planned, lam, lead_steps, from_step)
    reasons = pol.record.reasons[from_step:]
    sel = pol.model.selection if pol.model is not None else None
    return {
        "predictive_coverage": {
            "measured": cov,
            "nominal": pol.policy.planning_quantile,
            "steps": steps,
            "window_peak_measured": wcov,
            "windows": windows,
        },
        "predictive_reasons": {r: reasons.count(r) for r in sorted(set(reasons))},
        "predictive_model": sel.chosen if sel else None,
    }


def run_backtest(trace: Trace, p: BacktestParams, progress: Progress | None = None) -> BacktestResult:
    """Replay every requested policy and score them over the same window."""
    if not float(trace.requests.max()) > 0:
        raise BacktestError(f"{trace.name}: column {trace.column!r} is all zeros; nothing to replay")
    if p.step_s > trace.span_s / MIN_STEPS:
        raise BacktestError(
            f"--step-s={p.step_s:g} is too long for {trace.name} ({trace.span_s:g} s): "
            f"at most {trace.span_s / MIN_STEPS:g} s ({MIN_STEPS} steps)"
        )
    lam = demand_per_step(trace, p.step_s)
    peak = float(lam.max())
    capacity = p.capacity_per_replica or peak / (p.peak_replicas or 40)
    replay = ReplayConfig(p.step_s, p.pod_lead_s, p.gpus_per_replica, p.node_lead_s, p.gpus_per_node)
    scored_from_s = (
        p.score_from_s if p.score_from_s is not None else default_score_from_s(trace.span_s, p.step_s)
    )
    from_step = math.ceil(scored_from_s / p.step_s - 1e-9)
    if not 0 <= from_step < lam.shape[0] - 1:
        raise BacktestError(f"--score-from-s={scored_from_s:g} is outside the trace (0..{trace.span_s:g} s)")
    policies = _policies(lam, p, capacity, trace)
    runs = [run_policy(pol, lam, replay, progress) for pol in policies]
    scores = {r.name: score(r, lam, capacity, p.step_s, from_step) for r in runs}
    params = {
        **asdict(p),
        "capacity_per_replica": capacity,
        "scored_from_s": from_step * p.step_s,
        "trace": trace.name,
        "steps": int(lam.shape[0]),
        "policies": list(p.policies),
    }
    extra: dict[str, Any] = {}
    band = None
    for pol in policies:
        if isinstance(pol, Predictive):
            band = pol.record.planned
            extra = _predictive_extra(pol, lam, replay.steps(replay.total_lead_s), from_step)
    return BacktestResult(runs, scores, lam, capacity, band, from_step * p.step_s, params, extra)
