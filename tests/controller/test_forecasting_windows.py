"""The controller's forecasting at two resolutions: a model on the query grid, and a window
planner that observes, scores and plans at every decision."""

from __future__ import annotations

import math

import numpy as np
import pytest

from forecaster.backtest.cli import BUILTIN
from forecaster.backtest.trace import demand_per_step, load_trace
from forecaster.controller.forecasting import TargetForecaster
from forecaster.controller.spec import PASpec, TargetRef
from forecaster.decider import ScalingPolicy
from forecaster.source import RangeResult
from forecaster.window import WindowPlanner

DAY_S = 86400.0


def _spec(
    step_s: float, history_s: float, seasons: tuple[float, ...] = (), refit_s: float = 3600.0
) -> PASpec:
    return PASpec(
        target=TargetRef("apps/v1", "Deployment", "model"),
        min_replicas=1,
        max_replicas=50,
        query="demand",
        mode="dry-run",
        step_s=step_s,
        history_s=history_s,
        capacity_rps=10.0,
        pod_lead_time_s=step_s,
        measure_lead_time=False,
        seasonalities_s=seasons,
        refit_interval_s=refit_s,
    )


def _feed(fc: TargetForecaster, grid: np.ndarray, step_s: float, now_s: float, window_s: float) -> None:
    """Fetch what is new on the grid (``grid[i]``: the value at ``i * step_s``), advance the model."""
    rng = fc.next_range(now_s)
    if rng is not None:
        i0, i1 = round(rng[0] / step_s), round(rng[1] / step_s)
        fc.ingest(RangeResult(rng[0], step_s, grid[i0 : i1 + 1].astype(np.float64)))
    fc.advance(window_s)


class _Outcomes(WindowPlanner):
    """Records every window outcome the forecaster reports."""

    def __init__(self, planner: WindowPlanner) -> None:
        super().__init__(planner.target, planner.min_offset, planner.config)
        self.seen: list[tuple[int, float]] = []

    def outcome(self, step: int, actual_peak: float) -> None:
        self.seen.append((step, actual_peak))
        super().outcome(step, actual_peak)


def _warm(step: float, interval: float, window_s: float) -> tuple[TargetForecaster, np.ndarray, float]:
    """A forecaster fitted on 200 grid slots of a ramp, without a warm-start tail."""
    grid = np.linspace(10.0, 50.0, 400)
    fc = TargetForecaster(_spec(step, 200 * step), interval_s=interval)
    now = 200 * step
    _feed(fc, grid, step, now, window_s)
    fc.scored = 1  # not a fresh forecaster: no warm-start walk over a held-back tail
    fc.fit(now, window_s)
    return fc, grid, now


def test_a_window_is_scored_on_the_steps_after_its_decision() -> None:
    """A decision at step j plans steps j..j+n-1; each one's demand is reported at the next
    decision, so the window closes at decision j+n with the peak of decisions j+1..j+n."""
    step, interval, window_s = 60.0, 10.0, 30.0
    fc, grid, now = _warm(step, interval, window_s)
    spy = _Outcomes(fc.planner)
    fc.planner = spy
    demand = [5.0, 9.0, 1.0, 2.0, 3.0, 7.0, 4.0, 4.0]
    for n, d in enumerate(demand):
        t = now + n * interval
        _feed(fc, grid, step, t, window_s)
        assert fc.observe(t, d)
        fc.window(t, window_s)
    j0 = fc.step_index(now)
    # Three steps per window: the window of decision j holds the demands observed at j+1..j+3.
    assert spy.seen == [(j0 + j, max(demand[j + 1 : j + 4])) for j in range(len(demand) - 3)]
    assert fc.scored == 1 + len(demand) - 3


def test_one_observation_and_one_window_per_decision_step() -> None:
    step, interval, window_s = 60.0, 10.0, 30.0
    fc, _grid, now = _warm(step, interval, window_s)
    assert fc.observe(now, 5.0)
    assert not fc.observe(now + 3.0, 50.0), "a second reconcile in the same step is not a new step"
    assert fc.demand == 5.0
    fc.window(now, window_s)
    fc.window(now + 3.0, window_s)  # recorded once only
    assert list(fc._open) == [fc.step_index(now)]
    assert not fc.observe(now + interval, math.nan), "NaN never reaches the planner"


