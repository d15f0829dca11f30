"""Detect seasonal periods from the data instead of assuming them.

A candidate period P (hourly, daily, weekly) is kept when the autocorrelation of log demand
at lag P is strong and clearly higher than at the lags that would explain it otherwise:
half the period (a plain smooth trend also correlates there) and, for weekly, one day (a
daily pattern alone already correlates at seven days).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from forecaster.models.base import FloatArray, ModelError

HOUR_S = 3600
DAY_S = 86400
WEEK_S = 7 * DAY_S
CANDIDATE_PERIODS_S: dict[str, int] = {"hourly": HOUR_S, "daily": DAY_S, "weekly": WEEK_S}
MIN_CYCLES = 2
MIN_SEASON_STEPS = 4


class InsufficientHistoryError(ModelError):
    """A requested seasonality needs more history than the series has."""


@dataclass(frozen=True)
class Seasonality:
    """A detected or requested season."""

    name: str
    """``hourly``, ``daily`` or ``weekly``."""
    period_steps: int
    """Season length in model steps."""
    strength: float
    """Autocorrelation at the period (0..1); 1.0 for a requested one."""


def autocorrelation(z: FloatArray, lag: int) -> float:
    """Sample autocorrelation of ``z`` at ``lag`` (0 when undefined)."""
    if lag <= 0 or lag >= z.shape[0]:
        return 0.0
    d = z - z.mean()
    denom = float(np.dot(d, d))
    if denom <= 0.0:
        return 0.0
    return float(np.dot(d[:-lag], d[lag:]) / denom)


def detrend(z: FloatArray, period: int) -> FloatArray:
    """``z`` minus its centred moving average over one period (removes level shifts)."""
    ma = np.convolve(z, np.ones(period) / period, mode="valid")
    off = period // 2
    return z[off : off + ma.shape[0]] - ma


def _strength(z: FloatArray, p: int) -> tuple[float, float]:
    """Autocorrelation at ``p`` and at ``p // 2`` after removing the level."""
    d = detrend(z, p)
    return autocorrelation(d, p), autocorrelation(d, p // 2)


def detect_seasonalities(
    y: FloatArray, step_s: float, *, threshold: float = 0.3, margin: float = 0.05
) -> tuple[Seasonality, ...]:
    """Seasons present in ``y`` (sampled every ``step_s`` seconds), shortest first.

    A period needs at least two full cycles of history (after detrending) to be considered.
    Weekly is judged on daily totals (lag 7 days against lag 3 days), because a strong daily
    pattern alone already correlates at seven days.
    """
    z = np.log1p(np.asarray(y, dtype=np.float64))
    found: list[Seasonality] = []
    for name, period_s in CANDIDATE_PERIODS_S.items():
        p = round(period_s / step_s)
        if p < MIN_SEASON_STEPS or z.shape[0] < (MIN_CYCLES + 1) * p:
            continue
        if name == "weekly":
            per_day = round(DAY_S / step_s)
            days = np.log1p(np.asarray(y)[: z.shape[0] // per_day * per_day].reshape(-1, per_day).sum(axis=1))
            r, rival = autocorrelation(days, 7), autocorrelation(days, 3)
        else:
            r, rival = _strength(z, p)
        if r >= threshold and r > rival + margin:
            found.append(Seasonality(name, p, r))
    return tuple(found)


def requested_seasonalities(names: tuple[str, ...], n_points: int, step_s: float) -> tuple[Seasonality, ...]:
    """Seasons a user asked for, checked against the history length (two cycles each)."""
    out: list[Seasonality] = []
    for name in names:
        if name not in CANDIDATE_PERIODS_S:
            allowed = ", ".join(CANDIDATE_PERIODS_S)
            raise ValueError(f"unknown seasonality {name!r}; allowed: {allowed}")
        p = round(CANDIDATE_PERIODS_S[name] / step_s)
        have_s = n_points * step_s
        if n_points < MIN_CYCLES * p:
            raise InsufficientHistoryError(
                f"seasonality {name!r} needs {MIN_CYCLES} cycles ({MIN_CYCLES * p * step_s / 3600:.0f} h) "
                f"of history; the series covers {have_s / 3600:.1f} h"
            )
        out.append(Seasonality(name, p, 1.0))
    return tuple(out)
