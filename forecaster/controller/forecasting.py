"""Per-target forecasting state: demand history, the fitted model, the window planner.

The controller feeds it what Prometheus returned and asks for the forecast of the *peak*
demand over the planning window. All of it is synchronous CPU work with time passed in.

It works at two resolutions, like the backtest's predictive policy (one planner for both,
so a live controller and a replay of the same demand decide alike):

- **The model** runs on the range-query grid (multiples of ``step_s``). History is fetched
  in full once and incrementally afterwards, trimmed to ``history_s``; missing slots are
  carried forward before the model sees them (models reject NaN). A full fit (model
  selection included) runs every ``refit_interval_s``; between fits the model is advanced
  slot by slot with ``update`` (cheap: what lets one replica serve 1,000 targets).
- **The planner** (:class:`forecaster.window.WindowPlanner`) works per decision: every
  reconcile period it observes the freshest demand (``observe``), scores each window whose
  last decision step has passed, and turns the model's path over the window into a
  calibrated peak forecast (``window``). Decisions are numbered by ``interval_s``.
- **Warm start**: the first fit holds back the tail of the history and walks it decision by
  decision, as if live, so a freshly started controller has calibrated bands at once.
"""

from __future__ import annotations

import math
from collections import deque

import numpy as np

from forecaster.calibration import CalibratorConfig
from forecaster.controller.spec import PASpec
from forecaster.decider import ForecastQuality, ScalingPolicy, WindowForecast
from forecaster.models import MODELS, AutoModel, ModelError
from forecaster.models.base import FloatArray
from forecaster.source import RangeResult
from forecaster.window import PlannerConfig, WindowPlanner

