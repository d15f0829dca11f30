"""Seasonality detection, gap and level-shift handling, selection with fallback."""

from __future__ import annotations

from typing import Self

import numpy as np
import pytest
from fc_series import seasonal_series

from forecaster.models import MODELS, AutoModel, FitError, Forecast, detect_seasonalities
from forecaster.models.base import FloatArray
from forecaster.models.clean import fill_gaps, gap_mask, last_level_shift
from forecaster.models.seasonality import InsufficientHistoryError, requested_seasonalities


def test_daily_season_is_detected_and_noise_has_none(rng: np.random.Generator) -> None:
    y = seasonal_series(rng, 6 * 288, 288)  # six days at 5 minutes
    found = detect_seasonalities(y, 300.0)
    assert [s.name for s in found] == ["daily"]
    assert found[0].period_steps == 288
    assert detect_seasonalities(rng.poisson(100, 6 * 288).astype(float), 300.0) == ()


def test_weekly_season_is_detected_from_daily_totals(rng: np.random.Generator) -> None:
    t = np.arange(28 * 288)
    weekend = ((t // 288) % 7 >= 5).astype(float)
    rate = 100 * (1 + 0.5 * np.sin(2 * np.pi * t / 288)) * (1 - 0.5 * weekend)
    names = [s.name for s in detect_seasonalities(rng.poisson(rate).astype(float), 300.0)]
    assert names == ["daily", "weekly"]


def test_requested_season_needs_two_cycles() -> None:
    with pytest.raises(InsufficientHistoryError, match="'weekly' needs 2 cycles"):
        requested_seasonalities(("weekly",), 1000, 300.0)
    with pytest.raises(ValueError, match="allowed: hourly, daily, weekly"):
        requested_seasonalities(("monthly",), 1000, 300.0)
    assert requested_seasonalities(("hourly",), 200, 60.0)[0].period_steps == 60


def test_zero_runs_in_busy_traffic_are_gaps_but_quiet_ones_are_not() -> None:
    busy = np.full(100, 50.0)
    busy[40:45] = 0.0
    assert gap_mask(busy).sum() == 5
    filled, n = fill_gaps(busy)
    assert n == 5
    assert np.all(filled == 50.0)
    quiet = np.tile([0.0, 0.0, 0.0, 0.0, 3.0], 20)
    assert gap_mask(quiet).sum() == 0


def test_level_shift_is_located() -> None:
    y = np.concatenate([np.full(200, 10.0), np.full(100, 40.0)])
    assert last_level_shift(y, 50) == 200
    assert last_level_shift(np.full(300, 10.0), 50) is None


def test_auto_model_picks_a_seasonal_model_on_seasonal_data(rng: np.random.Generator) -> None:
    y = seasonal_series(rng, 8 * 96, 96)
    auto = AutoModel(900.0, 24, candidates=("seasonal_naive", "fourier", "burst")).fit(y)
    assert auto.selection is not None
    assert auto.selection.chosen in ("seasonal_naive", "fourier")
    assert auto.selection.scores["burst"] > auto.selection.scores[auto.selection.chosen]
    assert auto.predict(4).mean.shape == (4,)


class _FailsOnFullHistory:
    """Fits short prefixes (so it wins the contest) but fails on the whole series."""

    name = "fragile"

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._y: FloatArray | None = None

    def fit(self, y: FloatArray) -> Self:
        if y.shape[0] > self.limit:
            raise FitError("fragile: too long")
        self._y = y
        return self

    def update(self, y_new: FloatArray) -> Self:
        return self

    def predict(self, h: int) -> Forecast:
        assert self._y is not None
        return Forecast(np.full(h, 100.0), (0.5,), np.full((1, h), 100.0), self.name)


def test_fit_failure_falls_back_and_says_so(
    monkeypatch: pytest.MonkeyPatch, rng: np.random.Generator
) -> None:
    y = np.full(200, 100.0) + rng.normal(0, 1, 200)
    monkeypatch.setitem(MODELS, "fragile", lambda seasons, q: _FailsOnFullHistory(limit=196))
    auto = AutoModel(60.0, 5, candidates=("fragile", "burst"), seasons=()).fit(y)
    assert auto.selection is not None
    assert auto.selection.chosen == "burst"
    assert any("fragile failed" in n for n in auto.predict(2).notes)
