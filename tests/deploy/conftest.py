"""Fixtures for the packaging tests."""

from __future__ import annotations

from pathlib import Path

import pytest
from deploylib import helm_binary


@pytest.fixture(scope="session")
def helm() -> Path:
    """The pinned helm binary (installed by scripts/install-helm.sh when missing)."""
    return helm_binary()
