"""Fixtures for the controller's cluster tests: the CRD (once per session) and a namespace per test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from controller_cluster_lib import install_crd

from prescale.stack.cluster import Cluster


@pytest.fixture(scope="session")
def crd(cluster: Cluster) -> Iterator[None]:
    """The PredictiveAutoscaler CRD, installed once and removed at the end of the session."""
    install_crd(cluster)
    yield
    cluster.kubectl(
        "delete",
        "crd",
        "predictiveautoscalers.autoscaling.prescale.dev",
        "--wait=false",
        "--ignore-not-found",
    )


@pytest.fixture
def namespace(cluster: Cluster, crd: None, request: pytest.FixtureRequest) -> Iterator[str]:
    name = request.node.name.replace("_", "-")[:50].lower().strip("-")
    cluster.kubectl("create", "namespace", name)
    yield name
    cluster.kubectl("delete", "namespace", name, "--wait=false")
