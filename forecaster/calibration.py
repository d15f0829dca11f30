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
from forecaster.models.base import FloatArray


@dataclass(frozen=True)
class CalibratorConfig:
    """Settings of :class:`PeakCalibrator`."""

    window: int = 2000
    """Recent scores kept per group (the calibration set)."""
    quality_window: int = 240
    """Recent outcomes behind the error ratio and coverage figures."""
    aci_gamma: float = 0.005
    """Step size of the adaptive level update (0 disables it)."""
    min_scores: int = 30
    """Below this many scores in a group no band is issued (the decider gates the forecast off)."""
    refresh: int = 8
    """Re-sort a group's scores after this many new ones (quantiles between are cached)."""


def _sorted_quantile(sorted_scores: FloatArray, q: float) -> float:
    """Linear-interpolated quantile of an already sorted array (numpy's default method)."""
    pos = q * (sorted_scores.shape[0] - 1)
    lo = int(pos)
    hi = min(lo + 1, sorted_scores.shape[0] - 1)
    return float(sorted_scores[lo] + (pos - lo) * (sorted_scores[hi] - sorted_scores[lo]))


class _Group:
    """Scores of one Mondrian group (e.g. a phase within the model's bucket)."""

    def __init__(self, window: int) -> None:
        self.scores: deque[float] = deque(maxlen=window)
        self.sorted: FloatArray = np.zeros(0)
        self.stale = 0
        self.version = 0

    def add(self, score: float, refresh: int) -> None:
        self.scores.append(score)
        self.stale += 1
        if self.stale >= refresh or self.sorted.shape[0] < 2 * refresh:
            self.sorted = np.sort(np.fromiter(self.scores, dtype=np.float64))
            self.stale = 0
            self.version += 1


class PeakCalibrator:
    """Turns a point forecast of the window peak into calibrated quantiles, causally.

    Scores can be kept per *group* (Mondrian conformal): forecasts made at different
    phases of the model's bucket carry different information, so each phase gets its own
    calibration set and therefore its own band width.
    """

    def __init__(self, target_quantile: float, config: CalibratorConfig | None = None) -> None:
        if not 0.0 < target_quantile < 1.0:
            raise ValueError(f"target_quantile must be in (0, 1), got {target_quantile}")
        self.config = config or CalibratorConfig()
        self.target = target_quantile
        self._level = target_quantile
        self._groups: dict[int, _Group] = {}
        self._hits: deque[bool] = deque(maxlen=self.config.quality_window)
        self._abs_err: deque[float] = deque(maxlen=self.config.quality_window)
        self._naive_err: deque[float] = deque(maxlen=self.config.quality_window)
        self.outcomes = 0
        self.covered = 0
        self._pool: _Group | None = None
        self._pool_stamp = -1

    def observe(
        self,
        forecast_peak: float,
        planned_peak: float | None,
        actual_peak: float,
        *,
        group: int = 0,
        offset: float = 1.0,
        naive_peak: float | None = None,
    ) -> None:
        """Record the outcome of one window: its point forecast, issued band (if any), actual.

        ``naive_peak`` is what persistence (the demand observed when the forecast was made)
        predicted; the error ratio compares the model with it.
        """
        if not (math.isfinite(forecast_peak) and math.isfinite(actual_peak)):
            return
        g = self._groups.setdefault(group, _Group(self.config.window))
        g.add(math.log((actual_peak + offset) / (forecast_peak + offset)), self.config.refresh)
        self._abs_err.append(abs(actual_peak - forecast_peak))
        naive = forecast_peak if naive_peak is None or not math.isfinite(naive_peak) else naive_peak
        self._naive_err.append(abs(actual_peak - naive))
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

    def window_forecast(
        self,
        forecast_peak: float,
        model: str = "",
        notes: tuple[str, ...] = (),
        group: int = 0,
        offset: float = 1.0,
    ) -> WindowForecast | None:
        """Calibrated quantiles around ``forecast_peak``; None until enough outcomes exist."""
        g = self._groups.get(group)
        if g is None or g.sorted.shape[0] < self.config.min_scores:
            g = self._pooled()  # a group still short of evidence borrows from all of them
        if g.sorted.shape[0] < self.config.min_scores or not math.isfinite(forecast_peak):
            return None
        levels = sorted({0.5, 0.8, 0.9, 0.95, self.target})
        # The working ACI level stands in for the nominal one, so the decider's q* maps onto it.
        values = [
            (forecast_peak + offset)
            * math.exp(_sorted_quantile(g.sorted, self._level if q == self.target else q))
            - offset
            for q in levels
        ]
        peaks = tuple(float(v) for v in np.maximum.accumulate(np.maximum(values, 0.0)))
        return WindowForecast(tuple(levels), peaks, max(forecast_peak, 0.0), model, notes)

    def _pooled(self) -> _Group:
        """All groups' scores together (cached until any group re-sorts)."""
        stamp = sum(g.version for g in self._groups.values())
        if self._pool is None or self._pool_stamp != stamp:
            pool = _Group(1)
            parts = [g.sorted for g in self._groups.values()]
            pool.sorted = np.sort(np.concatenate(parts)) if parts else np.zeros(0)
            self._pool, self._pool_stamp = pool, stamp
        return self._pool

    def quality(self) -> ForecastQuality:
        """Recent error ratio (model vs persistence) and coverage of the issued bands."""
        naive = sum(self._naive_err)
        err = sum(self._abs_err)
        ratio = err / naive if naive > 0 else (1.0 if err == 0 else math.inf)
        cov = sum(self._hits) / len(self._hits) if self._hits else 1.0
        return ForecastQuality(ratio, cov, len(self._hits))

    @property
    def coverage(self) -> float:
        """Coverage over every outcome seen so far (the figure a report states)."""
        return self.covered / self.outcomes if self.outcomes else float("nan")
