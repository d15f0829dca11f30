"""Forecast models behind one contract (see :mod:`forecaster.models.base`).

statsmodels is imported only inside this package, and only when a statsmodels model fits.
"""

from forecaster.models.base import (
    DEFAULT_QUANTILES,
    FitError,
    Forecast,
    ForecastModel,
    ModelError,
    NotFittedError,
)
from forecaster.models.registry import MODELS, make_model
from forecaster.models.seasonality import InsufficientHistoryError, detect_seasonalities
from forecaster.models.select import AutoModel, Selection

__all__ = [
    "DEFAULT_QUANTILES",
    "MODELS",
    "AutoModel",
    "FitError",
    "Forecast",
    "ForecastModel",
    "InsufficientHistoryError",
    "ModelError",
    "NotFittedError",
    "Selection",
    "detect_seasonalities",
    "make_model",
]
