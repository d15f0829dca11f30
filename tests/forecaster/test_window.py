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


def test_noisy_demand_selects_the_slow_tracker_and_covers(rng: np.random.Generator) -> None:
    demand = rng.poisson(100, 8000).astype(float)
    planner = WindowPlanner(0.9, 1.0, PlannerConfig(level_alphas=(0.02, 0.9), peak_window_steps=0))
    pairs = _replay(planner, demand, lead=4)
    assert planner.level_alpha == 0.02
    hits = [actual <= planned for planned, actual in pairs[2000:]]
    assert abs(float(np.mean(hits)) - 0.9) < 0.02


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
