"""deploy/serving: valid for several Kubernetes versions, and consistent with the server.

Offline: schemas from kubernetes-validate (strict: unknown fields are errors). Applying the
manifests to the real control plane is the cluster suite's job.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

import pytest
import yaml
from serving_testlib import deps_for

from serving.app import make_app
from serving.cli import parse_config
from serving.config import ServeConfig

DEPLOY = Path(__file__).resolve().parents[2] / "deploy" / "serving"
K8S_VERSIONS = ["1.30.0", "1.33.0", "1.36.0"]  # 1.30: first with the preStop sleep action on by default
kubernetes_validate = importlib.import_module("kubernetes_validate")  # untyped
HPA_METRIC = "inference_requests_per_second"


def documents() -> list[tuple[str, dict[str, Any]]]:
    docs = []
    for path in sorted(DEPLOY.glob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        docs += [(path.name, d) for d in yaml.safe_load_all(path.read_text()) if d]
    return docs


def one(kind: str, name: str = "prescale-serving") -> dict[str, Any]:
    found = [d for _, d in documents() if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(found) == 1, (kind, name)
    return found[0]


BUILTIN = [(f, d) for f, d in documents() if d["kind"] != "PredictiveAutoscaler"]


@pytest.mark.parametrize("version", K8S_VERSIONS)
@pytest.mark.parametrize(("filename", "doc"), BUILTIN,
                         ids=[f"{f}:{d['kind']}:{d['metadata']['name']}" for f, d in BUILTIN])
def test_valid_against_the_kubernetes_schema(filename: str, doc: dict[str, Any], version: str) -> None:
    kubernetes_validate.validate(doc, version, strict=True)


def test_kustomization_lists_every_file() -> None:
    listed = yaml.safe_load((DEPLOY / "kustomization.yaml").read_text())["resources"]
    assert sorted(listed) == sorted(p.name for p in DEPLOY.glob("*.yaml") if p.name != "kustomization.yaml")


def test_predictive_autoscaler_shape() -> None:
    pa = one("PredictiveAutoscaler")
    assert pa["apiVersion"] == "autoscaling.prescale.dev/v1alpha1"
    spec = pa["spec"]
    target = {"apiVersion": "apps/v1", "kind": "Deployment", "name": "prescale-serving"}
    assert spec["scaleTargetRef"] == target
    assert 1 <= spec["minReplicas"] <= spec["maxReplicas"]
    assert spec["actuation"]["mode"] in {"direct", "hpa-floor", "external-metric", "dry-run"}
    assert spec["actuation"]["hpaName"] == one("HorizontalPodAutoscaler")["metadata"]["name"]


def _server(deployment: dict[str, Any]) -> dict[str, Any]:
    containers = deployment["spec"]["template"]["spec"]["containers"]
    return next(c for c in containers if c["name"] == "server")


def _server_config() -> ServeConfig:
    return parse_config(_server(one("Deployment"))["args"])


def test_server_args_are_a_valid_config() -> None:
    cfg = _server_config()
    assert cfg.port == _server(one("Deployment"))["ports"][0]["containerPort"]


def test_termination_grace_covers_prestop_and_drain() -> None:
    pod = one("Deployment")["spec"]["template"]["spec"]
    pre_stop_s = _server(one("Deployment"))["lifecycle"]["preStop"]["sleep"]["seconds"]
    cfg = _server_config()
    assert pod["terminationGracePeriodSeconds"] >= pre_stop_s + cfg.grace_period_s + 1


def test_gpu_scheduling_and_restricted_security() -> None:
    deployment = one("Deployment")
    pod = deployment["spec"]["template"]["spec"]
    server = _server(deployment)
    assert server["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert pod["nodeSelector"]
    assert any(t["key"] == "nvidia.com/gpu" for t in pod["tolerations"])
    assert {c["topologyKey"] for c in pod["topologySpreadConstraints"]} >= {"kubernetes.io/hostname"}
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
    for c in pod["containers"] + pod["initContainers"]:
        sc = c["securityContext"]
        assert sc["allowPrivilegeEscalation"] is False
        assert sc["capabilities"]["drop"] == ["ALL"]
    assert one("Namespace")["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"


def test_probe_paths_are_routes_of_the_server(tmp_path: Path) -> None:
    app = make_app(deps_for(parse_config(["--model-repository", str(tmp_path)])))
    paths = {r.canonical for r in app.router.resources()}
    server = _server(one("Deployment"))
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert server[probe]["httpGet"]["path"] in paths
        assert server[probe]["httpGet"]["port"] == server["ports"][0]["name"]


def test_selectors_match_the_pods() -> None:
    deployment = one("Deployment")
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    for selector in (deployment["spec"]["selector"]["matchLabels"], one("Service")["spec"]["selector"],
                     one("PodDisruptionBudget")["spec"]["selector"]["matchLabels"]):
        assert selector.items() <= pod_labels.items()
    canary = one("Service", "prescale-serving-canary")["spec"]["selector"]
    assert canary["track"] == "canary" != pod_labels["track"]
    assert one("Ingress", "prescale-serving-canary")["metadata"]["annotations"][
        "nginx.ingress.kubernetes.io/canary"] == "true"


def test_hpa_scales_on_the_adapter_external_qps_metric() -> None:
    hpa = one("HorizontalPodAutoscaler")
    assert hpa["spec"]["scaleTargetRef"]["name"] == one("Deployment")["metadata"]["name"]
    (metric,) = hpa["spec"]["metrics"]
    assert metric["type"] == "External"
    assert metric["external"]["metric"]["name"] == HPA_METRIC
    assert metric["external"]["metric"]["selector"]["matchLabels"] == {
        "namespace": "prescale-serving", "deployment": "prescale-serving"}
