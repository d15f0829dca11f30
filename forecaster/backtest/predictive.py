"""prescale's own policy under replay: model forecast -> calibrated window peak -> decide().

Demand is averaged into model buckets (``model_step_s``); when a bucket completes the model
state is updated (cheap), every ``refit_every_s`` it is refitted, and every
``reselect_every`` refits the model is re-chosen by rolling-origin backtest. The
:class:`WindowPlanner` turns the model path into a calibrated forecast of the peak over
``[t, t + lead]``; window outcomes are known only ``lead`` later, so everything is causal.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import numpy as np

from forecaster.backtest.policies import observed, replicas_for
from forecaster.backtest.replay import Cluster
from forecaster.decider import DeciderState, Observation, ScalingPolicy, decide
from forecaster.estimation import LeadTimeEstimator
from forecaster.models import MODELS, AutoModel, ModelError
from forecaster.models.base import FloatArray
from forecaster.window import PlannerConfig, WindowPlanner

DAY_S = 86400.0


@dataclass(frozen=True)
class PredictiveConfig:
    """How the predictive policy forecasts under replay."""

    model_step_s: float
    """Resolution the models work at (a multiple of the control step)."""
    refit_every_s: float
    """Full refit period; between refits the model state is updated per bucket."""
    reselect_every: int = 4
    """Re-run model selection every this many refits."""
    history_s: float = 14 * DAY_S
    """Trailing history a fit uses."""
    min_fit_buckets: int = 24
    """Buckets needed before the first fit."""
    candidates: tuple[str, ...] = tuple(MODELS)
    """Models selection may choose from."""
    seasons: tuple[int, ...] | None = None
    """Season lengths in model steps, when requested; None: detected at each selection."""
    planner: PlannerConfig = field(default_factory=PlannerConfig)
    """Window-peak calibration settings."""

    @classmethod
    def for_trace(cls, span_s: float, bucket_s: float, step_s: float) -> PredictiveConfig:
        """Defaults by trace length: 5-minute models over days, control-step models over hours."""
        base = 300.0 if span_s >= 2 * DAY_S else step_s
        model_step = math.ceil(max(base, bucket_s) / step_s) * step_s
        refit = min(12 * 3600.0, max(300.0, span_s / 12))
        planner = PlannerConfig(bucket_steps=max(1, round(bucket_s / step_s)))
        return cls(model_step_s=model_step, refit_every_s=refit, planner=planner)


@dataclass
class PredictiveRecord:
    """Per-step forecast record (for coverage and the plot)."""

    point: FloatArray
    planned: FloatArray
    reasons: list[str] = field(default_factory=list)


class Predictive:
    """The predictive policy; the decider does the deciding."""

    name = "predictive"

    def __init__(
        self, lam: FloatArray, step_s: float, lead_s: float, policy: ScalingPolicy, config: PredictiveConfig
    ) -> None:
        self.lam, self.step_s, self.policy, self.config = lam, step_s, policy, config
        self.k = round(config.model_step_s / step_s)
        self.lead = LeadTimeEstimator(prior_s=lead_s)
        planner = replace(config.planner, max_error_ratio=policy.max_error_ratio)
        self.planner = WindowPlanner(policy.planning_quantile, policy.capacity_per_replica_rps, planner)
        self.state = DeciderState()
        self.model: AutoModel | None = None
        self._path = np.zeros(0)
        self._path_start = 0  # bucket index of _path[0]
        self._prev_value = math.nan  # forecast of bucket _path_start - 1 (from the previous path)
        self._fits = 0
        self._next_fit_bucket = config.min_fit_buckets
        n = lam.shape[0]
        self.record = PredictiveRecord(np.full(n, np.nan), np.full(n, np.nan))
        self._lead_at = np.zeros(n, dtype=np.int64)

    def initial(self) -> int:
        return replicas_for(float(self.lam[0]), self.policy.capacity_per_replica_rps)

    def _buckets(self, upto: int) -> FloatArray:
        nb = upto // self.k
        first = max(0, nb - int(self.config.history_s / self.config.model_step_s))
        buckets = self.lam[first * self.k : nb * self.k].reshape(-1, self.k).mean(axis=1)
        return np.asarray(buckets, dtype=np.float64)

    def _on_bucket(self, b: int, i: int) -> None:
        """Bucket ``b - 1`` just completed at step ``i``: refit or update, then re-forecast."""
        lead_buckets = math.ceil(self.lead.estimate_s() / self.config.model_step_s) + 2
        try:
            model = self.model
            if b >= self._next_fit_bucket or model is None:
                model = self._refit(i)
                self._next_fit_bucket = b + max(
                    1, round(self.config.refit_every_s / self.config.model_step_s)
                )
            else:
                model.update(self._buckets(i)[-1:])
            old = self._expected_bucket(b - 1)
            self._path = model.predict(lead_buckets).mean
            self._path_start = b
            self._prev_value = old
        except ModelError:
            self.model = None
            self._path = np.zeros(0)

    def _refit(self, i: int) -> AutoModel:
        y = self._buckets(i)
        horizon = max(2, min(y.shape[0] // 8, round(self.config.refit_every_s / self.config.model_step_s)))
        sel = self.model.selection if self.model is not None else None
        reuse = sel is not None and self._fits % self.config.reselect_every != 0
        cand = (sel.chosen,) if reuse and sel else self.config.candidates
        seasons = sel.seasons if reuse and sel else self.config.seasons
        model = AutoModel(self.config.model_step_s, horizon, candidates=cand, seasons=seasons, origins=2)
        self.model = model.fit(y)
        self._fits += 1
        return self.model

    def _expected_bucket(self, b: int) -> float:
        """The forecast for model bucket ``b`` (NaN when no path covers it)."""
        j = b - self._path_start
        if 0 <= j < self._path.size:
            return float(self._path[j])
        return self._prev_value if j == -1 else math.nan

    def _path_peak(self, i: int, lead_steps: int) -> float:
        """Peak of the model path over steps ``[i, i + lead]`` (NaN when not covered)."""
        b0, b1 = i // self.k, (i + lead_steps) // self.k
        lo, hi = b0 - self._path_start, b1 - self._path_start + 1
        if self._path.size == 0 or lo < 0 or hi > self._path.size:
            return math.nan
        return float(self._path[lo:hi].max())

    def _learn(self, i: int, cluster: Cluster) -> None:
        for req, ready in cluster.promoted:
            self.lead.observe(req * self.step_s, ready * self.step_s)
        if i == 0:
            return
        self.planner.observe(float(self.lam[i - 1]), self._expected_bucket((i - 1) // self.k))
        j = i - 1 - int(self._lead_at[i - 1])
        # The window opened at step j closed with step i - 1: its outcome is now known.
        if j >= 0:
            self.planner.outcome(j, float(self.lam[j:i].max()))

    def decide(self, i: int, cluster: Cluster) -> int:
        if i > 0 and i % self.k == 0 and i // self.k >= self.config.min_fit_buckets:
            self._on_bucket(i // self.k, i)
        lead_steps = math.ceil(self.lead.estimate_s() / self.step_s - 1e-9)
        self._lead_at[i] = lead_steps
        self._learn(i, cluster)
        sel = self.model.selection if self.model is not None else None
        wf = self.planner.plan(
            i,
            self._path_peak(i, lead_steps),
            observed(self.lam, i),
            sel.chosen if sel else "",
            sel.notes if sel else (),
        )
        if wf is not None:
            self.record.point[i] = wf.mean_peak_rps
            self.record.planned[i] = wf.at(self.policy.planning_quantile)
        obs = Observation(observed(self.lam, i), cluster.requested)
        decision, self.state = decide(
            wf, self.planner.quality(), obs, self.policy, self.state, now=i * self.step_s
        )
        self.record.reasons.append(decision.reason)
        return decision.replicas if decision.valid else cluster.requested
