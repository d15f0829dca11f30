"""The Helm chart: lint, render for several value sets, strict Kubernetes schemas of several
versions, the security policy, the values schema, and the adapter's generated certificate."""

from __future__ import annotations

import base64
import copy
import json
import os
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from deploylib import (
    CHART,
    HELM_VERSION,
    K8S_VERSIONS,
    Obj,
    helm_template,
    pod_resources_exception,
    pod_specs,
    run,
    schema_errors,
    security_findings,
)

OPERATOR_APIS = ("monitoring.coreos.com/v1/ServiceMonitor", "monitoring.coreos.com/v1/PodMonitor",
                 "monitoring.coreos.com/v1/PrometheusRule", "cert-manager.io/v1/Certificate")

VALUE_SETS: dict[str, tuple[dict[str, Any], tuple[str, ...]]] = {
    "defaults": ({}, ()),
    "prometheus-operator-and-cert-manager": ({"monitoring": {"labels": {"release": "kps"}}}, OPERATOR_APIS),
    "with-serving": ({"serving": {"enabled": True, "predictiveAutoscaler": {"enabled": True}}}, ()),
    "restricted-exporter-dcgm": ({"exporter": {"podResources": {"enabled": False},
                                               "kubeletPods": {"enabled": False}, "naming": "dcgm"}}, ()),
    "tls-from-secret": ({"adapter": {"tls": {"mode": "secret", "existingSecret": "my-tls",
                                             "caBundle": base64.b64encode(b"pem").decode()}}}, ()),
    "exporter-only": ({"adapter": {"enabled": False}, "controller": {"enabled": False}}, ()),
    "every-node-pool-backend": ({"controller": {"replicas": 1, "leaderElection": {"enabled": False},
                                                "pdb": {"enabled": False},
                                                "nodePools": {"capacityBuffers": True, "clusterAPI": True,
                                                              "karpenter": True}},
                                 "image": {"digest": "sha256:" + "a" * 64}}, ()),
}

EXPECTED_KINDS: dict[str, set[str]] = {
    "defaults": {"CustomResourceDefinition", "DaemonSet", "Deployment", "APIService", "Secret",
                 "PodDisruptionBudget", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding",
                 "ServiceAccount", "Service", "PriorityClass"},
    "prometheus-operator-and-cert-manager": {"ServiceMonitor", "PrometheusRule", "Certificate", "Issuer"},
    "with-serving": {"HorizontalPodAutoscaler", "PredictiveAutoscaler"},
    "exporter-only": {"DaemonSet", "CustomResourceDefinition"},
}


def kinds(objects: list[Obj]) -> set[str]:
    return {o["kind"] for o in objects}


def by_kind(objects: list[Obj], kind: str) -> list[Obj]:
    return [o for o in objects if o["kind"] == kind]


@pytest.fixture(scope="module")
def rendered(helm: Path) -> dict[str, list[Obj]]:
    return {name: helm_template(helm, values, api_versions=apis)
            for name, (values, apis) in VALUE_SETS.items()}


def test_helm_lint_is_clean_for_every_value_set(helm: Path, tmp_path: Path) -> None:
    for name, (values, _apis) in VALUE_SETS.items():
        f = tmp_path / f"{name}.json"
        f.write_text(json.dumps(values))
        done = run([str(helm), "lint", "--strict", str(CHART), "--values", str(f)])
        assert done.returncode == 0, f"{name}: {done.stdout}{done.stderr}"


@pytest.mark.parametrize("name", list(VALUE_SETS))
def test_every_object_is_valid_for_every_supported_kubernetes(rendered: dict[str, list[Obj]],
                                                              name: str) -> None:
    objects = rendered[name]
    assert EXPECTED_KINDS.get(name, set()) <= kinds(objects)
    errors = [e for v in K8S_VERSIONS for o in objects for e in schema_errors(o, v)]
    assert not errors, "\n".join(errors[:20])


