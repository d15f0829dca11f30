"""Flags of ``prescale forecaster`` and how targets are found in the API."""

from __future__ import annotations

import pytest
from aiohttp.test_utils import TestClient, TestServer
from controller_fakes import FakeKube
from prometheus_client import CollectorRegistry

from forecaster.actuators.workload import read_workload, resolve
from forecaster.controller.cli import config_from_args, main, make_app
from forecaster.controller.metrics import ControllerMetrics
from forecaster.controller.spec import TargetRef


def test_flags_become_a_config() -> None:
    cfg = config_from_args(
        [
            "--prometheus-url",
            "http://p:9090",
            "--interval",
            "5",
            "--namespace",
            "ml",
            "--metrics-address",
            "127.0.0.1:9999",
            "--no-leader-elect",
            "--identity",
            "x",
        ]
    )
    assert (cfg.prometheus_url, cfg.interval_s, cfg.namespace) == ("http://p:9090", 5.0, "ml")
    assert (cfg.metrics_host, cfg.metrics_port, cfg.leader_elect, cfg.identity) == (
        "127.0.0.1",
        9999,
        False,
        "x",
    )


def test_bad_flags_exit_2_with_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--prometheus-url", "http://p", "--renew-period", "20", "--lease-duration", "10"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0
    assert "--renew-period=20.0" in err


def test_targets_resolve_to_their_scalable_objects() -> None:
    assert resolve(TargetRef("apps/v1", "StatefulSet", "db"), "a") == (
        "/apis/apps/v1/namespaces/a/statefulsets/db",
        "StatefulSet",
    )
    assert resolve(TargetRef("serving.kserve.io/v1beta1", "InferenceService", "llm"), "a") == (
        "/apis/apps/v1/namespaces/a/deployments/llm-predictor",
        "Deployment",
    )
    assert (
        resolve(TargetRef("example.com/v1", "Widget", "w"), "a")[0]
        == "/apis/example.com/v1/namespaces/a/widgets/w"
    )


async def test_other_kinds_are_read_through_their_scale_subresource() -> None:
    kube = FakeKube()
    kube.put(
        "/apis/example.com/v1/namespaces/a/widgets/w",
        {"metadata": {"name": "w"}, "spec": {"replicas": 3}, "status": {"replicas": 2}},
    )
    w = await read_workload(kube, TargetRef("example.com/v1", "Widget", "w"), "a")
    assert (w.replicas, w.ready_replicas) == (3, 2)


async def test_the_metrics_app_serves_the_registry() -> None:
    registry = CollectorRegistry()
    metrics = ControllerMetrics().register(registry)
    metrics.leader = True
    async with TestClient(TestServer(make_app(registry))) as client:
        resp = await client.get("/metrics")
        assert resp.status == 200
        assert "prescale_controller_leader 1.0" in await resp.text()
        assert (await client.get("/healthz")).status == 200
