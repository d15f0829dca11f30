"""Fourier regression (numpy least squares) on log demand, with an online level offset.

The seasonal shape comes from sin/cos terms for each detected season; the level follows the
data through an exponentially weighted offset of recent residuals, updated per observation,
so level shifts are absorbed without a refit and full refits can be rare (the amortization
the 1,000-workload benchmark relies on).
"""

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
from forecaster.models.conformal import apply_offsets, from_log, residual_offsets, to_log

REQUANTILE_EVERY = 60
"""Recompute band offsets after this many new residuals (quantiles are the costly part)."""


def fourier_design(
    t: FloatArray, season_lengths: tuple[int, ...], harmonics: int, trend_scale: float
) -> FloatArray:
    """Columns: intercept, optional linear trend (when ``trend_scale > 0``), sin/cos terms."""
    cols = [np.ones_like(t)]
    if trend_scale > 0:
        cols.append(t / trend_scale)
    for m in season_lengths:
        for k in range(1, min(harmonics, m // 2) + 1):
            w = 2.0 * np.pi * k * t / m
            cols.extend((np.sin(w), np.cos(w)))
    return np.column_stack(cols)


class FourierRegression:
    """Least-squares Fourier model; ``season_lengths`` in steps, ``level_alpha`` per step."""

    name = "fourier"

    def __init__(
        self,
        season_lengths: tuple[int, ...] = (),
        *,
        harmonics: int = 8,
        trend: bool = False,
        level_alpha: float = 0.2,
        quantiles: tuple[float, ...] = DEFAULT_QUANTILES,
        calibration_size: int = 2016,
    ) -> None:
        if not 0.0 <= level_alpha <= 1.0:
            raise ValueError(f"level_alpha must be in [0, 1], got {level_alpha}")
        self.season_lengths = season_lengths
        self.harmonics = harmonics
        self.trend = trend
        self.level_alpha = level_alpha
        self.quantiles = quantiles
        self.calibration_size = calibration_size
        self._beta: FloatArray | None = None
        self._n = 0
        self._trend_scale = 0.0
        self._offset = 0.0
        self._residuals: FloatArray = np.zeros(0)
        self._offsets: FloatArray | None = None
        self._stale = 0

    def _design(self, start: int, stop: int) -> FloatArray:
        t = np.arange(start, stop, dtype=np.float64)
        return fourier_design(t, self.season_lengths, self.harmonics, self._trend_scale)

    def fit(self, y: FloatArray) -> Self:
        arr = as_series(y, min_length=4)
        longest = max(self.season_lengths, default=1)
        if arr.shape[0] < longest:
            raise FitError(f"fourier: {arr.shape[0]} points cover less than one season of {longest}")
        z = to_log(arr)
        self._n = 0
        self._trend_scale = float(arr.shape[0]) if self.trend else 0.0
        x = self._design(0, arr.shape[0])
        beta, *_ = np.linalg.lstsq(x, z, rcond=None)
        if not np.all(np.isfinite(beta)):
            raise FitError("fourier: least squares returned non-finite coefficients")
        self._beta = np.asarray(beta, dtype=np.float64)
        self._offset = 0.0
        self._residuals = np.zeros(0)
        self._offsets = None
        tail = min(arr.shape[0], self.calibration_size)
        self._n = arr.shape[0] - tail
        self._advance(z[-tail:])
        return self

    @classmethod
    def fit_many(cls, ys: FloatArray, **params: object) -> list[FourierRegression]:
        """Fit one model per row of ``ys`` (same timestamps): one shared least-squares solve.

        Workloads queried over the same window share the design matrix, so a fleet's fit is a
        single matrix product with its pseudo-inverse instead of one solve per workload.
        """
        if ys.ndim != 2:
            raise FitError(f"fit_many needs a 2-D array (workloads x time), got shape {ys.shape}")
        models = [cls(**params) for _ in range(ys.shape[0])]  # type: ignore[arg-type]
        if not models:
            return models
        first = models[0]
        n = ys.shape[1]
        first._trend_scale = float(n) if first.trend else 0.0
        pinv = np.linalg.pinv(first._design(0, n))
        zs = to_log(np.stack([as_series(row, min_length=4) for row in ys]))
        betas = zs @ pinv.T
        tail = min(n, first.calibration_size)
        for m, z, beta in zip(models, zs, betas, strict=True):
            m._trend_scale, m._beta, m._n = first._trend_scale, beta, n - tail
            m._advance(z[-tail:])
        return models

    def _advance(self, z_new: FloatArray) -> None:
        """One-step-ahead residuals (what the band is calibrated on) and the level offset."""
        assert self._beta is not None
        base = self._design(self._n, self._n + z_new.shape[0]) @ self._beta
        res = np.empty_like(z_new)
        off, a = self._offset, self.level_alpha
        for i in range(z_new.shape[0]):
            res[i] = z_new[i] - base[i] - off
            off += a * res[i]
        self._offset = off
        self._n += z_new.shape[0]
        self._residuals = np.concatenate([self._residuals, res])[-self.calibration_size :]
        self._stale += z_new.shape[0]
        if self._stale >= REQUANTILE_EVERY:
            self._offsets = None

    def update(self, y_new: FloatArray) -> Self:
        if self._beta is None:
            raise NotFittedError("fourier: call fit() first")
        self._advance(to_log(as_series(y_new, min_length=0)))
        return self

    def predict(self, h: int) -> Forecast:
        if self._beta is None:
            raise NotFittedError("fourier: call fit() first")
        check_horizon(h)
        point = self._design(self._n, self._n + h) @ self._beta + self._offset
        if self._offsets is None:
            self._offsets = residual_offsets(self._residuals, self.quantiles, point)
            self._stale = 0
        bands = apply_offsets(point, self._offsets)
        return Forecast(from_log(point), self.quantiles, from_log(bands), self.name)
