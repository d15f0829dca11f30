"""One contract test run over every registered model (statsforecast-style)."""

from __future__ import annotations

import numpy as np
import pytest
from fc_series import seasonal_series

from forecaster.models import MODELS, FitError, Forecast, NotFittedError, make_model

PERIOD = 24
SEASONS = (PERIOD,)


@pytest.fixture(params=sorted(MODELS))
def name(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def test_predict_before_fit_raises(name: str) -> None:
    model = make_model(name, SEASONS)
    with pytest.raises(NotFittedError):
        model.predict(3)
    with pytest.raises(NotFittedError):
        model.update(np.ones(2))


def test_forecast_shape_and_invariants(name: str, rng: np.random.Generator) -> None:
    y = seasonal_series(rng, 10 * PERIOD, PERIOD)
    fc = make_model(name, SEASONS).fit(y).predict(12)
    assert isinstance(fc, Forecast)
    assert fc.mean.shape == (12,)
    assert fc.bands.shape == (len(fc.quantiles), 12)
    assert np.all(np.diff(fc.bands, axis=0) >= -1e-9), "bands must be monotone in the level"
    assert np.all(fc.bands >= 0)
    assert np.all(fc.mean >= 0)
    assert fc.model == name


def test_update_moves_the_origin(name: str, rng: np.random.Generator) -> None:
    y = seasonal_series(rng, 10 * PERIOD, PERIOD)
    fitted = make_model(name, SEASONS).fit(y[:-6])
    updated = fitted.update(y[-6:]).predict(4)
    refit = make_model(name, SEASONS).fit(y).predict(4)
    # An update is a cheap approximation of a refit on the same data: close, not identical.
    scale = float(np.mean(y))
    assert np.max(np.abs(updated.mean - refit.mean)) < 0.6 * scale


@pytest.mark.parametrize("bad", [[1.0, np.nan, 2.0, 3.0, 4.0], [1.0, -2.0, 3.0, 4.0, 5.0]])
def test_bad_values_are_rejected_with_index(name: str, bad: list[float]) -> None:
    y = np.array(bad * 12)
    with pytest.raises(FitError, match="index 1"):
        make_model(name, (4,)).fit(y)


def test_seasonal_models_beat_the_flat_mean(rng: np.random.Generator) -> None:
    y = seasonal_series(rng, 12 * PERIOD, PERIOD)
    train, test = y[: 10 * PERIOD], y[10 * PERIOD :]
    flat = float(np.mean(np.abs(test - train.mean())))
    for name in ("seasonal_naive", "fourier", "ets", "mstl"):
        fc = make_model(name, SEASONS).fit(train).predict(test.shape[0])
        assert float(np.mean(np.abs(fc.mean - test))) < 0.7 * flat, name


@pytest.mark.parametrize("name", ["fourier", "seasonal_naive", "burst"])
def test_band_coverage_is_near_nominal(name: str, rng: np.random.Generator) -> None:
    """Rolling-origin coverage of the 10-90 % band, one step ahead, within a few points."""
    y = seasonal_series(rng, 30 * PERIOD, PERIOD, level=200.0, amplitude=0.1 if name == "burst" else 0.5)
    model = make_model(name, SEASONS).fit(y[: 10 * PERIOD])
    inside = []
    for v in y[10 * PERIOD :]:
        fc = model.predict(1)
        lo, hi = fc.quantile(0.1)[0], fc.quantile(0.9)[0]
        inside.append(lo <= v <= hi)
        model.update(np.array([v]))
    assert abs(float(np.mean(inside)) - 0.8) < 0.06


def test_forecast_quantile_interpolates_and_clips() -> None:
    fc = Forecast(np.array([1.0]), (0.1, 0.9), np.array([[0.0], [10.0]]))
    assert fc.quantile(0.5)[0] == pytest.approx(5.0)
    assert fc.quantile(0.99)[0] == 10.0
    with pytest.raises(ValueError, match="outside"):
        fc.quantile(1.0)


def test_forecast_rejects_nan() -> None:
    with pytest.raises(ValueError, match="NaN"):
        Forecast(np.array([np.nan]), (0.5,), np.array([[1.0]]))


def test_unknown_model_names_the_allowed_ones() -> None:
    with pytest.raises(ValueError, match="allowed: seasonal_naive"):
        make_model("prophet")