def test_schema_validation_catches_a_bad_object(rendered: dict[str, list[Obj]]) -> None:
    dep = copy.deepcopy(by_kind(rendered["defaults"], "Deployment")[0])
    dep["spec"]["replicas"] = "two"
    dep["spec"]["template"]["spec"]["containers"][0]["imagePullPolcy"] = "Always"
    errors = schema_errors(dep, "1.36")
    assert any("replicas" in e for e in errors), errors
    assert any("imagePullPolcy" in e for e in errors), errors


def test_defaults_meet_the_policy_but_the_documented_exporter_exception(
        rendered: dict[str, list[Obj]]) -> None:
    findings = set(security_findings(rendered["defaults"]))
    assert findings == pod_resources_exception("ps-prescale-exporter")
    exporter = by_kind(rendered["defaults"], "DaemonSet")[0]["spec"]["template"]["spec"]
    mounts = {m["name"]: m for m in exporter["containers"][0]["volumeMounts"]}
    assert mounts["pod-resources"]["readOnly"] is True


@pytest.mark.parametrize("name", [n for n in VALUE_SETS if (n != "defaults" and "restricted" in n)
                                  or n in ("with-serving",)])
def test_restricted_value_sets_have_no_findings(rendered: dict[str, list[Obj]], name: str) -> None:
    findings = set(security_findings(rendered[name]))
    if name == "with-serving":
        findings -= pod_resources_exception("ps-prescale-exporter")
    assert not findings, findings


@pytest.mark.parametrize(("mutation", "finding"), [
    (lambda c, p, r: c["securityContext"].update(privileged=True), "privileged"),
    (lambda c, p, r: c["resources"].pop("limits"), "no cpu limit"),
    (lambda c, p, r: c["securityContext"].update(readOnlyRootFilesystem=False), "writable"),
    (lambda c, p, r: p["securityContext"].update(runAsUser=0), "uid 0"),
    (lambda c, p, r: c["securityContext"].update(runAsNonRoot=False), "may run as root"),
    (lambda c, p, r: c["securityContext"].update(allowPrivilegeEscalation=True), "allowPrivilegeEscalation"),
    (lambda c, p, r: p.update(hostNetwork=True), "hostNetwork"),
    (lambda c, p, r: r["rules"].append({"apiGroups": ["*"], "resources": ["pods"], "verbs": ["get"]}),
     "wildcard in apiGroups"),
    (lambda c, p, r: r["rules"].append({"apiGroups": [""], "resources": ["*"], "verbs": ["*"]}),
     "wildcard in resources"),
], ids=["privileged", "no-limits", "writable-rootfs", "uid0", "root", "escalation", "host-network",
        "rbac-wildcard-group", "rbac-wildcard-resource"])
def test_security_check_fails_on_each_violation(rendered: dict[str, list[Obj]], mutation: Any,
                                                finding: str) -> None:
    objects = copy.deepcopy(rendered["restricted-exporter-dcgm"])
    assert not security_findings(objects)
    pod = next(spec for where, spec in pod_specs(objects) if "adapter" in where)
    role = next(o for o in objects if o["kind"] == "ClusterRole")
    mutation(pod["containers"][0], pod, role)
    assert any(finding in f for f in security_findings(objects)), security_findings(objects)


def test_rbac_has_no_wildcards_and_names_every_verb(rendered: dict[str, list[Obj]]) -> None:
    for name, objects in rendered.items():
        for role in by_kind(objects, "ClusterRole") + by_kind(objects, "Role"):
            for rule in role["rules"]:
                assert rule["verbs"], (name, rule)
                assert rule["resources"], (name, rule)
                assert "*" not in json.dumps(rule), (name, rule)


