"""From a model's bucket path to a calibrated forecast of the peak over the lead window.

Used by the backtest's predictive policy and meant for the controller's live loop: feed it
one observation per control step (``observe``), the outcome of each window once it closed
(``outcome``), and ask it for the window forecast at each decision (``plan``).

How the point forecast of the peak is made: the model's path over the window, times a live
level ratio (observed / forecast, exponentially smoothed per step). How much to smooth is a
per-workload property (piecewise-constant traffic wants the last value, noisy traffic a
long average), so several smoothings run side by side, each with its own conformal
calibrator, and the one whose calibrated band has been *sharpest* (lowest planned peak
relative to the actual) is used: among calibrated forecasts, prefer the sharpest (of those
whose recent error the decider would not gate off). Each runs under two score transforms,
proportional errors (``log``) and counting noise (``sqrt``), since which fits is also a
property of the workload (a high rate's noise is its level's, a low count's is Poisson).

Coverage is judged per demand step (by default): capacity serves each step, and what a step
got is the lowest band issued for a window holding it, so that is the event the miss cost
prices. Adaptive conformal inference sets the window-peak quantile at which that per-step
coverage is the nominal one; it is well below the nominal for a window peak.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field, replace

from forecaster.calibration import CalibratorConfig, PeakCalibrator
from forecaster.decider import ForecastQuality, WindowForecast

TYPICAL_ALPHA = 0.005
"""Per-step smoothing of typical demand (about an hour at 15 s steps): the score offset."""
SHARPNESS_ALPHA = 0.002
"""Per-outcome smoothing of each tracker's planned/actual ratio."""
RUNAWAY_FACTOR = 2.0
"""Never plan beyond this multiple of the largest demand seen (runaway extrapolation)."""


@dataclass(frozen=True)
class PlannerConfig:
    """Settings of :class:`WindowPlanner`."""

    level_alphas: tuple[float, ...] = (0.02, 0.1, 0.5)
    """Smoothings of the live level ratio tried side by side."""
    peak_window_steps: int = 24
    """Also try the recent peak (max of this many steps) as the point forecast; 0: off.
    For bursty traffic the last peaks predict the next one better than any level does."""
    bucket_steps: int = 1
    """Control steps per source bucket: calibration is grouped by the phase within it."""
    level_bins: tuple[float, ...] = (0.7, 1.3)
    """Calibration is also grouped by the forecast's level relative to typical demand."""
    transforms: tuple[str, ...] = ("log", "sqrt")
    """Each point forecast is calibrated under each of these score transforms (proportional
    errors, counting noise) side by side; empty: only ``calibrator.transform``."""
    max_error_ratio: float = 1.5
    """Prefer forecasts whose recent error is at most this multiple of persistence's (set it
    to the policy's ``max_error_ratio``: the decider gates a worse one off)."""
    calibrator: CalibratorConfig = field(default_factory=lambda: CalibratorConfig(step_coverage=True))
    """Conformal calibration settings (per tracker). By default coverage is judged per demand
    step against the lowest band issued for a window holding it (the capacity that step
    got), which is what the miss cost applies to; the band itself stays a window peak."""


@dataclass
class _Pending:
    point: float
    planned: float
    group: int
    offset: float
    naive: float


class _Tracker:
    """One point forecast (a level-ratio smoothing, or the recent peak) with its own calibrator."""

    def __init__(self, alpha: float, target: float, config: CalibratorConfig) -> None:
        self.alpha = alpha  # NaN: the recent-peak tracker
        self.transform = config.transform
        self.log_ratio = 0.0
        self.calibrator = PeakCalibrator(target, config)
        self.sharpness = math.nan
        self.pending: dict[int, _Pending] = {}


