"""deploy/serving-queue-proxy: the bundled server with the queue proxy in front, built with
kustomize, schema-valid, restricted, and with drain timing and ports that fit the server's."""

from __future__ import annotations

from pathlib import Path

import pytest
from deploylib import K8S_VERSIONS, ROOT, Obj, docs, kubectl, run, schema_errors, security_findings

from serving.cli import parse_config

OVERLAY = ROOT / "deploy" / "serving-queue-proxy"
VERSIONS = [v for v in K8S_VERSIONS if tuple(map(int, v.split("."))) >= (1, 30)]
"""The serving manifests use the preStop sleep action, on by default from 1.30."""


@pytest.fixture(scope="module")
def built(helm: Path) -> list[Obj]:
    done = run([kubectl(helm), "kustomize", str(OVERLAY)])
    assert done.returncode == 0, done.stderr
    return docs(done.stdout)


def _one(objects: list[Obj], kind: str, name: str = "prescale-serving") -> Obj:
    (found,) = [o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name]
    return found


def _container(pod: Obj, name: str) -> Obj:
    return next(c for c in pod["containers"] if c["name"] == name)


def _flags(args: list[str]) -> dict[str, str]:
    return dict(a.removeprefix("-").split("=", 1) for a in args)


def _seconds(duration: str) -> float:
    units = {"ms": 0.001, "s": 1.0}
    unit = "ms" if duration.endswith("ms") else "s"
    return float(duration.removesuffix(unit)) * units[unit]


@pytest.mark.parametrize("version", VERSIONS)
def test_schema_valid_and_restricted(built: list[Obj], version: str) -> None:
    builtin = [o for o in built if o["kind"] != "PredictiveAutoscaler"]
    assert [e for o in builtin for e in schema_errors(o, version)] == []
    # Serving containers set no CPU limit on purpose (deploy/serving): CFS throttling would add
    # latency to every request. Everything else in the policy holds.
    assert [f for f in security_findings(built) if not f.endswith(": no cpu limit")] == []


def test_traffic_goes_through_the_proxy_to_the_server(built: list[Obj]) -> None:
    pod = _one(built, "Deployment")["spec"]["template"]
    proxy, server = _container(pod["spec"], "queue-proxy"), _container(pod["spec"], "server")
    flags = _flags(proxy["args"])
    cfg = parse_config(server["args"])
    assert flags["backend"] == f"http://127.0.0.1:{cfg.port}"
    (port,) = proxy["ports"]
    assert flags["listen"] == f":{port['containerPort']}"
    assert _one(built, "Service")["spec"]["ports"][0]["targetPort"] == port["name"]
    assert pod["metadata"]["annotations"]["prescale.dev/port"] == str(port["containerPort"])
    assert proxy["readinessProbe"]["httpGet"] == {"path": "/ready", "port": port["name"]}
    # The server keeps its own probes, on its own port.
    assert server["readinessProbe"]["httpGet"]["port"] == server["ports"][0]["name"]


def test_drain_timing_fits_the_servers(built: list[Obj]) -> None:
    pod = _one(built, "Deployment")["spec"]["template"]["spec"]
    proxy, server = _container(pod, "queue-proxy"), _container(pod, "server")
    flags, cfg = _flags(proxy["args"]), parse_config(server["args"])
    # The proxy stops accepting first, so what it took still reaches a server that accepts.
    assert _seconds(flags["drain-delay"]) <= cfg.drain_delay_s
    pre_stop = proxy["lifecycle"]["preStop"]["sleep"]["seconds"]
    assert pre_stop == server["lifecycle"]["preStop"]["sleep"]["seconds"]
    assert pod["terminationGracePeriodSeconds"] >= pre_stop + _seconds(flags["grace-period"]) + 1
    assert int(flags["concurrency"]) <= cfg.batching.max_queue_size, "the server's own queue never refuses"
