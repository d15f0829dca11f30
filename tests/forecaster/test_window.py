"""The window planner: causal calibration of window peaks, and choosing the sharpest smoothing."""

from __future__ import annotations

import math

import numpy as np

from forecaster.calibration import CalibratorConfig
from forecaster.window import PlannerConfig, WindowPlanner


def _replay(planner: WindowPlanner, demand: np.ndarray, lead: int) -> list[tuple[float, float]]:
    """Drive the planner like the policy does; return (planned, actual peak) per window."""
    out = []
    planned: dict[int, float] = {}
    for i in range(1, demand.shape[0] - lead):
        planner.observe(float(demand[i - 1]), expected=100.0)
        j = i - 1 - lead
        if j >= 0:
            actual = float(demand[j:i].max())
            planner.outcome(j, actual)
            if j in planned:
                out.append((planned.pop(j), actual))
        wf = planner.plan(i, path_peak=100.0, naive=float(demand[i - 1]))
        if wf is not None:
            planned[i] = wf.at(planner.target)
    return out


def test_piecewise_constant_demand_selects_the_fast_tracker(rng: np.random.Generator) -> None:
    levels = rng.uniform(50, 150, 200)
    demand = np.repeat(levels, 40)  # long flat stretches: the last value predicts best
    planner = WindowPlanner(
        0.9, 1.0, PlannerConfig(level_alphas=(0.02, 0.9), bucket_steps=40, peak_window_steps=0)
    )
    _replay(planner, demand, lead=4)
    assert planner.level_alpha == 0.9


def test_noisy_demand_selects_the_slow_tracker_and_covers_window_peaks(rng: np.random.Generator) -> None:
    demand = rng.poisson(100, 8000).astype(float)
    config = PlannerConfig(
        level_alphas=(0.02, 0.9), peak_window_steps=0, calibrator=CalibratorConfig(step_coverage=False)
    )
    planner = WindowPlanner(0.9, 1.0, config)
    pairs = _replay(planner, demand, lead=4)
    assert planner.level_alpha == 0.02
    hits = [actual <= planned for planned, actual in pairs[2000:]]
    assert abs(float(np.mean(hits)) - 0.9) < 0.02


def test_step_coverage_is_nominal_and_the_band_is_narrower(rng: np.random.Generator) -> None:
    """By default coverage is judged per step against the lowest band of the windows holding it."""
    demand = rng.poisson(100, 8000).astype(float)
    lead = 4
    bands = {}
    for step_coverage in (True, False):
        calibrator = CalibratorConfig(step_coverage=step_coverage)
        config = PlannerConfig(level_alphas=(0.02,), peak_window_steps=0, calibrator=calibrator)
        planner = WindowPlanner(0.9, 1.0, config)
        planned: list[float] = []
        for i in range(1, demand.shape[0] - lead):
            planner.observe(float(demand[i - 1]), expected=100.0)
            if i - 1 - lead >= 0:
                planner.outcome(i - 1 - lead, float(demand[i - 1 - lead : i].max()))
            wf = planner.plan(i, path_peak=100.0, naive=float(demand[i - 1]))
            planned.append(wf.at(0.9) if wf is not None else math.nan)
        band = np.array(planned)
        lowest = np.lib.stride_tricks.sliding_window_view(band, lead + 1).min(axis=1)
        served = demand[1 + lead : 1 + lead + lowest.shape[0]]
        if step_coverage:
            hits = served[2000:] <= lowest[2000:]
            assert abs(float(np.mean(hits)) - 0.9) < 0.02
        bands[step_coverage] = float(np.nanmean(band[2000:]))
    assert bands[True] < bands[False]


def test_no_plan_without_a_path_or_before_calibration() -> None:
    planner = WindowPlanner(0.9, 1.0, PlannerConfig(calibrator=CalibratorConfig(min_scores=5)))
    assert planner.plan(0, path_peak=math.nan, naive=1.0) is None
    assert planner.plan(1, path_peak=10.0, naive=1.0) is None


def test_runaway_forecasts_are_capped() -> None:
    config = PlannerConfig(
        level_alphas=(0.5,), level_bins=(), peak_window_steps=0, calibrator=CalibratorConfig(min_scores=1)
    )
    planner = WindowPlanner(0.5, 1.0, config)
    for i in range(50):
        planner.observe(10.0, expected=10.0)
        planner.plan(i, path_peak=10.0, naive=10.0)
        planner.outcome(i, 10.0)
    wf = planner.plan(60, path_peak=1e9, naive=10.0)
    assert wf is not None
    assert wf.mean_peak_rps <= 20.0


def test_the_sharpest_forecast_the_decider_would_not_gate_is_chosen(rng: np.random.Generator) -> None:
    """A point forecast stuck at half the demand calibrates into a tight band (its error is a
    constant factor) but is far worse than persistence: it is passed over unless allowed."""
    demand = 100.0 + rng.normal(0.0, 5.0, 3000)
    chosen = {}
    for max_error_ratio in (1.5, 100.0):
        config = PlannerConfig(
            level_alphas=(0.0, 0.9), peak_window_steps=0, transforms=(), max_error_ratio=max_error_ratio
        )
        planner = WindowPlanner(0.9, 1.0, config)
        for i in range(1, demand.shape[0] - 4):
            planner.observe(float(demand[i - 1]), expected=50.0)
            if i - 5 >= 0:
                planner.outcome(i - 5, float(demand[i - 5 : i].max()))
            planner.plan(i, path_peak=50.0, naive=float(demand[i - 1]))
        chosen[max_error_ratio] = planner.level_alpha
    assert chosen == {1.5: 0.9, 100.0: 0.0}
