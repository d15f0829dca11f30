"""Synthetic series shared by the forecaster tests (seeded through an injected Generator)."""

from __future__ import annotations

import numpy as np

from forecaster.models.base import FloatArray


def seasonal_series(
    rng: np.random.Generator, n: int, period: int, level: float = 100.0, amplitude: float = 0.5
) -> FloatArray:
    """Poisson counts around a sinusoidal profile of ``period`` steps."""
    t = np.arange(n)
    rate = level * (1.0 + amplitude * np.sin(2 * np.pi * t / period))
    return rng.poisson(rate).astype(np.float64)
