"""Session set-up shared by every test.

The whole test session runs inside a private network namespace (created here, before any
thread starts): loopback plus a veth pair carrying 10.200.0.1, which exists nowhere else. The
local control plane needs a non-loopback address for the aggregator, and every other test
gets a network that cannot reach anything outside the session.

Fixtures give tests the real parts: ``cluster`` (session-wide control plane),
``start_prometheus`` / ``start_alertmanager`` (one per test, on free loopback ports).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from prescale.stack import cluster as cluster_mod
from prescale.stack import netns
from prescale.stack import prometheus as prom
from prescale.stack.errors import StackError

_NETNS_KEY = pytest.StashKey[netns.Netns | str]()

def pytest_configure(config: pytest.Config) -> None:
    if os.environ.get("PRESCALE_TEST_NETNS", "1") == "0":
        config.stash[_NETNS_KEY] = "PRESCALE_TEST_NETNS=0: tests run in the host network namespace"
        return
    try:
        config.stash[_NETNS_KEY] = netns.enter_private()
    except StackError as e:
        config.stash[_NETNS_KEY] = str(e)


def pytest_report_header(config: pytest.Config) -> str:
    ns = config.stash[_NETNS_KEY]
    if isinstance(ns, netns.Netns):
        return f"network: private namespace (inode {ns.inode}), private address {ns.address}"
    return f"network: host namespace ({ns})"


@pytest.fixture(autouse=True)
def _no_leaked_tasks() -> Iterator[None]:
    """Fail a test whose event loop is left with pending tasks (kopf's guard, simplified)."""
    yield
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        return
    pending = [t for t in asyncio.all_tasks(loop) if not t.done() and t is not asyncio.current_task()]
    assert not pending, f"test leaked asyncio tasks: {pending}"


@pytest.fixture(scope="session")
def private_address(pytestconfig: pytest.Config) -> str:
    ns = pytestconfig.stash[_NETNS_KEY]
    if not isinstance(ns, netns.Netns):
        pytest.fail(f"the private network namespace is not available: {ns}")
    return ns.address


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory, private_address: str) -> Iterator[cluster_mod.Cluster]:
    """A real control plane (etcd, kube-apiserver, KCM, scheduler, KWOK with 2 GPU nodes)."""
    cfg = cluster_mod.ClusterConfig(work_dir=tmp_path_factory.mktemp("cluster"), address=private_address)
    with running_cluster(cfg) as c:
        yield c


@contextlib.contextmanager
def running_cluster(cfg: cluster_mod.ClusterConfig) -> Iterator[cluster_mod.Cluster]:
    """Start a control plane from ``cfg`` and stop it afterwards; missing binaries fail the test
    (or skip it with PRESCALE_SKIP_CLUSTER=1) with what to run."""
    missing = cluster_mod.missing_binaries(cfg.bin_dir)
    if missing:
        if os.environ.get("PRESCALE_SKIP_CLUSTER") == "1":
            pytest.skip(f"PRESCALE_SKIP_CLUSTER=1 and binaries missing: {', '.join(missing)}")
        pytest.fail(f"control-plane binaries missing in {cfg.bin_dir}: {', '.join(missing)}; "
                    "run scripts/build-k8s.sh (make test does), or set PRESCALE_SKIP_CLUSTER=1")
    try:
        c = cluster_mod.start(cfg)
    except StackError as e:
        pytest.fail(f"local control plane failed to start:\n{e}")
    try:
        yield c
    finally:
        c.stop()


StartCluster = Callable[[cluster_mod.ClusterConfig], cluster_mod.Cluster]


@pytest.fixture
def start_cluster() -> Iterator[StartCluster]:
    """Start a control plane of the test's own (stopped at teardown), beside the session's."""
    with contextlib.ExitStack() as stack:
        yield lambda cfg: stack.enter_context(running_cluster(cfg))


StartPrometheus = Callable[..., prom.Prometheus]


@pytest.fixture
def start_prometheus(tmp_path: Path) -> Iterator[StartPrometheus]:
    """Start a real Prometheus: ``start_prometheus(config_mapping, backfill=[Series...])``."""
    if shutil.which("prometheus") is None:
        pytest.fail("prometheus is not installed: run scripts/setup.sh")
    started: list[prom.Prometheus] = []

    def start(config: Mapping[str, Any] | None = None,
              backfill: list[prom.Series] | None = None) -> prom.Prometheus:
        work = tmp_path / f"prometheus-{len(started)}"
        if backfill:
            prom.backfill(work / "tsdb", backfill)
        p = prom.start_prometheus(work, config or {"global": {"scrape_interval": "1s"}})
        started.append(p)
        return p

    yield start
    for p in started:
        p.stop()


@pytest.fixture
def start_alertmanager(tmp_path: Path) -> Iterator[Callable[[Mapping[str, Any]], prom.Alertmanager]]:
    started: list[prom.Alertmanager] = []

    def start(config: Mapping[str, Any]) -> prom.Alertmanager:
        am = prom.start_alertmanager(tmp_path / f"alertmanager-{len(started)}", config)
        started.append(am)
        return am

    yield start
    for am in started:
        am.stop()
