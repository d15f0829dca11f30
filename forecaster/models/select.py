"""Automatic model selection per workload by rolling-origin backtest, with fallback.

For each origin (the last ``origins`` windows of ``horizon`` steps) every candidate is fitted
on the data before the origin and scored by mean absolute error over the window. The best
candidate is refitted on everything; if that fails, the next best is tried, and the notes
record each fallback so a decision reason can say so.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Self

import numpy as np

from forecaster.models.base import (
    DEFAULT_QUANTILES,
    FitError,
    FloatArray,
    Forecast,
    ForecastModel,
    NotFittedError,
    as_series,
)
from forecaster.models.clean import fill_gaps
from forecaster.models.registry import MODELS, SEASONAL_ONLY, make_model
from forecaster.models.seasonality import detect_seasonalities

# statsmodels cost grows with length and period: keep its fits to what runs in under a second.
MAX_STATSMODELS_POINTS = 6000
MAX_ETS_SEASON = 500


@dataclass(frozen=True)
class Selection:
    """The outcome of one selection: scores per candidate (inf = failed) and the winner."""

    chosen: str
    scores: dict[str, float]
    seasons: tuple[int, ...]
    notes: tuple[str, ...] = field(default=())


def candidate_names(n: int, seasons: tuple[int, ...], allowed: tuple[str, ...]) -> list[str]:
    """Candidates worth trying on ``n`` points with these seasons."""
    out: list[str] = []
    for name in allowed:
        if name in SEASONAL_ONLY and not seasons:
            continue
        if name in ("ets", "mstl") and n > MAX_STATSMODELS_POINTS:
            continue
        if name == "ets" and seasons and seasons[0] > MAX_ETS_SEASON:
            continue
        out.append(name)
    return out


def rolling_origin_mae(
    y: FloatArray, name: str, seasons: tuple[int, ...], horizon: int, origins: int
) -> float:
    """Mean absolute error of ``name`` over ``origins`` consecutive held-out windows."""
    errors: list[float] = []
    for k in range(origins, 0, -1):
        cut = y.shape[0] - k * horizon
        if cut < 4:
            continue
        try:
            fc = make_model(name, seasons).fit(y[:cut]).predict(horizon)
        except FitError:
            return float("inf")
        errors.append(float(np.mean(np.abs(fc.mean - y[cut : cut + horizon]))))
    return float(np.mean(errors)) if errors else float("inf")


class AutoModel:
    """Detects seasons, fills gaps, selects by rolling origin, falls back on fit failure."""

    name = "auto"

    def __init__(
        self,
        step_s: float,
        horizon: int,
        *,
        candidates: tuple[str, ...] = tuple(MODELS),
        origins: int = 3,
        quantiles: tuple[float, ...] = DEFAULT_QUANTILES,
        seasons: tuple[int, ...] | None = None,
    ) -> None:
        unknown = [c for c in candidates if c not in MODELS]
        if unknown:
            raise ValueError(f"unknown model {unknown[0]!r}; allowed: {', '.join(MODELS)}")
        self.step_s = step_s
        self.horizon = horizon
        self.candidates = candidates
        self.origins = origins
        self.quantiles = quantiles
        self.fixed_seasons = seasons
        self.selection: Selection | None = None
        self._model: ForecastModel | None = None

    def fit(self, y: FloatArray) -> Self:
        arr = as_series(y, min_length=4)
        seasons = self.fixed_seasons
        if seasons is None:
            seasons = tuple(s.period_steps for s in detect_seasonalities(arr, self.step_s))
        filled, n_filled = fill_gaps(arr, seasons[0] if seasons else 0)
        notes = [f"filled {n_filled} gap points"] if n_filled else []
        names = candidate_names(filled.shape[0], seasons, self.candidates)
        # A single candidate needs no contest: skip the rolling-origin fits.
        scores = (
            {n: rolling_origin_mae(filled, n, seasons, self.horizon, self.origins) for n in names}
            if len(names) > 1
            else dict.fromkeys(names, float("nan"))
        )
        ranked = sorted(names, key=lambda n: scores[n])
        for name in ranked:
            try:
                self._model = make_model(name, seasons, self.quantiles).fit(filled)
            except FitError as e:
                notes.append(f"{name} failed ({e}); falling back")
                continue
            self.selection = Selection(name, scores, seasons, tuple(notes))
            return self
        raise FitError(f"no candidate model could be fitted (tried {', '.join(ranked) or 'none'})")

    def update(self, y_new: FloatArray) -> Self:
        if self._model is None:
            raise NotFittedError("auto: call fit() first")
        self._model.update(y_new)
        return self

    def predict(self, h: int) -> Forecast:
        if self._model is None or self.selection is None:
            raise NotFittedError("auto: call fit() first")
        fc = self._model.predict(h)
        return Forecast(fc.mean, fc.quantiles, fc.bands, fc.model, self.selection.notes + fc.notes)
