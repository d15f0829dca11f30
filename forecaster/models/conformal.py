"""Split-conformal bands from a model's own recent residuals.

A band at level q is ``point + Q_q(residuals) * growth(h)``, where the residuals are the
model's errors on the most recent ``window`` observations (recent, because traffic drifts).
Models that work in log space pass log-space points and residuals and map back afterwards,
so bands scale with the level of demand.
"""

from __future__ import annotations

import numpy as np

from forecaster.models.base import FloatArray

MIN_RESIDUALS = 8


def residual_offsets(residuals: FloatArray, quantiles: tuple[float, ...], point: FloatArray) -> FloatArray:
    """Quantiles of the residuals at each level (the band offsets before horizon growth)."""
    finite = residuals[np.isfinite(residuals)]
    if finite.shape[0] < MIN_RESIDUALS:
        # Too few residuals to calibrate: a symmetric band of the spread of the point itself,
        # wide on purpose; the online calibrator downstream measures and corrects it.
        scale = float(np.std(point)) + 1.0
        finite = np.array([-2.0 * scale, -scale, 0.0, scale, 2.0 * scale])
    return np.asarray(np.quantile(finite, np.asarray(quantiles)), dtype=np.float64)


def apply_offsets(point: FloatArray, offsets: FloatArray, growth: FloatArray | None = None) -> FloatArray:
    """Bands ``point + offset * growth``, monotone in the level so rounding never crosses them."""
    g = np.ones_like(point) if growth is None else growth
    bands = point[None, :] + offsets[:, None] * g[None, :]
    return np.maximum.accumulate(bands, axis=0)


def residual_bands(
    point: FloatArray,
    residuals: FloatArray,
    quantiles: tuple[float, ...],
    growth: FloatArray | None = None,
) -> FloatArray:
    """Bands of shape ``(len(quantiles), h)`` around ``point``.

    ``growth`` (shape ``(h,)``) widens the residual quantiles with the horizon for models
    whose error compounds (level models); seasonal models pass ``None`` (constant width).
    """
    return apply_offsets(point, residual_offsets(residuals, quantiles, point), growth)


def sqrt_growth(h: int, cap: float = 4.0) -> FloatArray:
    """sqrt(horizon) widening, capped: random-walk-like error growth for level models."""
    return np.minimum(np.sqrt(np.arange(1, h + 1, dtype=np.float64)), cap)


def to_log(y: FloatArray) -> FloatArray:
    """Variance-stabilizing transform for counts; the inverse is :func:`from_log`."""
    return np.log1p(y)


def from_log(z: FloatArray) -> FloatArray:
    """Inverse of :func:`to_log`, clipped at zero and guarded against overflow."""
    return np.maximum(np.expm1(np.minimum(z, 700.0)), 0.0)
