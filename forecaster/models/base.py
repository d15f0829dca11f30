"""The forecast-model contract: hyperparameters in ``__init__``, ``fit(y) -> Self``,
``update(y_new) -> Self`` and ``predict(h) -> Forecast``.

Every model works on a uniformly spaced series of non-negative demand (one value per model
step); it knows nothing about seconds except through seasonal lengths given in steps. Bands
are split-conformal: quantiles of the model's own recent residuals, so their coverage is
measured, not assumed (see :mod:`forecaster.models.conformal`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, Self

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]

DEFAULT_QUANTILES: tuple[float, ...] = (0.05, 0.1, 0.5, 0.8, 0.9, 0.95, 0.98, 0.99)


class ModelError(Exception):
    """Base class of forecast-model errors."""


class NotFittedError(ModelError):
    """``predict`` or ``update`` was called before ``fit``."""


class FitError(ModelError):
    """A model could not be fitted to this series (too short, degenerate, solver failure)."""


@dataclass(frozen=True)
class Forecast:
    """An ``h``-step forecast starting one step after the last observation.

    Invariants: ``mean`` has shape ``(h,)``; ``bands`` has shape ``(len(quantiles), h)``;
    quantiles are strictly increasing in (0, 1) and each band row is >= the previous one;
    nothing is NaN and nothing is negative (demand cannot be).
    """

    mean: FloatArray
    """Point forecast per step, in the series' own units."""
    quantiles: tuple[float, ...]
    """Probability levels of the rows of ``bands``."""
    bands: FloatArray
    """Quantile forecasts, one row per level in ``quantiles``."""
    model: str = ""
    """Name of the model that produced it (for decision reasons and reports)."""
    notes: tuple[str, ...] = field(default=())
    """Fallbacks taken on the way, e.g. ``"mstl failed: ...; used fourier"``."""

    def __post_init__(self) -> None:
        if self.bands.shape != (len(self.quantiles), self.mean.shape[0]):
            raise ValueError(f"bands shape {self.bands.shape} does not match quantiles x horizon")
        if not (np.all(np.isfinite(self.mean)) and np.all(np.isfinite(self.bands))):
            raise ValueError("forecast contains NaN or Inf")

    @property
    def horizon(self) -> int:
        """Number of steps forecast."""
        return int(self.mean.shape[0])

    def quantile(self, q: float) -> FloatArray:
        """The band at level ``q``, linearly interpolated between stored levels.

        Levels outside the stored range are clipped to the nearest stored band: the
        caller asked for more certainty than was calibrated, and we say so by not
        extrapolating.
        """
        if not 0.0 < q < 1.0:
            raise ValueError(f"quantile {q} is outside (0, 1)")
        levels = np.asarray(self.quantiles)
        out = np.empty(self.horizon)
        for j in range(self.horizon):
            out[j] = np.interp(q, levels, self.bands[:, j])
        return out


class ForecastModel(Protocol):
    """What every model implements; the contract test runs over every registered model."""

    name: str

    def fit(self, y: FloatArray) -> Self:
        """Estimate the model on the whole series ``y`` (oldest first)."""
        ...

    def update(self, y_new: FloatArray) -> Self:
        """Append observations and advance the state without a full refit (cheap)."""
        ...

    def predict(self, h: int) -> Forecast:
        """Forecast the ``h`` steps after the last observation."""
        ...


def as_series(y: npt.ArrayLike, *, min_length: int = 2) -> FloatArray:
    """Validate a demand series: 1-D, finite, non-negative, long enough."""
    arr = np.asarray(y, dtype=np.float64)
    if arr.ndim != 1:
        raise FitError(f"series must be 1-D, got shape {arr.shape}")
    if arr.shape[0] < min_length:
        raise FitError(f"series has {arr.shape[0]} points; at least {min_length} needed")
    bad = np.flatnonzero(~np.isfinite(arr) | (arr < 0))
    if bad.size:
        raise FitError(
            f"series value at index {int(bad[0])} is {arr[bad[0]]}; values must be finite and >= 0"
        )
    return arr


def check_horizon(h: int) -> None:
    """Reject non-positive horizons with a message naming the value."""
    if h < 1:
        raise ValueError(f"horizon must be >= 1, got {h}")
