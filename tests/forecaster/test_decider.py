"""The pure decider: planning quantile, gating, reactive floor, delay, limits, bad input."""

from __future__ import annotations

import math
from dataclasses import FrozenInstanceError

import pytest

from forecaster.decider import (
    REASONS,
    DeciderState,
    ForecastQuality,
    Observation,
    ScalingPolicy,
    WindowForecast,
    decide,
)

POLICY = ScalingPolicy(
    capacity_per_replica_rps=10.0, miss_cost_ratio=19.0, scale_down_delay_s=60.0, max_replicas=100
)
GOOD = ForecastQuality(error_ratio=0.5, coverage=0.95, samples=100)


def wf(*peaks: float) -> WindowForecast:
    levels = (0.5, 0.9, 0.95, 0.99)
    return WindowForecast(levels, peaks, peaks[0], model="fourier")


def test_planning_quantile_is_the_critical_ratio() -> None:
    assert POLICY.planning_quantile == pytest.approx(0.95)
    assert ScalingPolicy(capacity_per_replica_rps=1, miss_cost_ratio=1).planning_quantile == 0.5


def test_plans_on_the_band_at_the_cost_quantile() -> None:
    d, _ = decide(wf(100, 140, 151, 200), GOOD, Observation(90, 10), POLICY, DeciderState(), now=0.0)
    assert (d.replicas, d.reason) == (16, "forecast")
    assert d.quantile == pytest.approx(0.95)
    assert d.planned_rps == pytest.approx(151)
    assert "model=fourier" in d.detail


def test_cheaper_misses_plan_lower() -> None:
    cheap = ScalingPolicy(capacity_per_replica_rps=10.0, miss_cost_ratio=1.0)
    d, _ = decide(wf(100, 140, 151, 200), GOOD, Observation(90, 10), cheap, DeciderState(), now=0.0)
    assert d.replicas == 10


def test_reactive_floor_wins_when_demand_beats_the_forecast() -> None:
    d, _ = decide(wf(50, 60, 70, 80), GOOD, Observation(155, 8), POLICY, DeciderState(), now=0.0)
    assert (d.replicas, d.reason) == (16, "reactive_floor")


@pytest.mark.parametrize(
    ("quality", "reason"),
    [
        (ForecastQuality(3.0, 0.95, 100), "gated_error"),
        (ForecastQuality(math.nan, 0.95, 100), "gated_error"),
        (ForecastQuality(0.5, 0.70, 100), "gated_coverage"),
    ],
)
def test_degraded_forecast_is_gated_off(quality: ForecastQuality, reason: str) -> None:
    d, _ = decide(wf(100, 140, 151, 200), quality, Observation(70, 10), POLICY, DeciderState(), now=0.0)
    # Reactive at the fallback utilization: 70 / (10 * 0.7) = 10.
    assert (d.replicas, d.reason, d.quantile) == (10, reason, None)


def test_quality_is_not_judged_on_few_samples() -> None:
    few = ForecastQuality(9.0, 0.1, 5)
    d, _ = decide(wf(100, 140, 151, 200), few, Observation(70, 10), POLICY, DeciderState(), now=0.0)
    assert d.reason == "forecast"


def test_nan_forecast_never_reaches_the_decision() -> None:
    d, _ = decide(wf(math.nan, 1, 2, 3), GOOD, Observation(70, 10), POLICY, DeciderState(), now=0.0)
    assert (d.reason, d.replicas) == ("no_forecast", 10)


def test_nan_observation_is_an_invalid_decision() -> None:
    d, state = decide(wf(1, 2, 3, 4), GOOD, Observation(math.nan, 7), POLICY, DeciderState(), now=0.0)
    assert (d.valid, d.reason, d.replicas) == (False, "invalid_observation", 7)
    assert state == DeciderState()


def test_scale_down_is_delayed_then_allowed() -> None:
    state = DeciderState()
    d, state = decide(wf(200, 200, 200, 200), GOOD, Observation(0, 20), POLICY, state, now=0.0)
    assert d.replicas == 20
    d, state = decide(wf(50, 50, 50, 50), GOOD, Observation(0, 20), POLICY, state, now=30.0)
    assert d.replicas == 20
    assert "scale-down delayed" in d.detail
    d, state = decide(wf(50, 50, 50, 50), GOOD, Observation(0, 20), POLICY, state, now=61.0)
    assert d.replicas == 10  # max_scale_down_rate 2: 20 -> at least 10, and 5 is wanted


def test_no_delay_at_all_scales_down_at_once() -> None:
    """Both holds at 0 (the CRD allows it): the recommendation stands alone, every time."""
    policy = ScalingPolicy(capacity_per_replica_rps=10.0, scale_down_delay_s=0.0, fallback_hold_s=0.0)
    state = DeciderState()
    for now, (peak, replicas) in enumerate([(200, 20), (100, 10), (100, 10)]):
        d, state = decide(wf(peak, peak, peak, peak), GOOD, Observation(0, 20), policy, state, now=float(now))
        assert d.valid
        assert d.replicas == replicas
    d, state = decide(None, GOOD, Observation(35, 10), policy, state, now=5.0)
    assert d.valid
    assert d.replicas == 5  # gated off: 35 rps at 0.7 of 10 rps per replica


def test_rate_limits_and_bounds() -> None:
    slow = ScalingPolicy(capacity_per_replica_rps=1.0, max_scale_up_rate=1.5, max_replicas=12, min_replicas=2)
    d, _ = decide(wf(100, 100, 100, 100), GOOD, Observation(0, 4), slow, DeciderState(), now=0.0)
    assert d.replicas == 6
    assert "scale-up rate limited" in d.detail
    d, _ = decide(wf(100, 100, 100, 100), GOOD, Observation(0, 10), slow, DeciderState(), now=0.0)
    assert d.replicas == 12
    assert "max_replicas" in d.detail
    d, _ = decide(wf(0, 0, 0, 0), GOOD, Observation(0, 2), slow, DeciderState(), now=0.0)
    assert d.replicas == 2


def test_decide_is_pure_and_its_types_frozen() -> None:
    args = (wf(100, 140, 151, 200), GOOD, Observation(90, 10), POLICY, DeciderState())
    assert decide(*args, now=5.0) == decide(*args, now=5.0)
    d, _ = decide(*args, now=5.0)
    assert d.reason in REASONS
    with pytest.raises(FrozenInstanceError):
        d.replicas = 3  # type: ignore[misc]


@pytest.mark.parametrize("field", ["capacity_per_replica_rps", "miss_cost_ratio", "fallback_utilization"])
def test_policy_rejects_out_of_range_values_by_name(field: str) -> None:
    kwargs: dict[str, float] = {"capacity_per_replica_rps": 1.0, field: -1.0}
    with pytest.raises(ValueError, match=field):
        ScalingPolicy(**kwargs)  # type: ignore[arg-type]
