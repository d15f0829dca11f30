"""The controller's window forecasts: what a window covers, and how it is scored."""

from __future__ import annotations

import math

import numpy as np

from forecaster.backtest.cli import BUILTIN
from forecaster.backtest.trace import demand_per_step, load_trace
from forecaster.controller.forecasting import TargetForecaster
from forecaster.controller.spec import PASpec, TargetRef
from forecaster.decider import ScalingPolicy
from forecaster.source import RangeResult

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


def _feed(fc: TargetForecaster, series: np.ndarray, step_s: float, now_s: float) -> None:
    rng = fc.next_range(now_s)
    if rng is not None:
        i0, i1 = round(rng[0] / step_s), round(rng[1] / step_s)
        fc.ingest(RangeResult(rng[0], step_s, series[i0 : i1 + 1].astype(np.float64)))
    fc.advance()


def test_a_window_peak_is_never_below_the_demand_just_observed() -> None:
    """A falling forecast still plans for the slot the window opens on."""
    step = 60.0
    series = np.linspace(100.0, 10.0, 201)
    fc = TargetForecaster(_spec(step, 200 * step), phase=0.0)
    now = 200 * step
    _feed(fc, series, step, now)
    fc.fit(now, 1)
    _wf, point = fc.window(now, step)
    assert point >= series[-1] - 1e-9, point


def test_one_step_windows_on_a_real_trace_are_not_worse_than_persistence() -> None:
    """ServeGen in 10-minute slots, windows shorter than a slot (a short lead): the forecast
    must stay within the decider's error gate, or the controller falls back to reacting.
    Windows scored on other slots than those forecast made it about 1.9x persistence."""
    trace = load_trace(BUILTIN / "servegen_m_large_per_10min.csv")
    step = trace.bucket_s
    lam = demand_per_step(trace, step)
    start = 12 * DAY_S
    fc = TargetForecaster(_spec(step, 7 * DAY_S, (DAY_S,)), phase=0.0)
    # As in a live controller: reconciles every 144 s, a 180 s pod lead; windows open mid-slot.
    lead, interval = 180.0, 144.0
    t = start
    while t < start + DAY_S / 2:
        _feed(fc, lam, step, t)
        if fc.needs_fit(t):
            fc.fit(t, 1)
        fc.settle()
        fc.window(t, lead + interval)
        t += interval
    quality = fc.quality()
    gate = ScalingPolicy(capacity_per_replica_rps=1.0).max_error_ratio
    assert quality.samples >= 50
    assert math.isfinite(quality.error_ratio)
    assert quality.error_ratio < gate, quality


def test_bands_are_calibrated_per_demand_level() -> None:
    """Quiet hours that are steady get a narrow band even when busy hours are noisy; one pooled
    band would carry the busy hours' errors into the night."""
    step, per_day = 3600.0, 24
    rng = np.random.default_rng(5)
    hours = np.arange(per_day * 21)
    busy = (hours % per_day) >= 12
    series = np.where(busy, 100.0 * rng.uniform(0.6, 1.4, hours.size), 10.0)
    fc = TargetForecaster(_spec(step, 14 * DAY_S, (DAY_S,), refit_s=DAY_S), phase=0.0)
    bands: dict[bool, list[float]] = {True: [], False: []}
    t = 14 * DAY_S
    while t < 21 * DAY_S - step:
        _feed(fc, series, step, t)
        if fc.needs_fit(t):
            fc.fit(t, 1)
        fc.settle()
        wf, point = fc.window(t, step / 2)
        i = round(t / step)
        if wf is not None and busy[i] == busy[i + 1]:  # not at a change of regime
            bands[bool(busy[i])].append(wf.at(0.98) / point)
        t += step
    quiet, noisy = np.median(bands[False]), np.median(bands[True])
    assert len(bands[False]) > 20
    assert len(bands[True]) > 20
    assert quiet < 1.1, f"quiet hours planned at {quiet:.2f}x the point forecast"
    assert noisy > 1.2, f"busy hours planned at only {noisy:.2f}x the point forecast"
