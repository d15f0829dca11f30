"""Seasonal naive: the value one season ago. The baseline every other model must beat."""

from __future__ import annotations

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
from forecaster.models.conformal import from_log, residual_bands, to_log


class SeasonalNaive:
    """``y[t + h] = y[t + h - m]`` for season length ``m`` steps (``m=1``: last value)."""

    name = "seasonal_naive"

    def __init__(
        self,
        season_length: int = 1,
        quantiles: tuple[float, ...] = DEFAULT_QUANTILES,
        calibration_size: int = 2016,
    ) -> None:
        if season_length < 1:
            raise ValueError(f"season_length must be >= 1, got {season_length}")
        self.season_length = season_length
        self.quantiles = quantiles
        self.calibration_size = calibration_size
        self._z: FloatArray | None = None

    def fit(self, y: FloatArray) -> Self:
        m = self.season_length
        arr = as_series(y, min_length=m + 1)
        if arr.shape[0] < m + 1:
            raise FitError(f"seasonal naive with season {m} needs > {m} points")
        self._z = to_log(arr)
        return self

    def update(self, y_new: FloatArray) -> Self:
        if self._z is None:
            raise NotFittedError("seasonal_naive: call fit() first")
        self._z = np.concatenate([self._z, to_log(as_series(y_new, min_length=0))])
        return self

    def predict(self, h: int) -> Forecast:
        if self._z is None:
            raise NotFittedError("seasonal_naive: call fit() first")
        check_horizon(h)
        m = self.season_length
        z = self._z
        last = z[-m:]
        point = np.array([last[j % m] for j in range(h)])
        recent = z[-(self.calibration_size + m) :]
        residuals = recent[m:] - recent[:-m]
        growth = np.array([1.0 + j // m for j in range(h)], dtype=np.float64) ** 0.5
        bands = residual_bands(point, residuals, self.quantiles, growth)
        return Forecast(from_log(point), self.quantiles, from_log(bands), self.name)