@pytest.mark.parametrize(("values", "message"), [
    ({"adapter": {"replicas": 0}}, "adapter.replicas"),
    ({"exporter": {"resources": {"limits": None}}}, "limits is required"),  # null deletes a default
    ({"exporter": {"naming": "nvidia"}}, "exporter.naming"),
    ({"adapter": {"tls": {"mode": "secret"}}}, "existingSecret"),
    ({"adapter": {"tls": {"mode": "letsencrypt"}}}, "adapter.tls.mode"),
    ({"monitoring": {"serviceMonitors": "yes"}}, "monitoring.serviceMonitors"),
    ({"prometheus": {"url": "prometheus:9090"}}, "prometheus.url"),
    ({"adapter": {"presets": ["openai"]}}, "adapter.presets"),
    ({"controller": {"extraArgs": ["rm -rf /"]}}, "controller.extraArgs"),
    ({"image": {"digest": "latest"}}, "image.digest"),
    ({"serving": {"gpusPerReplica": -1}}, "serving.gpusPerReplica"),
    ({"exporter": {"resources": {"requests": {"cpu": "lots", "memory": "1Gi"},
                                 "limits": {"cpu": "1", "memory": "1Gi"}}}}, "exporter.resources"),
    ({"adaptor": {"replicas": 2}}, "adaptor"),
], ids=lambda v: v if isinstance(v, str) else None)
def test_values_schema_rejects_bad_values(helm: Path, values: dict[str, Any], message: str) -> None:
    with pytest.raises(AssertionError) as failed:
        helm_template(helm, values)
    assert "values don't meet the specifications of the schema" in str(failed.value)
    assert message in str(failed.value)


def test_self_signed_certificate_serves_the_adapter_service(rendered: dict[str, list[Obj]]) -> None:
    objects = rendered["defaults"]
    secret = next(o for o in objects
                  if o["kind"] == "Secret" and o["metadata"]["name"].endswith("adapter-tls"))
    ca_pem = base64.b64decode(secret["data"]["ca.crt"])
    leaf = x509.load_pem_x509_certificate(base64.b64decode(secret["data"]["tls.crt"]))
    ca = x509.load_pem_x509_certificate(ca_pem)
    leaf.verify_directly_issued_by(ca)
    names = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "ps-prescale-adapter.prescale.svc" in names.get_values_for_type(x509.DNSName)
    for api in by_kind(objects, "APIService"):
        assert base64.b64decode(api["spec"]["caBundle"]) == ca_pem
        assert api["spec"]["service"] == {"name": "ps-prescale-adapter", "namespace": "prescale", "port": 443}
    assert {a["metadata"]["name"] for a in by_kind(objects, "APIService")} == {
        "v1beta1.external.metrics.k8s.io", "v1beta1.custom.metrics.k8s.io"}


def test_cert_manager_mode_injects_the_ca(rendered: dict[str, list[Obj]]) -> None:
    objects = rendered["prometheus-operator-and-cert-manager"]
    assert not [o for o in objects if o["kind"] == "Secret"]
    for api in by_kind(objects, "APIService"):
        annotations = api["metadata"]["annotations"]
        assert annotations["cert-manager.io/inject-ca-from"] == "prescale/ps-prescale-adapter"
        assert "caBundle" not in api["spec"]


def test_scrape_annotations_only_without_service_monitors(rendered: dict[str, list[Obj]]) -> None:
    def annotated(objects: list[Obj]) -> set[str]:
        return {o["metadata"]["name"] for o in objects if o["kind"] in ("Deployment", "DaemonSet")
                and (o["spec"]["template"]["metadata"].get("annotations") or {}).get("prometheus.io/scrape")
                == "true"}

    assert annotated(rendered["defaults"]) == {"ps-prescale-exporter", "ps-prescale-adapter",
                                               "ps-prescale-controller"}
    operator = rendered["prometheus-operator-and-cert-manager"]
    assert annotated(operator) == set()
    monitors = by_kind(operator, "ServiceMonitor")
    assert {m["spec"]["jobLabel"] for m in monitors} == {"prescale.dev/job"}
    assert all(e["honorLabels"] for m in monitors for e in m["spec"]["endpoints"])
    assert all(m["metadata"]["labels"]["release"] == "kps" for m in monitors)
    services = {s["metadata"]["labels"].get("prescale.dev/job") for s in by_kind(operator, "Service")}
    assert {"prescale-exporter", "prescale-adapter", "prescale-controller"} <= services


