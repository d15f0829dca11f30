"""Fixtures for the forecaster tests."""

from __future__ import annotations

import numpy as np
import pytest


@pytest.fixture
def rng() -> np.random.Generator:
    """The one source of randomness: seeded, injected."""
    return np.random.default_rng(20261121)
