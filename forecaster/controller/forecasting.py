"""Per-target forecasting state: demand history, the fitted model, the peak calibrator.

The controller feeds it what Prometheus returned and asks for the forecast of the *peak*
demand over the planning window. All of it is synchronous CPU work with time passed in.

- History lives on the range-query grid (multiples of ``step_s``); it is fetched in full once
  and incrementally afterwards, and trimmed to ``history_s``. Missing slots are carried
  forward before the model sees them (models reject NaN).
- A full fit (model selection included) runs every ``refit_interval_s``; between fits the
  model is advanced point by point with ``update`` (cheap: what lets one replica serve 1,000
  targets).
- Calibration: the first fit holds back the tail of the history, then walks through it
  issuing window forecasts and recording their outcomes, so a freshly started controller
  has calibrated bands at once instead of after ``min_scores`` live windows. Live windows are
  settled as soon as the data that closes them has arrived.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

import numpy as np

from forecaster.calibration import PeakCalibrator
from forecaster.controller.spec import PASpec
from forecaster.decider import ForecastQuality, WindowForecast
from forecaster.models import MODELS, AutoModel, ModelError
from forecaster.models.base import FloatArray
from forecaster.source import RangeResult

MIN_FIT_POINTS = 16
LEVEL_BINS = (0.7, 1.3)
"""Window forecasts are calibrated per band of their level relative to typical demand:
busy hours, quiet hours and the ramps between them err differently."""


@dataclass(frozen=True)
class _Pending:
    open_i: int
    """Absolute grid index of the first slot of the window."""
    close_i: int
    """Absolute grid index of the last slot."""
    point: float
    planned: float | None
    naive: float
    """Persistence's forecast (the demand observed when the window opened)."""
    group: int
    """Calibration group (the level band of ``point``)."""


def ffill(values: FloatArray) -> FloatArray:
    """NaN slots take the last finite value; leading NaNs are dropped."""
    finite = np.isfinite(values)
    if not finite.any():
        return np.zeros(0)
    first = int(np.argmax(finite))
    v = values[first:]
    idx = np.where(np.isfinite(v), np.arange(v.shape[0]), 0)
    np.maximum.accumulate(idx, out=idx)
    return np.asarray(v[idx], dtype=np.float64)


