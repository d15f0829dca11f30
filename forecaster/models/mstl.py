"""MSTL with several seasonalities (statsmodels) plus a smoothed deseasonalized level.

MSTL splits log demand into one seasonal component per period and a trend/remainder. The
forecast repeats the last cycle of each seasonal component and carries the deseasonalized
level forward with simple exponential smoothing, which ``update`` advances per observation.
"""

from __future__ import annotations

import warnings
from typing import Self

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


class MSTLModel:
    """MSTL over ``season_lengths`` (steps); needs two full cycles of the longest."""

    name = "mstl"

    def __init__(
        self,
        season_lengths: tuple[int, ...] = (),
        level_alpha: float = 0.3,
        quantiles: tuple[float, ...] = DEFAULT_QUANTILES,
        calibration_size: int = 2016,
    ) -> None:
        self.season_lengths = tuple(sorted(season_lengths))
        self.level_alpha = level_alpha
        self.quantiles = quantiles
        self.calibration_size = calibration_size
        self._profile: FloatArray | None = None  # summed seasonal states for one longest cycle
        self._phase = 0
        self._level = 0.0
        self._residuals: FloatArray = np.zeros(0)

    def fit(self, y: FloatArray) -> Self:
        if not self.season_lengths:
            raise FitError("mstl: no seasonality given or detected")
        longest = self.season_lengths[-1]
        arr = as_series(y, min_length=2 * longest + 1)
        z = to_log(arr)
        seasonal = self._decompose(z)
        # One cycle of the longest season holds every shorter one's phase as well.
        self._profile = seasonal[-longest:].copy()
        self._phase = 0
        deseason = z - seasonal
        self._level = float(deseason[max(0, z.shape[0] - self.calibration_size - 1)])
        self._residuals = np.zeros(0)
        tail = z[-self.calibration_size :]
        start = z.shape[0] - tail.shape[0]
        self._phase = (start - (z.shape[0] - longest)) % longest
        self._advance(tail)
        return self

    def _decompose(self, z: FloatArray) -> FloatArray:
        # Lazy: statsmodels costs seconds to import; only an MSTL fit pays for it.
        from statsmodels.tsa.seasonal import MSTL  # noqa: PLC0415

        periods = self.season_lengths if len(self.season_lengths) > 1 else self.season_lengths[0]
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            try:
                res = MSTL(z, periods=periods).fit()
            except (Warning, ValueError, np.linalg.LinAlgError) as e:
                raise FitError(f"mstl: {type(e).__name__}: {e}") from e
        seasonal = np.asarray(res.seasonal, dtype=np.float64)
        total = seasonal.sum(axis=1) if seasonal.ndim == 2 else seasonal
        if not np.all(np.isfinite(total)):
            raise FitError("mstl: decomposition produced non-finite values")
        return total

    def _advance(self, z_new: FloatArray) -> None:
        assert self._profile is not None
        m = self._profile.shape[0]
        lvl, a = self._level, self.level_alpha
        res = np.empty_like(z_new)
        for i, v in enumerate(z_new):
            d = v - self._profile[self._phase]
            res[i] = d - lvl
            lvl += a * res[i]
            self._phase = (self._phase + 1) % m
        self._level = lvl
        self._residuals = np.concatenate([self._residuals, res])[-self.calibration_size :]

    def update(self, y_new: FloatArray) -> Self:
        if self._profile is None:
            raise NotFittedError("mstl: call fit() first")
        self._advance(to_log(as_series(y_new, min_length=0)))
        return self

    def predict(self, h: int) -> Forecast:
        if self._profile is None:
            raise NotFittedError("mstl: call fit() first")
        check_horizon(h)
        m = self._profile.shape[0]
        idx = (self._phase + np.arange(h)) % m
        point = self._level + self._profile[idx]
        bands = residual_bands(point, self._residuals, self.quantiles, sqrt_growth(h, cap=2.0))
        return Forecast(from_log(point), self.quantiles, from_log(bands), self.name)