def test_replicas_spread_and_are_protected_by_pdbs(rendered: dict[str, list[Obj]]) -> None:
    objects = rendered["defaults"]
    pdbs = {p["spec"]["selector"]["matchLabels"]["app.kubernetes.io/component"] for p in
            by_kind(objects, "PodDisruptionBudget")}
    for dep in by_kind(objects, "Deployment"):
        component = dep["metadata"]["labels"]["app.kubernetes.io/component"]
        assert dep["spec"]["replicas"] >= 2
        assert component in pdbs
        anti = dep["spec"]["template"]["spec"]["affinity"]["podAntiAffinity"]
        terms = anti["preferredDuringSchedulingIgnoredDuringExecution"]
        keys = {t["podAffinityTerm"]["topologyKey"] for t in terms}
        assert keys == {"kubernetes.io/hostname", "topology.kubernetes.io/zone"}


def test_global_tolerations_reach_every_non_gpu_pod(helm: Path) -> None:
    tol = {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
    objects = helm_template(helm, {"global": {"tolerations": [tol]}})
    for where, spec in pod_specs(objects):
        assert tol in spec.get("tolerations", []), where


def test_serving_requests_gpus_and_scales_on_the_adapter_metric(rendered: dict[str, list[Obj]]) -> None:
    objects = rendered["with-serving"]
    dep = next(d for d in by_kind(objects, "Deployment") if d["metadata"]["name"] == "model-server")
    server = dep["spec"]["template"]["spec"]["containers"][0]
    assert server["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert "replicas" not in dep["spec"], "the HPA owns replicas"
    hpa = by_kind(objects, "HorizontalPodAutoscaler")[0]
    assert hpa["spec"]["metrics"][0]["external"]["metric"]["name"] == "inference_requests_per_second"
    pa = by_kind(objects, "PredictiveAutoscaler")[0]
    assert pa["spec"]["scaleTargetRef"]["name"] == "model-server"


def test_chart_crd_is_the_controllers_crd() -> None:
    """Helm installs CRDs only from the chart's crds/: that copy must be deploy/crds' file."""
    source = CHART.parents[2] / "deploy" / "crds" / "predictiveautoscalers.yaml"
    copy_ = CHART / "crds" / "predictiveautoscalers.autoscaling.prescale.dev.yaml"
    assert copy_.read_text() == source.read_text(), f"run: cp {source} {copy_}"


def test_install_script_is_idempotent_and_pinned(helm: Path) -> None:
    """A second run finds the cached binary at once; the binary is the pinned version."""
    done = run([str(CHART.parents[2] / "scripts" / "install-helm.sh")])
    assert done.returncode == 0, done.stderr
    if "PRESCALE_HELM" not in os.environ:
        assert Path(done.stdout.strip()) == helm
        assert "already installed" in done.stderr
    version = run([done.stdout.strip(), "version", "--short"])
    assert version.stdout.startswith(HELM_VERSION), version.stdout


def test_serving_pods_are_scraped_once(helm: Path) -> None:
    """By the node's exporter (kubelet discovery) or by Prometheus, never both; the prescale
    image of the exporter, adapter and controller pods is never taken for a serving pod."""
    values = {"serving": {"enabled": True}}
    for exporter_scrapes, extra in ((True, {}), (False, {"exporter": {"kubeletPods": {"enabled": False}}})):
        objects = helm_template(helm, {**values, **extra}, api_versions=OPERATOR_APIS)
        pods = {o["metadata"]["name"]: o["spec"]["template"]["metadata"]["annotations"]
                for o in objects if o["kind"] in ("Deployment", "DaemonSet")}
        assert pods.pop("model-server")["prescale.dev/scrape"] == str(exporter_scrapes).lower()
        assert all(a["prescale.dev/scrape"] == "false" for a in pods.values()), pods
        assert bool(by_kind(objects, "PodMonitor")) is not exporter_scrapes
