"""Online conformal calibration of window-peak forecasts, and their measured quality.

A model's own bands describe one step; the decider needs the *peak* over the lead-time
window at a chosen quantile. This calibrator learns that directly: for every window whose
outcome is known it stores the score ``log((actual_peak + 1) / (forecast_peak + 1))``; the
band at level q is ``forecast * exp(Q_q(recent scores))``. On top, adaptive conformal
inference (Gibbs and Candès, 2021) nudges the working level after every outcome so that
long-run coverage tracks the nominal level even when the scores drift. The score may
instead compare square roots (``transform="sqrt"``: counting noise), and coverage may be
judged per demand step rather than per window (``step_coverage``, see ``observe_step``).
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
    transform: str = "log"
    """How a forecast and its outcome are compared: ``log`` (``log((actual + offset) /
    (forecast + offset))``: errors proportional to the level) or ``sqrt`` (``sqrt(actual +
    offset) - sqrt(forecast + offset)``: errors like counting noise, growing with the square
    root of the level)."""
    step_coverage: bool = False
    """Judge coverage per demand step instead of per window: the caller reports, for every
    step, whether its demand stayed within the lowest band issued for a window holding it
    (:meth:`PeakCalibrator.observe_step`), and the adaptive level tracks that share instead.
    Capacity serves each step, so this is the coverage the miss cost applies to."""


TRANSFORMS = ("log", "sqrt")
"""How forecasts and outcomes may be compared (:attr:`CalibratorConfig.transform`)."""
MIN_LEVEL = 0.5
"""Lowest working level adaptive conformal inference may reach."""


def _sorted_quantile(sorted_scores: FloatArray, q: float) -> float:
    """Linear-interpolated quantile of an already sorted array (numpy's default method)."""
    pos = q * (sorted_scores.shape[0] - 1)
    lo = int(pos)
    hi = min(lo + 1, sorted_scores.shape[0] - 1)
    return float(sorted_scores[lo] + (pos - lo) * (sorted_scores[hi] - sorted_scores[lo]))


class _Group:
    """Scores of one Mondrian group (e.g. a phase within the model's bucket)."""

    def __init__(self, window: int) -> None:
        self._window = max(1, window)
        self._ring: FloatArray = np.zeros(min(self._window, 64))  # grows to the last ``window`` scores
        self._count = 0
        self.sorted: FloatArray = np.zeros(0)
        self.stale = 0
        self.version = 0

    def add(self, score: float, refresh: int) -> None:
        if self._count == self._ring.shape[0] < self._window:  # full, still below the window
            self._ring = np.concatenate([self._ring, np.zeros(min(self._count, self._window - self._count))])
        self._ring[self._count % self._ring.shape[0]] = score
        self._count += 1
        self.stale += 1
        if self.stale >= refresh or self.sorted.shape[0] < 2 * refresh:
            self.sorted = np.sort(self._ring[: min(self._count, self._ring.shape[0])])
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
        if self.config.transform not in TRANSFORMS:
            allowed = ", ".join(TRANSFORMS)
            raise ValueError(f"transform must be one of {allowed}, got {self.config.transform!r}")
        self.target = target_quantile
        self._level = target_quantile
        self._groups: dict[int, _Group] = {}
        self._hits: deque[bool] = deque(maxlen=self.config.quality_window)
        self._abs_err: deque[float] = deque(maxlen=self.config.quality_window)
        self._naive_err: deque[float] = deque(maxlen=self.config.quality_window)
        self._err_sums = [0.0, 0.0]
        self._err_adds = 0
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
        g.add(self._score(actual_peak, forecast_peak, offset), self.config.refresh)
        naive = forecast_peak if naive_peak is None or not math.isfinite(naive_peak) else naive_peak
        self._add_errors(abs(actual_peak - forecast_peak), abs(actual_peak - naive))
        if planned_peak is not None and math.isfinite(planned_peak) and not self.config.step_coverage:
            self._record_hit(actual_peak <= planned_peak + 1e-9)

    def observe_step(self, demand: float, lowest_planned: float) -> None:
        """One demand step and the lowest band issued for a window that holds it.

        Only with ``step_coverage``; a NaN band (none issued) is skipped.
        """
        if self.config.step_coverage and math.isfinite(demand) and math.isfinite(lowest_planned):
            self._record_hit(demand <= lowest_planned + 1e-9)

    def _record_hit(self, hit: bool) -> None:
        self._hits.append(hit)
        self.outcomes += 1
        self.covered += hit
        if self.config.aci_gamma > 0:
            miss = 0.0 if hit else 1.0
            # ACI: raise the level after a miss, lower it slowly after a hit.
            self._level += self.config.aci_gamma * (miss - (1.0 - self.target))
            self._level = min(max(self._level, MIN_LEVEL), 0.9995)

    def window_forecast(
        self,
        forecast_peak: float,
        model: str = "",
        notes: tuple[str, ...] = (),
        group: int = 0,
        offset: float = 1.0,
    ) -> WindowForecast | None:
        """Calibrated quantiles around ``forecast_peak``; None until enough outcomes exist."""
        g = self._scores(forecast_peak, group)
        if g is None:
            return None
        levels = sorted({0.5, 0.8, 0.9, 0.95, self.target})
        # The working ACI level stands in for the nominal one, so the decider's q* maps onto it;
        # with step coverage every level is scaled onto the working one (which may fall below
        # the others: a band per step is narrower than the window peak's).
        values = [
            self._invert(forecast_peak, _sorted_quantile(g.sorted, self._working(q)), offset) for q in levels
        ]
        peaks = tuple(float(v) for v in np.maximum.accumulate(np.maximum(values, 0.0)))
        return WindowForecast(tuple(levels), peaks, max(forecast_peak, 0.0), model, notes)

    def band(self, forecast_peak: float, group: int = 0, offset: float = 1.0) -> float:
        """Only the band at the target level (``window_forecast(...).at(target)``); NaN until
        enough outcomes exist. Cheaper: with step coverage one quantile is computed."""
        if not self.config.step_coverage:
            wf = self.window_forecast(forecast_peak, group=group, offset=offset)
            return wf.at(self.target) if wf is not None else math.nan
        g = self._scores(forecast_peak, group)
        if g is None:
            return math.nan
        return max(self._invert(forecast_peak, _sorted_quantile(g.sorted, self._level), offset), 0.0)

    def _scores(self, forecast_peak: float, group: int) -> _Group | None:
        g = self._groups.get(group)
        if g is None or g.sorted.shape[0] < self.config.min_scores:
            g = self._pooled()  # a group still short of evidence borrows from all of them
        if g.sorted.shape[0] < self.config.min_scores or not math.isfinite(forecast_peak):
            return None
        return g

    def _score(self, actual: float, forecast: float, offset: float) -> float:
        if self.config.transform == "sqrt":
            return math.sqrt(actual + offset) - math.sqrt(forecast + offset)
        return math.log((actual + offset) / (forecast + offset))

    def _invert(self, forecast: float, score: float, offset: float) -> float:
        if self.config.transform == "sqrt":
            return max(math.sqrt(forecast + offset) + score, 0.0) ** 2 - offset
        return (forecast + offset) * math.exp(score) - offset

    def _working(self, q: float) -> float:
        """The score quantile that stands for level ``q``: the working level for the target;
        with step coverage the other levels are mapped onto it piecewise linearly (the
        working level may fall below them: a band per step is narrower than a window's)."""
        if q == self.target:
            return self._level
        if not self.config.step_coverage:
            return q
        if q < self.target:
            return q * self._level / self.target
        return self._level + (q - self.target) * (1.0 - self._level) / (1.0 - self.target)

    def _pooled(self) -> _Group:
        """All groups' scores together (cached until any group re-sorts)."""
        stamp = sum(g.version for g in self._groups.values())
        if self._pool is None or self._pool_stamp != stamp:
            pool = _Group(1)
            parts = [g.sorted for g in self._groups.values()]
            pool.sorted = np.sort(np.concatenate(parts)) if parts else np.zeros(0)
            self._pool, self._pool_stamp = pool, stamp
        return self._pool

    def _add_errors(self, err: float, naive: float) -> None:
        if len(self._abs_err) == self._abs_err.maxlen:
            self._err_sums[0] -= self._abs_err[0]
            self._err_sums[1] -= self._naive_err[0]
        self._abs_err.append(err)
        self._naive_err.append(naive)
        self._err_sums[0] += err
        self._err_sums[1] += naive
        self._err_adds += 1
        if self._err_adds % self.config.quality_window == 0:  # no drift from running sums
            self._err_sums = [sum(self._abs_err), sum(self._naive_err)]

    @property
    def error_ratio(self) -> float:
        """Recent mean absolute error of the point forecast over persistence's (1.0 with none)."""
        err, naive = self._err_sums
        if naive > 1e-12:
            return err / naive
        return 1.0 if err <= 1e-12 else math.inf

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
