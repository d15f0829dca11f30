"""The model registry: name -> factory. One dict, no switch over names elsewhere.

A factory takes the season lengths (in steps, shortest first) and the band quantiles and
returns an unfitted model; a model that cannot use the given seasons still accepts them.
"""

from __future__ import annotations

from collections.abc import Callable

from forecaster.models.base import DEFAULT_QUANTILES, ForecastModel
from forecaster.models.burst import BurstLevel
from forecaster.models.ets import HoltWinters
from forecaster.models.fourier import FourierRegression
from forecaster.models.mstl import MSTLModel
from forecaster.models.naive import SeasonalNaive

ModelFactory = Callable[[tuple[int, ...], tuple[float, ...]], ForecastModel]


def _naive(seasons: tuple[int, ...], q: tuple[float, ...]) -> ForecastModel:
    return SeasonalNaive(season_length=seasons[0] if seasons else 1, quantiles=q)


def _ets(seasons: tuple[int, ...], q: tuple[float, ...]) -> ForecastModel:
    return HoltWinters(season_length=seasons[0] if seasons else 0, quantiles=q)


def _mstl(seasons: tuple[int, ...], q: tuple[float, ...]) -> ForecastModel:
    return MSTLModel(season_lengths=seasons, quantiles=q)


def _fourier(seasons: tuple[int, ...], q: tuple[float, ...]) -> ForecastModel:
    return FourierRegression(season_lengths=seasons, quantiles=q)


def _burst(seasons: tuple[int, ...], q: tuple[float, ...]) -> ForecastModel:
    return BurstLevel(quantiles=q)


MODELS: dict[str, ModelFactory] = {
    "seasonal_naive": _naive,
    "ets": _ets,
    "mstl": _mstl,
    "fourier": _fourier,
    "burst": _burst,
}
"""Every model, in fallback order of preference when selection has no evidence."""

SEASONAL_ONLY = frozenset({"mstl"})
"""Models that cannot run without a seasonality."""


def make_model(
    name: str, seasons: tuple[int, ...] = (), quantiles: tuple[float, ...] = DEFAULT_QUANTILES
) -> ForecastModel:
    """Build a registered model; unknown names list what is allowed."""
    factory = MODELS.get(name)
    if factory is None:
        raise ValueError(f"unknown model {name!r}; allowed: {', '.join(MODELS)}")
    return factory(seasons, quantiles)