class TargetForecaster:
    """History, model and calibration of one PredictiveAutoscaler's demand."""

    def __init__(self, spec: PASpec, *, phase: float = 0.0) -> None:
        self.step_s = spec.step_s
        self.capacity_n = max(MIN_FIT_POINTS, round(spec.history_s / spec.step_s))
        self.refit_interval_s = spec.refit_interval_s
        self.models = spec.models
        self.seasons = tuple(max(2, round(s / spec.step_s)) for s in spec.seasonalities_s) or None
        self.calibrator = PeakCalibrator(spec.miss_cost_ratio / (spec.miss_cost_ratio + 1.0))
        self.values: FloatArray = np.zeros(0)
        self.first_i = 0
        """Absolute grid index (timestamp / step) of ``values[0]``."""
        self.model: AutoModel | None = None
        self.fitted_at_s: float | None = None
        self.phase = phase % 1.0
        """In [0, 1): shortens the first refit interval by up to half, so targets started
        together do not all refit in the same cycle."""
        self._fits = 0
        self.fit_error = ""
        self._model_next_i = 0
        """Absolute index of the first slot the model has not consumed."""
        self._pending: deque[_Pending] = deque()
        self.typical = math.nan
        """Typical demand: an exponential average over about a season (a day when unknown)."""
        span = max(self.seasons) if self.seasons else round(86400.0 / self.step_s)
        self._typical_alpha = 1.0 / max(span, 1)
        self.scored = 0
        """Window outcomes recorded in the calibrator (warm start and live)."""

    # -- history --------------------------------------------------------------------------

    def grid_index(self, t_s: float) -> int:
        return math.floor(t_s / self.step_s + 1e-9)

    def next_range(self, now_s: float) -> tuple[float, float] | None:
        """The ``(start, end)`` still to fetch up to ``now_s``; None when nothing new."""
        end_i = self.grid_index(now_s)
        start_i = self.first_i + self.values.shape[0] if self.values.size else end_i - self.capacity_n + 1
        if start_i > end_i:
            return None
        return start_i * self.step_s, end_i * self.step_s

    def ingest(self, result: RangeResult) -> None:
        """Append a fetched range (which must start right after what we hold, or anew)."""
        start_i = round(result.start_s / self.step_s)
        if self.values.size and start_i != self.first_i + self.values.shape[0]:
            self.values, self.first_i = np.zeros(0), start_i
        if not self.values.size:
            self.first_i = start_i
        self.values = np.concatenate([self.values, result.values])
        drop = self.values.shape[0] - self.capacity_n
        if drop > 0:
            self.values, self.first_i = self.values[drop:], self.first_i + drop

    def has_data(self) -> bool:
        return bool(np.isfinite(self.values).any())

    def latest(self, max_age_steps: int = 3) -> float | None:
        """The most recent finite demand within ``max_age_steps`` slots, else None."""
        tail = self.values[-max_age_steps:]
        finite = tail[np.isfinite(tail)]
        return float(finite[-1]) if finite.size else None

    # -- model ----------------------------------------------------------------------------

    def needs_fit(self, now_s: float) -> bool:
        if self.fitted_at_s is None:
            return True
        interval = self.refit_interval_s * (1.0 - 0.5 * self.phase if self._fits == 1 else 1.0)
        return now_s - self.fitted_at_s >= interval

    def fit(self, now_s: float, window_steps: int) -> None:
        """Full fit (selection included); on the first fit, warm-start the calibrator."""
        self.fitted_at_s = now_s
        self._fits += 1
        y = ffill(self.values)
        y_start_i = self.first_i + self.values.shape[0] - y.shape[0]
        if y.shape[0] < MIN_FIT_POINTS:
            self.model, self.fit_error = None, f"only {y.shape[0]} points of history"
            return
        warm = self.scored < self.calibrator.config.min_scores
        # The held-back tail covers a whole season when there is one, so the calibration set
        # holds the errors of the busy part of the cycle, not just the quiet hours before now.
        season = max(self.seasons or (0,))
        want = max(self.calibrator.config.min_scores + 2 * window_steps + 8, season + window_steps)
        tail = min(y.shape[0] // 2, want) if warm else 0
        model = AutoModel(
            self.step_s,
            max(2, window_steps),
            candidates=self.models or tuple(MODELS),
            seasons=self.seasons,
            origins=2,
        )
        try:
            model.fit(y[: y.shape[0] - tail])
            if math.isnan(self.typical):
                self._track(y[: y.shape[0] - tail])
            self._model_next_i = y_start_i + y.shape[0] - tail
            self.model, self.fit_error = model, ""
            if tail:
                self._replay_tail(y[y.shape[0] - tail :], window_steps)
        except (ModelError, ValueError, np.linalg.LinAlgError) as e:
            self.model, self.fit_error = None, f"{type(e).__name__}: {e}"

    def _replay_tail(self, tail: FloatArray, window_steps: int) -> None:
        """Walk the held-back tail as if live: advance the model a slot, then issue and score
        the window that opens on that slot (see :meth:`window`)."""
        assert self.model is not None
        n = tail.shape[0]
        for j in range(n):
            self.model.update(tail[j : j + 1])
            self._track(tail[j : j + 1])
            if j + window_steps < n:
                seen = float(tail[j])
                point = max(float(self.model.predict(window_steps).mean.max()), seen)
                actual = float(tail[j : j + window_steps + 1].max())
                self.calibrator.observe(point, None, actual, naive_peak=seen, group=self._group(point))
                self.scored += 1
        self._model_next_i += n

    def advance(self) -> None:
        """Feed the model every slot it has not seen yet (carried forward over gaps)."""
        if self.model is None:
            return
        end_i = self.first_i + self.values.shape[0]
        lo = self._model_next_i - self.first_i
        if lo < 0:  # history was reset under the model: refit at the next chance
            self.fitted_at_s = None
            return
        new = self.values[lo:]
        if new.size:
            last = self.values[:lo][np.isfinite(self.values[:lo])]
            seed = last[-1:] if last.size else np.zeros(1)
            filled = ffill(np.concatenate([seed, new]))[1:]
            self._track(filled)
            try:
                self.model.update(filled)
            except (ModelError, ValueError) as e:
                self.model, self.fit_error = None, f"update failed: {e}"
        self._model_next_i = end_i

    def _track(self, values: FloatArray) -> None:
        """Advance the typical-demand average over ``values`` (finite, in order)."""
        a, typ = self._typical_alpha, self.typical
        for v in values.tolist():
            typ = v if math.isnan(typ) else typ + a * (v - typ)
        self.typical = typ

    def _group(self, point: float) -> int:
        if not math.isfinite(self.typical) or self.typical <= 0:
            return 0
        return sum(point > b * self.typical for b in LEVEL_BINS)

    # -- forecasts and their outcomes -----------------------------------------------------

    def window(
        self, now_s: float, window_s: float, *, record: bool = True
    ) -> tuple[WindowForecast | None, float]:
        """Calibrated forecast of the peak over ``[now, now + window_s]`` and its point value.

        The window is also remembered (``record``), to be scored when the data that closes it
        arrives. Longer windows (node-pool planning) reuse the calibration of the decision window.
        """
        steps = max(1, math.ceil(window_s / self.step_s - 1e-9))
        if self.model is None:
            return None, math.nan
        try:
            fc = self.model.predict(steps)
        except (ModelError, ValueError) as e:
            self.fit_error = f"predict failed: {e}"
            return None, math.nan
        # The window opens on the slot just observed: its peak is at least what that slot holds.
        seen = self.latest() or 0.0
        point = max(float(fc.mean.max()), seen)
        sel = self.model.selection
        group = self._group(point)
        wf = self.calibrator.window_forecast(point, sel.chosen if sel else "", fc.notes, group=group)
        planned = wf.at(self.calibrator.target) if wf is not None else None
        open_i = self.grid_index(now_s)
        if record:
            self._pending.append(
                _Pending(open_i, open_i + steps, point, planned, seen, group)
            )
        return wf, point

    def settle(self) -> int:
        """Score every remembered window whose data is complete; returns how many."""
        end_i = self.first_i + self.values.shape[0] - 1
        done = 0
        while self._pending and self._pending[0].close_i <= end_i:
            p = self._pending.popleft()
            lo, hi = p.open_i - self.first_i, p.close_i - self.first_i + 1
            seg = self.values[max(lo, 0) : hi]
            seg = seg[np.isfinite(seg)]
            if lo >= 0 and seg.size:
                self.calibrator.observe(
                    p.point, p.planned, float(seg.max()), naive_peak=p.naive, group=p.group
                )
                done += 1
        self.scored += done
        return done

    def quality(self) -> ForecastQuality:
        return self.calibrator.quality()
