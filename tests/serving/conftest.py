"""Fixtures: the example repository (built once per session) and a loopback server per test."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from serving_testlib import Client, config, deps_for, start

from serving import example


@pytest.fixture(scope="session")
def example_repo_once(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return example.build(tmp_path_factory.mktemp("models"))


@pytest.fixture
def example_repo(example_repo_once: Path, tmp_path: Path) -> Path:
    """A private copy, so a test may add or remove versions."""
    return Path(shutil.copytree(example_repo_once, tmp_path / "models"))


@pytest.fixture
async def client(example_repo: Path) -> AsyncIterator[Client]:
    c = await start(deps_for(config(example_repo)))
    yield c
    await c.close()