class WindowPlanner:
    """Causal window-peak forecasts: observe, outcome, plan (see the module docstring)."""

    def __init__(
        self, target_quantile: float, min_offset: float, config: PlannerConfig | None = None
    ) -> None:
        self.config = config or PlannerConfig()
        self.target = target_quantile
        self.min_offset = min_offset
        alphas = list(self.config.level_alphas)
        if self.config.peak_window_steps > 0:
            alphas.append(math.nan)
        transforms = self.config.transforms or (self.config.calibrator.transform,)
        self.trackers = [
            _Tracker(a, target_quantile, replace(self.config.calibrator, transform=tr))
            for tr in transforms
            for a in alphas
        ]
        self._recent: deque[float] = deque(maxlen=max(1, self.config.peak_window_steps))
        self.typical = math.nan
        self.runmax = 0.0
        self.chosen = 0

    @property
    def offset(self) -> float:
        """Score offset: typical demand, at least ``min_offset`` (one replica's worth)."""
        return max(self.typical if math.isfinite(self.typical) else 0.0, self.min_offset)

    def observe(self, demand: float, expected: float) -> None:
        """The demand of the step that just completed and what the model had forecast for it."""
        if not math.isfinite(demand):
            return
        self.typical = (
            demand if math.isnan(self.typical) else self.typical + TYPICAL_ALPHA * (demand - self.typical)
        )
        self.runmax = max(self.runmax, demand)
        self._recent.append(demand)
        if self.config.calibrator.step_coverage:
            for t in self.trackers:
                bands = [p.planned for p in t.pending.values() if math.isfinite(p.planned)]
                if bands:
                    t.calibrator.observe_step(demand, min(bands))
        if not math.isfinite(expected):
            for t in self.trackers:
                t.log_ratio = 0.0
            return
        c = self.offset
        r = math.log((demand + c) / (expected + c))
        for t in self.trackers:
            if not math.isnan(t.alpha):
                t.log_ratio += t.alpha * (r - t.log_ratio)

    def outcome(self, step: int, actual_peak: float) -> None:
        """The window opened at ``step`` has closed with this actual peak."""
        for t in self.trackers:
            for stale in [k for k in t.pending if k < step]:
                del t.pending[stale]  # windows whose outcome was skipped (the lead time changed)
            p = t.pending.pop(step, None)
            if p is None:
                continue
            planned = None if math.isnan(p.planned) else p.planned
            t.calibrator.observe(
                p.point, planned, actual_peak, group=p.group, offset=p.offset, naive_peak=p.naive
            )
            if planned is not None:
                ratio = (planned + p.offset) / (actual_peak + p.offset)
                t.sharpness = (
                    ratio
                    if math.isnan(t.sharpness)
                    else t.sharpness + SHARPNESS_ALPHA * (ratio - t.sharpness)
                )
        ready = [k for k, t in enumerate(self.trackers) if math.isfinite(t.sharpness)]
        # Among the forecasts the decider would not gate off for their error, the sharpest.
        fit = [k for k in ready if self.trackers[k].calibrator.error_ratio <= self.config.max_error_ratio]
        if fit or ready:
            self.chosen = min(fit or ready, key=lambda k: self.trackers[k].sharpness)

    def _group(self, phase: int, point: float) -> int:
        bins = self.config.level_bins
        level = sum(point > b * self.offset for b in bins) if math.isfinite(point) else 0
        return (phase % self.config.bucket_steps) * (len(bins) + 1) + level

    def plan(
        self,
        step: int,
        path_peak: float,
        naive: float,
        model: str = "",
        notes: tuple[str, ...] = (),
        *,
        record: bool = True,
    ) -> WindowForecast | None:
        """Window forecast for the decision at ``step`` (None until calibrated or without a path).

        ``record``: remember the window, to be scored by :meth:`outcome`; off for a what-if
        (a longer window planned with the same calibration)."""
        c = self.offset
        chosen: WindowForecast | None = None
        for k, t in enumerate(self.trackers):
            point = self._point(t, path_peak, c)
            group = self._group(step, point)
            if k == self.chosen:
                chosen = t.calibrator.window_forecast(point, model, notes, group=group, offset=c)
                planned = chosen.at(self.target) if chosen is not None else math.nan
            else:
                planned = t.calibrator.band(point, group=group, offset=c)
            if record and math.isfinite(point):
                t.pending[step] = _Pending(point, planned, group, c, naive)
        return chosen

    def _point(self, t: _Tracker, path_peak: float, c: float) -> float:
        if math.isnan(t.alpha):
            return max(self._recent) if self._recent else math.nan
        if not math.isfinite(path_peak):
            return math.nan
        point = (path_peak + c) * math.exp(t.log_ratio) - c
        return min(max(point, 0.0), RUNAWAY_FACTOR * max(self.runmax, c))

    def quality(self) -> ForecastQuality:
        """Quality of the tracker in use."""
        return self.trackers[self.chosen].calibrator.quality()

    @property
    def transform(self) -> str:
        """Score transform of the tracker in use."""
        return self.trackers[self.chosen].transform

    @property
    def level_alpha(self) -> float:
        """Smoothing of the tracker in use (NaN: the recent-peak tracker)."""
        return self.trackers[self.chosen].alpha
