"""The scaling decider: pure, time passed in, no I/O, no logging.

``decide(forecast, quality, observation, policy, state, now) -> (Decision, DeciderState)``.
The caller (the backtest here, the controller later) logs the returned ``Decision``,
counts it by ``reason`` and applies it only when ``valid``.

How replicas are chosen, in order:

1. **Plan** on the forecast's peak demand over ``[now, now + lead time]`` at the quantile
   ``q* = c_miss / (c_miss + c_gpu)`` (the newsvendor critical ratio: the cost of leaving one
   replica's worth of demand unserved against the cost of one more replica). No margin.
2. **Gate** the forecast off when its recent error ratio or band coverage has degraded (or
   there is none yet); then plan reactively at ``fallback_utilization``.
3. **Reactive floor**: never fewer replicas than the observed demand needs at
   ``reactive_utilization``, so a forecast miss cannot leave us below a reactive autoscaler.
4. **Scale-down delay**: the maximum recommendation over the last ``scale_down_delay_s``.
5. **Rate limits** per decision, then ``min_replicas``/``max_replicas``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

REASONS = (
    "forecast",
    "reactive_floor",
    "gated_error",
    "gated_coverage",
    "no_forecast",
    "invalid_observation",
)
"""Every ``Decision.reason``; low cardinality, usable as a metric label."""


@dataclass(frozen=True)
class WindowForecast:
    """Forecast of the *peak* demand (requests/s) over ``[now, now + lead_time_s]``."""

    quantiles: tuple[float, ...]
    """Probability levels, strictly increasing in (0, 1)."""
    peak_rps: tuple[float, ...]
    """Peak demand at each level; non-decreasing."""
    mean_peak_rps: float
    """Point forecast of the peak."""
    model: str = ""
    """Model that produced it (for the reason detail)."""
    notes: tuple[str, ...] = ()
    """Fallbacks taken while fitting, carried into ``Decision.detail``."""

    def at(self, q: float) -> float:
        """Peak at level ``q``, interpolated; clipped to the stored levels (no extrapolation)."""
        qs, vs = self.quantiles, self.peak_rps
        if q <= qs[0]:
            return vs[0]
        for i in range(1, len(qs)):
            if q <= qs[i]:
                w = (q - qs[i - 1]) / (qs[i] - qs[i - 1])
                return vs[i - 1] + w * (vs[i] - vs[i - 1])
        return vs[-1]

    def is_finite(self) -> bool:
        """True when every number is finite and non-negative (NaN never reaches a decision)."""
        values = (*self.peak_rps, self.mean_peak_rps)
        return bool(self.peak_rps) and all(math.isfinite(v) and v >= 0 for v in values)


@dataclass(frozen=True)
class ForecastQuality:
    """How the recent window forecasts fared against what happened."""

    error_ratio: float
    """Mean absolute error of the peak forecast over that of persistence (the demand seen
    when the forecast was made), over recent windows: above 1 the model is worse than naive."""
    coverage: float
    """Share of recent windows whose actual peak was at or below the planned band."""
    samples: int
    """Windows behind these figures."""


@dataclass(frozen=True)
class Observation:
    """The live signal at ``now``."""

    demand_rps: float
    """Latest observed demand, requests/s."""
    current_replicas: int
    """Replicas currently requested (the scale target's spec)."""


@dataclass(frozen=True)
class ScalingPolicy:
    """What the user asks of the decider. All rates are per decision."""

    capacity_per_replica_rps: float
    """Requests/s one replica serves within its SLO (fixed or learned)."""
    min_replicas: int = 1
    """Lower bound on replicas."""
    max_replicas: int = 1000
    """Upper bound on replicas."""
    miss_cost_ratio: float = 200.0
    """Cost of one replica-hour of unserved demand over the cost of one replica-hour of GPU."""
    scale_down_delay_s: float = 30.0
    """Hold the highest recommendation this long before scaling down."""
    fallback_hold_s: float = 300.0
    """Scale-down delay while the forecast is off (the HPA's downscale stabilization)."""
    max_scale_up_rate: float = 1000.0
    """At most ``ceil(current * rate)`` replicas after one decision (Knative's default)."""
    max_scale_down_rate: float = 2.0
    """At least ``floor(current / rate)`` replicas after one decision (Knative's default)."""
    reactive_utilization: float = 1.0
    """Utilization of capacity at which the reactive floor is computed."""
    fallback_utilization: float = 0.7
    """Utilization target used while the forecast is gated off (the HPA's usual target)."""
    max_error_ratio: float = 1.5
    """Gate the forecast off when its recent error exceeds persistence's by this factor."""
    coverage_tolerance: float = 0.1
    """Gate the forecast off when coverage falls this far below the planning quantile."""
    min_quality_samples: int = 20
    """Windows needed before quality is judged (below it the forecast is trusted)."""

    def __post_init__(self) -> None:
        checks = {
            "capacity_per_replica_rps": self.capacity_per_replica_rps > 0,
            "min_replicas": self.min_replicas >= 0,
            "max_replicas": self.max_replicas >= max(self.min_replicas, 1),
            "miss_cost_ratio": self.miss_cost_ratio > 0,
            "scale_down_delay_s": self.scale_down_delay_s >= 0,
            "max_scale_up_rate": self.max_scale_up_rate >= 1,
            "max_scale_down_rate": self.max_scale_down_rate >= 1,
            "reactive_utilization": 0 < self.reactive_utilization <= 1,
            "fallback_utilization": 0 < self.fallback_utilization <= 1,
        }
        for key, ok in checks.items():
            if not ok or not math.isfinite(float(getattr(self, key))):
                raise ValueError(f"policy {key}={getattr(self, key)!r} is out of range")

    @property
    def planning_quantile(self) -> float:
        """The newsvendor critical ratio ``c_miss / (c_miss + c_gpu)``."""
        return self.miss_cost_ratio / (self.miss_cost_ratio + 1.0)


@dataclass(frozen=True)
class DeciderState:
    """What the decider remembers between calls: recent recommendations ``(t_s, replicas)``."""

    recent: tuple[tuple[float, int], ...] = ()


@dataclass(frozen=True)
class Decision:
    """The outcome of one decision. Apply ``replicas`` only when ``valid``."""

    replicas: int
    """Replicas to request."""
    reason: str
    """One of :data:`REASONS`."""
    valid: bool = True
    """False: do not act (e.g. the observation was NaN)."""
    planned_rps: float = 0.0
    """Demand planned for (after gating and the reactive floor)."""
    quantile: float | None = None
    """Planning quantile, when the forecast was used."""
    detail: str = ""
    """Free text for people: model, fallbacks, limits applied."""


def _replicas_for(rps: float, capacity: float, utilization: float) -> int:
    return math.ceil(rps / (capacity * utilization) - 1e-9) if rps > 0 else 0


def _gate(
    forecast: WindowForecast | None, quality: ForecastQuality | None, policy: ScalingPolicy
) -> str | None:
    """The reason the forecast must not be used, or None when it may."""
    if forecast is None or not forecast.is_finite():
        return "no_forecast"
    if quality is None or quality.samples < policy.min_quality_samples:
        return None
    if not math.isfinite(quality.error_ratio) or quality.error_ratio > policy.max_error_ratio:
        return "gated_error"
    if quality.coverage < policy.planning_quantile - policy.coverage_tolerance:
        return "gated_coverage"
    return None


def _plan(
    forecast: WindowForecast | None, quality: ForecastQuality | None, obs: Observation, policy: ScalingPolicy
) -> tuple[int, str, float, float | None, str]:
    """Target replicas before delay and limits: ``(replicas, reason, rps, quantile, detail)``."""
    mu = policy.capacity_per_replica_rps
    floor_n = _replicas_for(obs.demand_rps, mu, policy.reactive_utilization)
    gated = _gate(forecast, quality, policy)
    if gated is not None or forecast is None:
        n = _replicas_for(obs.demand_rps, mu, policy.fallback_utilization)
        return n, gated or "no_forecast", obs.demand_rps, None, ""
    q = policy.planning_quantile
    rps = forecast.at(q)
    n = _replicas_for(rps, mu, 1.0)
    detail = "; ".join((f"model={forecast.model}", *forecast.notes))
    if floor_n > n:
        return floor_n, "reactive_floor", obs.demand_rps, q, detail
    return n, "forecast", rps, q, detail


def _limit(target: int, obs: Observation, policy: ScalingPolicy) -> tuple[int, list[str]]:
    cur = obs.current_replicas
    notes: list[str] = []
    up = max(math.ceil(cur * policy.max_scale_up_rate), 1)
    down = math.floor(cur / policy.max_scale_down_rate)
    out = target
    bounds = (
        (out > up, up, "scale-up rate limited"),
        (out < down, down, "scale-down rate limited"),
    )
    for hit, value, note in bounds:
        if hit:
            out = value
            notes.append(note)
    if out > policy.max_replicas:
        out = policy.max_replicas
        notes.append("at max_replicas")
    if out < policy.min_replicas:
        out = policy.min_replicas
        notes.append("at min_replicas")
    return out, notes


def decide(
    forecast: WindowForecast | None,
    quality: ForecastQuality | None,
    observation: Observation,
    policy: ScalingPolicy,
    state: DeciderState,
    *,
    now: float,
) -> tuple[Decision, DeciderState]:
    """One scaling decision at ``now`` (seconds); see the module docstring for the steps."""
    if not (math.isfinite(observation.demand_rps) and observation.demand_rps >= 0 and math.isfinite(now)):
        bad = Decision(
            observation.current_replicas,
            "invalid_observation",
            valid=False,
            detail=f"demand_rps={observation.demand_rps!r}, now={now!r}",
        )
        return bad, state
    target, reason, rps, q, detail = _plan(forecast, quality, observation, policy)
    # While the forecast is off, hold as long as the HPA's downscale stabilization would.
    hold_s = (
        policy.scale_down_delay_s if q is not None else max(policy.scale_down_delay_s, policy.fallback_hold_s)
    )
    keep = now - max(policy.scale_down_delay_s, policy.fallback_hold_s)
    recent = (*tuple(r for r in state.recent if r[0] > keep), (now, target))
    held = max([target, *(n for t, n in recent if t > now - hold_s)])
    notes = [detail] if detail else []
    if held > target:
        notes.append(f"scale-down delayed (held {held} for {hold_s:.0f} s)")
    replicas, limit_notes = _limit(held, observation, policy)
    notes.extend(limit_notes)
    decision = Decision(replicas, reason, True, rps, q, "; ".join(notes))
    return decision, replace(state, recent=recent)
