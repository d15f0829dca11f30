"""Holt-Winters / ETS (additive damped trend, additive season) on log demand.

statsmodels estimates the smoothing parameters (heuristic initialization: three times faster
than the default and free of its ConvergenceWarning on traffic data); the state recursion is
then run here in numpy, so ``update`` advances level, trend and season per observation with
the fitted parameters and a refit is needed only rarely.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any, Self

import numpy as np

from forecaster.models.base import (
    DEFAULT_QUANTILES,
    FitError,
    FloatArray,
    Forecast,
    NotFittedError,
    as_series,
    check_horizon,
)
from forecaster.models.conformal import from_log, residual_bands, sqrt_growth, to_log


@dataclass
class _State:
    alpha: float
    beta: float
    gamma: float
    phi: float
    level: float
    trend: float
    season: FloatArray  # the last m seasonal states, oldest first


class HoltWinters:
    """ETS(A, Ad, A) in log space; ``season_length`` in steps (0: no season)."""

    name = "ets"

    def __init__(
        self,
        season_length: int = 0,
        quantiles: tuple[float, ...] = DEFAULT_QUANTILES,
        calibration_size: int = 2016,
    ) -> None:
        self.season_length = season_length
        self.quantiles = quantiles
        self.calibration_size = calibration_size
        self._state: _State | None = None
        self._residuals: FloatArray = np.zeros(0)

    def fit(self, y: FloatArray) -> Self:
        m = self.season_length
        arr = as_series(y, min_length=max(10, 2 * m + 1))
        z = to_log(arr)
        params = self._estimate(z)
        seasonal = m > 1
        self._state = _State(
            alpha=float(params["smoothing_level"]),
            beta=float(params["smoothing_trend"]),
            gamma=float(params["smoothing_seasonal"]) if seasonal else 0.0,
            phi=float(params["damping_trend"]),
            level=float(params["initial_level"]),
            trend=float(params["initial_trend"]),
            season=np.asarray(params["initial_seasons"], dtype=np.float64) if seasonal else np.zeros(1),
        )
        self._residuals = np.zeros(0)
        self._advance(z)
        return self

    def _estimate(self, z: FloatArray) -> dict[str, Any]:
        # Lazy: statsmodels costs seconds to import; only an ETS fit pays for it.
        from statsmodels.tsa.holtwinters import ExponentialSmoothing  # noqa: PLC0415

        m = self.season_length
        with warnings.catch_warnings():
            # Heuristic init avoids the optimizer warnings; anything left is a fit failure.
            warnings.simplefilter("error")
            try:
                model = ExponentialSmoothing(
                    z,
                    trend="add",
                    damped_trend=True,
                    seasonal="add" if m > 1 else None,
                    seasonal_periods=m if m > 1 else None,
                    initialization_method="heuristic",
                )
                params: dict[str, Any] = dict(model.fit().params)
            except (Warning, ValueError, np.linalg.LinAlgError) as e:
                raise FitError(f"ets: {type(e).__name__}: {e}") from e
        for key in ("smoothing_level", "smoothing_trend", "damping_trend", "initial_level"):
            value = params.get(key)
            if not isinstance(value, float | np.floating) or not np.isfinite(value):
                raise FitError(f"ets: parameter {key} is {value!r}")
        return params

    def _advance(self, z_new: FloatArray) -> None:
        assert self._state is not None
        s = self._state
        season = list(s.season)
        m = len(season)
        res = np.empty_like(z_new)
        lvl, tr = s.level, s.trend
        for i, v in enumerate(z_new):
            sea = season[-m]
            prior = lvl + s.phi * tr
            res[i] = v - (prior + sea)
            new_lvl = s.alpha * (v - sea) + (1 - s.alpha) * prior
            tr = s.beta * (new_lvl - lvl) + (1 - s.beta) * s.phi * tr
            season.append(s.gamma * (v - prior) + (1 - s.gamma) * sea)
            lvl = new_lvl
            if len(season) > 2 * m:
                del season[:m]
        s.level, s.trend, s.season = lvl, tr, np.asarray(season[-m:])
        self._residuals = np.concatenate([self._residuals, res])[-self.calibration_size :]

    def update(self, y_new: FloatArray) -> Self:
        if self._state is None:
            raise NotFittedError("ets: call fit() first")
        self._advance(to_log(as_series(y_new, min_length=0)))
        return self

    def predict(self, h: int) -> Forecast:
        if self._state is None:
            raise NotFittedError("ets: call fit() first")
        check_horizon(h)
        s = self._state
        damp = np.cumsum(s.phi ** np.arange(1, h + 1))
        m = s.season.shape[0]
        point = s.level + damp * s.trend + np.array([s.season[j % m] for j in range(h)])
        bands = residual_bands(point, self._residuals, self.quantiles, sqrt_growth(h))
        return Forecast(from_log(point), self.quantiles, from_log(bands), self.name)
