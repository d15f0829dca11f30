"""Online conformal calibration of window-peak forecasts, and their measured quality.

A model's own bands describe one step; the decider needs the *peak* over the lead-time
window at a chosen quantile. This calibrator learns that directly: for every window whose
outcome is known it stores the score ``log((actual_peak + 1) / (forecast_peak + 1))``; the
band at level q is ``forecast * exp(Q_q(recent scores))``. On top, adaptive conformal
inference (Gibbs and Candès, 2021) nudges the working level after every outcome so that
long-run coverage tracks the nominal level even when the scores drift.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

import numpy as np

from forecaster.decider import ForecastQuality, WindowForecast


@dataclass(frozen=True)
class CalibratorConfig:
    """Settings of :class:`PeakCalibrator`."""

    window: int = 2000
    """Recent scores kept (the calibration set)."""
    quality_window: int = 240
    """Recent outcomes behind the error ratio and coverage figures."""
    aci_gamma: float = 0.005
    """Step size of the adaptive level update (0 disables it)."""
    min_scores: int = 30
    """Below this many scores no band is issued (the decider then gates the forecast off)."""


class PeakCalibrator:
    """Turns a point forecast of the window peak into calibrated quantiles, causally."""

    def __init__(self, target_quantile: float, config: CalibratorConfig | None = None) -> None:
        if not 0.0 < target_quantile < 1.0:
            raise ValueError(f"target_quantile must be in (0, 1), got {target_quantile}")
        self.config = config or CalibratorConfig()
        self.target = target_quantile
        self._level = target_quantile
        self._scores: deque[float] = deque(maxlen=self.config.window)
        self._hits: deque[bool] = deque(maxlen=self.config.quality_window)
        self._abs_err: deque[float] = deque(maxlen=self.config.quality_window)
        self._actual: deque[float] = deque(maxlen=self.config.quality_window)
        self.outcomes = 0
        self.covered = 0

    def observe(self, forecast_peak: float, planned_peak: float | None, actual_peak: float) -> None:
        """Record the outcome of one window: its point forecast, issued band (if any), actual."""
        if not (math.isfinite(forecast_peak) and math.isfinite(actual_peak)):
            return
        self._scores.append(math.log((actual_peak + 1.0) / (forecast_peak + 1.0)))
        self._abs_err.append(abs(actual_peak - forecast_peak))
        self._actual.append(actual_peak)
        if planned_peak is not None and math.isfinite(planned_peak):
            hit = actual_peak <= planned_peak + 1e-9
            self._hits.append(hit)
            self.outcomes += 1
            self.covered += hit
            if self.config.aci_gamma > 0:
                miss = 0.0 if hit else 1.0
                # ACI: raise the level after a miss, lower it slowly after a hit.
                self._level += self.config.aci_gamma * (miss - (1.0 - self.target))
                self._level = min(max(self._level, 0.5), 0.9995)

    def window_forecast(self, forecast_peak: float, model: str = "", notes: tuple[str, ...] = ()) -> WindowForecast | None:
        """Calibrated quantiles around ``forecast_peak``; None until enough outcomes exist."""
        if len(self._scores) < self.config.min_scores or not math.isfinite(forecast_peak):
            return None
        levels = sorted({0.5, 0.8, 0.9, 0.95, self.target, min(self._level, 0.9995)})
        scores = np.fromiter(self._scores, dtype=np.float64)
        offsets = np.quantile(scores, np.asarray(levels))
        # The working ACI level replaces the nominal one, so the decider's q* maps onto it.
        values = [(forecast_peak + 1.0) * math.exp(o) - 1.0 for o in offsets]
        work = values[levels.index(min(self._level, 0.9995))]
        values[levels.index(self.target)] = max(work, 0.0)
        peaks = tuple(float(v) for v in np.maximum.accumulate(np.maximum(values, 0.0)))
        return WindowForecast(tuple(levels), peaks, max(forecast_peak, 0.0), model, notes)

    def quality(self) -> ForecastQuality:
        """Recent error ratio and coverage of the issued bands."""
        total = sum(self._actual)
        err = sum(self._abs_err) / total if total > 0 else (0.0 if not self._abs_err else math.inf)
        cov = sum(self._hits) / len(self._hits) if self._hits else 1.0
        return ForecastQuality(err, cov, len(self._hits))

    @property
    def coverage(self) -> float:
        """Coverage over every outcome seen so far (the figure a report states)."""
        return self.covered / self.outcomes if self.outcomes else float("nan")