MIN_FIT_POINTS = 16
MAX_ERROR_RATIO = ScalingPolicy.max_error_ratio
"""The decider's error gate: the planner prefers forecasts it would not gate off."""
CALIBRATION_WINDOW = 500
"""Scores kept per calibration group of each of the planner's forecasts (a day of decisions
at the default interval spread over the groups): what bounds the memory of one target."""
_TAIL_SCORES = 30
"""Window outcomes the warm start aims for beyond a season (the calibrator's minimum)."""


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
    """History, model and window planner of one PredictiveAutoscaler's demand."""

    def __init__(self, spec: PASpec, *, interval_s: float, phase: float = 0.0) -> None:
        self.step_s = spec.step_s
        self.interval_s = interval_s
        """The decision period: the planner's step."""
        self.capacity_n = max(MIN_FIT_POINTS, round(spec.history_s / spec.step_s))
        self.refit_interval_s = spec.refit_interval_s
        self.models = spec.models
        self.seasons = tuple(max(2, round(s / spec.step_s)) for s in spec.seasonalities_s) or None
        target = spec.miss_cost_ratio / (spec.miss_cost_ratio + 1.0)
        config = PlannerConfig(
            bucket_steps=max(1, round(spec.step_s / interval_s)),
            max_error_ratio=MAX_ERROR_RATIO,
            calibrator=CalibratorConfig(step_coverage=True, window=CALIBRATION_WINDOW),
        )
        self.planner = WindowPlanner(target, 0.0, config)
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
        self._path: FloatArray = np.zeros(0)
        """The model's mean path from slot ``_model_next_i`` on."""
        self._slots = 0
        """Slots the path covers: the longest window asked for so far (node-pool planning
        included), so the path is forecast once per model change, not once per window."""
        self._expected: dict[int, float] = {}
        """The latest forecast issued for each recent slot (absolute index)."""
        self._observed: deque[tuple[int, float]] = deque()
        """(decision step, demand) of the decisions whose windows may still be open."""
        self._open: dict[int, int] = {}
        """Open windows: the decision step each opened on -> the last step it covers."""
        self._last_step: int | None = None
        self.demand = math.nan
        """The demand last observed."""
        self.scored = 0
        """Window outcomes the planner has scored (warm start and live)."""

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

    def use_capacity(self, capacity_rps: float) -> None:
        """One replica's worth of demand: the least score offset of the planner's bands."""
        self.planner.min_offset = capacity_rps

    def _horizon(self, window_s: float) -> int:
        """Model slots a path must cover: the window plus the slot in progress."""
        return max(2, math.ceil(window_s / self.step_s - 1e-9) + 2)

    def fit(self, now_s: float, window_s: float) -> None:
        """Full fit (selection included); on the first fit, warm-start the planner."""
        self.fitted_at_s = now_s
        self._fits += 1
        y = ffill(self.values)
        y_start_i = self.first_i + self.values.shape[0] - y.shape[0]
        if y.shape[0] < MIN_FIT_POINTS:
            self.model, self.fit_error = None, f"only {y.shape[0]} points of history"
            return
        warm = self.scored == 0 and self._last_step is None
        # The held-back tail covers a whole season when there is one, so the calibration set
        # holds the errors of the busy part of the cycle, not just the quiet hours before now.
        season = max(self.seasons or (0,))
        window_slots = math.ceil(window_s / self.step_s - 1e-9)
        # It also holds a quality window of decisions, so the decider's error and coverage
        # gates start from a full sample rather than the first few outcomes.
        quality = math.ceil(self.planner.config.calibrator.quality_window * self.interval_s / self.step_s)
        want = max(_TAIL_SCORES + 2 * window_slots + 8, season + window_slots, quality + window_slots)
        tail = min(y.shape[0] // 2, want) if warm else 0
        # Selection scores the horizon the model is used over until the next refit (its path
        # carries the windows in between), as the backtest's predictive policy does.
        fit_n = y.shape[0] - tail
        horizon = max(2, window_slots, min(fit_n // 8, round(self.refit_interval_s / self.step_s)))
        model = AutoModel(
            self.step_s,
            horizon,
            candidates=self.models or tuple(MODELS),
            seasons=self.seasons,
            origins=2,
        )
        try:
            model.fit(y[: y.shape[0] - tail])
            self._model_next_i = y_start_i + y.shape[0] - tail
            self.model, self.fit_error = model, ""
            self._refresh_path(self._horizon(window_s))
            if tail:
                self._replay_tail(y[y.shape[0] - tail :], window_s)
        except (ModelError, ValueError, np.linalg.LinAlgError) as e:
            self.model, self.fit_error = None, f"{type(e).__name__}: {e}"

    def _refresh_path(self, slots: int) -> None:
        """Forecast at least ``slots`` slots from the first unseen one; remember what each
        was forecast."""
        assert self.model is not None
        self._slots = max(self._slots, slots)
        self._path = self.model.predict(self._slots).mean
        for j, v in enumerate(self._path.tolist()):
            self._expected[self._model_next_i + j] = v
        for old in [k for k in self._expected if k < self._model_next_i - 2]:
            del self._expected[old]

    def _replay_tail(self, tail: FloatArray, window_s: float) -> None:
        """Walk the held-back tail decision by decision, as if live: the model takes each slot
        once it is complete, and every decision observes, scores and plans."""
        assert self.model is not None
        t0_i = self._model_next_i
        n = tail.shape[0]
        t = t0_i * self.step_s
        end_s = (t0_i + n - 1) * self.step_s
        while t <= end_s + 1e-9:
            done = self.grid_index(t) - t0_i + 1  # slots complete at t
            while self._model_next_i - t0_i < min(done, n):
                k = self._model_next_i - t0_i
                self.model.update(tail[k : k + 1])
                self._model_next_i += 1
                self._refresh_path(self._horizon(window_s))
            # What a query at t returns: the rate over the step that just ended.
            now_slot = min(n - 1, max(0, self._slot_of(t - self.interval_s / 2) - t0_i))
            self.observe(t, float(tail[now_slot]))
            self.window(t, window_s)
            t += self.interval_s

    def advance(self, window_s: float) -> None:
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
            try:
                self.model.update(filled)
            except (ModelError, ValueError) as e:
                self.model, self.fit_error = None, f"update failed: {e}"
                return
        self._model_next_i = end_i
        if not new.size and self._path.size >= self._horizon(window_s):
            return  # the model is unchanged: its path stands
        try:
            self._refresh_path(self._horizon(window_s))
        except (ModelError, ValueError) as e:
            self.model, self.fit_error = None, f"predict failed: {e}"

    # -- decisions --------------------------------------------------------------------------

    def step_index(self, now_s: float) -> int:
        """The decision step ``now_s`` falls in."""
        return math.floor(now_s / self.interval_s + 1e-9)

    def _slot_of(self, t_s: float) -> int:
        """The grid slot whose value will hold the demand at ``t_s`` (the one ending next)."""
        return math.ceil(t_s / self.step_s - 1e-9)

    def observe(self, now_s: float, demand: float) -> bool:
        """The freshest demand at a decision: the rate over the step that just ended. Scores
        the windows it closes. Once per decision step (a second call in the same step is
        ignored); returns whether it was taken."""
        k = self.step_index(now_s)
        if not math.isfinite(demand) or (self._last_step is not None and k <= self._last_step):
            return False
        self._last_step, self.demand = k, demand
        expected = self._expected.get(self._slot_of(now_s - self.interval_s / 2), math.nan)
        self.planner.observe(demand, expected)
        self._observed.append((k, demand))
        for j in sorted(j for j, last in self._open.items() if last <= k):
            last = self._open.pop(j)
            # Window j plans the steps after decision j; each is reported one decision later.
            peak = max((d for s, d in self._observed if j < s <= last), default=math.nan)
            if math.isfinite(peak):
                self.planner.outcome(j, peak)
                self.scored += 1
        first_open = min(self._open, default=k)
        while self._observed and self._observed[0][0] <= first_open and self._observed[0][0] < k:
            self._observed.popleft()
        return True

    def window(
        self, now_s: float, window_s: float, *, record: bool = True
    ) -> tuple[WindowForecast | None, float]:
        """Calibrated forecast of the peak over ``[now, now + window_s]`` and its point value.

        The window spans the decision steps from this one until the next decision takes
        over; ``record`` remembers it, to be scored once its last step has been observed
        (once per step). Longer windows (node-pool planning) reuse the calibration."""
        if self.model is None or self._path.size == 0:
            return None, math.nan
        k = self.step_index(now_s)
        steps = max(1, math.ceil(window_s / self.interval_s - 1e-9))
        half = self.interval_s / 2  # each step's slot is the one holding its middle
        lo = max(self._slot_of(now_s + half), self._model_next_i) - self._model_next_i
        hi = self._slot_of(now_s + steps * self.interval_s - half) - self._model_next_i + 1
        if hi > self._path.size:  # a longer window than the decision's (node-pool planning)
            try:
                self._refresh_path(hi)
            except (ModelError, ValueError) as e:
                self.fit_error = f"predict failed: {e}"
                return None, math.nan
        path_peak = float(self._path[lo:hi].max()) if 0 <= lo < hi <= self._path.size else math.nan
        sel = self.model.selection
        keep = record and k == self._last_step and k not in self._open
        wf = self.planner.plan(
            k, path_peak, self.demand, sel.chosen if sel else "", sel.notes if sel else (), record=keep
        )
        if keep:
            self._open[k] = k + steps
        return wf, (wf.mean_peak_rps if wf is not None else path_peak)

    def quality(self) -> ForecastQuality:
        return self.planner.quality()