def test_a_longer_window_than_the_decisions_extends_the_model_path() -> None:
    """Node-pool planning asks for pod lead + node lead: beyond the decision window's path."""
    step, interval, window_s = 60.0, 10.0, 30.0
    fc, _grid, now = _warm(step, interval, window_s)
    before = fc._path.size
    fc.observe(now, 50.0)
    _wf, point = fc.window(now, 20 * step, record=False)
    assert fc._path.size > before
    assert math.isfinite(point)
    assert not fc._open, "a what-if window is not scored"


def test_on_a_real_trace_the_forecast_is_used_at_the_demo_cadence() -> None:
    """ServeGen in 10-minute slots, a decision every 144 s (the demo at x144) and a 180 s lead:
    the warm start calibrates at once, and the forecast stays within the decider's error gate
    for most decisions (on the old single-resolution grid it was gated off nearly always)."""
    trace = load_trace(BUILTIN / "servegen_m_large_per_10min.csv")
    step = trace.bucket_s
    lam = demand_per_step(trace, step)
    grid = np.concatenate([[lam[0]], lam])  # the value at slot i covers the slot ending at i
    interval, lead = 144.0, 180.0
    window_s = lead + interval
    fc = TargetForecaster(_spec(step, 7 * DAY_S, (DAY_S,), refit_s=DAY_S), interval_s=interval)
    fc.use_capacity(float(lam.max()) / 20)
    gate = ScalingPolicy(capacity_per_replica_rps=1.0).max_error_ratio
    t, used, decisions = 12 * DAY_S, 0, 0
    while t < 12.5 * DAY_S:
        _feed(fc, grid, step, t, window_s)
        if fc.needs_fit(t):
            fc.fit(t, window_s)
        fc.observe(t, float(lam[math.floor((t - interval / 2) / step)]))  # the step just ended
        wf, _point = fc.window(t, window_s)
        quality = fc.quality()
        decisions += 1
        used += wf is not None and quality.error_ratio <= gate
        t += interval
    assert fc.scored > 300, "the warm start walks a day of decisions"
    assert used >= 0.8 * decisions, f"forecast within the gate at {used} of {decisions} decisions"


def test_bands_are_calibrated_per_demand_level() -> None:
    """Quiet hours that are steady get a narrow band even when busy hours are noisy; one pooled
    band would carry the busy hours' errors into the night. (Scores are offset by typical
    demand, so a band is compared by its width, not its ratio to a small point forecast.)"""
    step, per_day = 3600.0, 24
    rng = np.random.default_rng(5)
    hours = np.arange(per_day * 21)
    busy = (hours % per_day) >= 12
    series = np.where(busy, 100.0 * rng.uniform(0.6, 1.4, hours.size), 10.0)
    grid = np.concatenate([[series[0]], series])
    interval = step / 2
    fc = TargetForecaster(_spec(step, 14 * DAY_S, (DAY_S,), refit_s=DAY_S), interval_s=interval)
    fc.use_capacity(5.0)
    widths: dict[bool, list[float]] = {True: [], False: []}
    t = 14 * DAY_S
    while t < 21 * DAY_S - step:
        _feed(fc, grid, step, t, interval)
        if fc.needs_fit(t):
            fc.fit(t, interval)
        h = math.floor((t - interval / 2) / step)
        fc.observe(t, float(series[h]))
        wf, point = fc.window(t, interval)
        nxt = math.floor((t + interval / 2) / step)
        if wf is not None and busy[h] == busy[nxt]:  # not at a change of regime
            widths[bool(busy[nxt])].append(wf.at(fc.planner.target) - point)
        t += interval
    quiet, noisy = np.median(widths[False]), np.median(widths[True])
    assert len(widths[False]) > 20
    assert len(widths[True]) > 20
    assert quiet < 0.25 * noisy, f"quiet hours get a band {quiet:.1f} wide, busy hours {noisy:.1f}"


@pytest.mark.parametrize("interval", [7.0, 60.0, 90.0])
def test_decisions_slower_or_faster_than_the_grid_still_plan(interval: float) -> None:
    step, window_s = 60.0, 120.0
    fc, grid, now = _warm(step, interval, window_s)
    for n in range(40):
        t = now + n * interval
        _feed(fc, grid, step, t, window_s)
        fc.observe(t, float(grid[min(math.ceil(t / step), grid.size - 1)]))
        _wf, point = fc.window(t, window_s)
        assert math.isfinite(point)
    assert fc.scored > 1
