"""Kustomize: base and overlays build offline, every object is schema-valid for every supported
Kubernetes version, meets the security policy, and the generated files match the chart."""

from __future__ import annotations

from pathlib import Path

import pytest
from deploylib import (
    K8S_VERSIONS,
    KUSTOMIZE,
    Obj,
    docs,
    kubectl,
    pod_resources_exception,
    run,
    schema_errors,
    security_findings,
)
from kustomize_base import generated

TREES = ["base", "overlays/minimal", "overlays/production", "overlays/with-serving"]


@pytest.fixture(scope="module")
def built(helm: Path) -> dict[str, list[Obj]]:
    out = {}
    for tree in TREES:
        done = run([kubectl(helm), "kustomize", str(KUSTOMIZE / tree)])
        assert done.returncode == 0, f"{tree}: {done.stderr}"
        out[tree] = docs(done.stdout)
    return out


def named(objects: list[Obj], kind: str, name: str) -> Obj:
    return next(o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name)


def test_generated_files_match_the_chart(helm: Path) -> None:
    for path, text in generated(helm).items():
        assert path.is_file(), f"{path} is missing: run .venv/bin/python tests/deploy/kustomize_base.py"
        assert path.read_text() == text, (
            f"{path} drifted from the chart: run .venv/bin/python tests/deploy/kustomize_base.py")


@pytest.mark.parametrize("tree", TREES)
def test_every_object_is_valid_for_every_supported_kubernetes(built: dict[str, list[Obj]], tree: str) -> None:
    errors = [e for v in K8S_VERSIONS for o in built[tree] for e in schema_errors(o, v)]
    assert not errors, "\n".join(errors[:20])


@pytest.mark.parametrize("tree", TREES)
def test_security_policy(built: dict[str, list[Obj]], tree: str) -> None:
    assert set(security_findings(built[tree])) == pod_resources_exception("prescale-exporter")


def test_base_uses_the_adapters_own_certificate(built: dict[str, list[Obj]]) -> None:
    objects = built["base"]
    adapter = named(objects, "Deployment", "prescale-adapter")["spec"]["template"]["spec"]
    assert not any(a.startswith("--tls") for a in adapter["containers"][0]["args"])
    for name in ("v1beta1.external.metrics.k8s.io", "v1beta1.custom.metrics.k8s.io"):
        assert named(objects, "APIService", name)["spec"]["insecureSkipTLSVerify"] is True
    binding = named(objects, "RoleBinding", "prescale-adapter-auth-reader")
    assert binding["metadata"]["namespace"] == "kube-system"


def test_minimal_overlay(built: dict[str, list[Obj]]) -> None:
    objects = built["overlays/minimal"]
    assert {o["kind"] for o in objects}.isdisjoint({"PodDisruptionBudget", "Role"})
    for name in ("prescale-adapter", "prescale-controller"):
        assert named(objects, "Deployment", name)["spec"]["replicas"] == 1
    assert "--no-leader-elect" in named(objects, "Deployment", "prescale-controller")[
        "spec"]["template"]["spec"]["containers"][0]["args"]
    assert [o["metadata"]["name"] for o in objects if o["kind"] == "APIService"] == [
        "v1beta1.external.metrics.k8s.io"]


def test_production_overlay(built: dict[str, list[Obj]]) -> None:
    objects = built["overlays/production"]
    kinds = {o["kind"] for o in objects}
    assert {"ServiceMonitor", "PrometheusRule", "Certificate", "Issuer", "PodDisruptionBudget"} <= kinds
    for api in (o for o in objects if o["kind"] == "APIService"):
        assert "insecureSkipTLSVerify" not in api["spec"]
        assert api["metadata"]["annotations"]["cert-manager.io/inject-ca-from"] == "prescale/prescale-adapter"
    adapter = named(objects, "Deployment", "prescale-adapter")
    assert adapter["spec"]["replicas"] == 3
    spec = adapter["spec"]["template"]["spec"]
    assert "--tls-cert-file=/var/run/prescale/tls/tls.crt" in spec["containers"][0]["args"]
    assert {"name": "tls", "secret": {"secretName": "prescale-adapter-tls"}} in spec["volumes"]
    cert = named(objects, "Certificate", "prescale-adapter")
    assert cert["spec"]["secretName"] == "prescale-adapter-tls"
    for o in objects:
        if o["kind"] in ("Deployment", "DaemonSet"):
            assert "prometheus.io/scrape" not in (o["spec"]["template"]["metadata"].get("annotations") or {})


def test_with_serving_overlay(built: dict[str, list[Obj]]) -> None:
    objects = built["overlays/with-serving"]
    server = named(objects, "Deployment", "model-server")["spec"]["template"]["spec"]
    assert server["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == "1"
    hpa = named(objects, "HorizontalPodAutoscaler", "model-server")
    assert hpa["spec"]["metrics"][0]["external"]["metric"]["name"] == "inference_requests_per_second"
    pa = named(objects, "PredictiveAutoscaler", "model-server")
    assert pa["spec"]["actuation"] == {"mode": "hpa-floor", "hpaName": "model-server"}
