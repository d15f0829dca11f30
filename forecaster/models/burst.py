"""Short-horizon model for bursty traffic: recent level plus the recent spread of bursts.

For traffic whose seconds are mostly empty (LLM code completion), no seasonal model helps
over a few minutes; what matters is how high bursts go relative to the current level. The
mean is an exponentially weighted level; the bands are quantiles of recent deviations from
that level, so a burst as large as the recent ones is inside the band.
"""

from __future__ import annotations

from typing import Self

import numpy as np

from forecaster.models.base import (
    DEFAULT_QUANTILES,
    FloatArray,
    Forecast,
    NotFittedError,
    as_series,
    check_horizon,
)
from forecaster.models.conformal import residual_bands


class BurstLevel:
    """EWMA level (``alpha`` per step) with bands from the last ``window`` deviations."""

    name = "burst"

    def __init__(
        self,
        alpha: float = 0.1,
        window: int = 240,
        quantiles: tuple[float, ...] = DEFAULT_QUANTILES,
    ) -> None:
        if not 0.0 < alpha <= 1.0:
            raise ValueError(f"alpha must be in (0, 1], got {alpha}")
        if window < 2:
            raise ValueError(f"window must be >= 2, got {window}")
        self.alpha = alpha
        self.window = window
        self.quantiles = quantiles
        self._level: float | None = None
        self._dev: FloatArray = np.zeros(0)

    def fit(self, y: FloatArray) -> Self:
        arr = as_series(y, min_length=2)
        self._level = float(arr[0])
        self._dev = np.zeros(0)
        self._advance(arr[1:])
        return self

    def _advance(self, arr: FloatArray) -> None:
        assert self._level is not None
        lvl, a = self._level, self.alpha
        tail = arr[-(self.window * 4) :]
        # Points older than the window only move the level; skip their deviations.
        for v in arr[: arr.shape[0] - tail.shape[0]]:
            lvl += a * (v - lvl)
        dev = np.empty_like(tail)
        for i, v in enumerate(tail):
            dev[i] = v - lvl
            lvl += a * (v - lvl)
        self._level = lvl
        self._dev = np.concatenate([self._dev, dev])[-self.window :]

    def update(self, y_new: FloatArray) -> Self:
        if self._level is None:
            raise NotFittedError("burst: call fit() first")
        self._advance(as_series(y_new, min_length=0))
        return self

    def predict(self, h: int) -> Forecast:
        if self._level is None:
            raise NotFittedError("burst: call fit() first")
        check_horizon(h)
        point = np.full(h, self._level)
        bands = np.maximum(residual_bands(point, self._dev, self.quantiles), 0.0)
        return Forecast(np.maximum(point, 0.0), self.quantiles, bands, self.name)
