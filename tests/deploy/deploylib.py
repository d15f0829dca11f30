"""Shared helpers for the packaging tests: find helm, render the chart, validate objects
against Kubernetes schemas, and check the security policy every rendered pod must meet."""

from __future__ import annotations

import functools
import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Final

import jsonschema  # type: ignore[import-untyped,unused-ignore]
import kubernetes_validate  # type: ignore[import-untyped,unused-ignore]
import pytest
import referencing
import yaml

ROOT: Final = Path(__file__).resolve().parents[2]
CHART: Final = ROOT / "deploy" / "helm" / "prescale"
KUSTOMIZE: Final = ROOT / "deploy" / "kustomize"
HELM_VERSION: Final = "v3.17.2"
K8S_VERSIONS: Final = ("1.28", "1.31", "1.34", "1.36")
"""Oldest supported (Chart.yaml kubeVersion; the CRD's validation rules use fieldPath, 1.28+),
two in between, and the test cluster's."""
SCHEMAS: Final = Path(kubernetes_validate.__file__).parent / "kubernetes-json-schema"
PA_GROUP: Final = "autoscaling.prescale.dev"
OPERATOR_APIS: Final = frozenset({"monitoring.coreos.com/v1", "cert-manager.io/v1"})
"""Third-party kinds with no schema in kubernetes-validate: checked by ``check_third_party``."""

Obj = dict[str, Any]


def helm_binary() -> Path:
    """helm from $PRESCALE_HELM, the install cache, or scripts/install-helm.sh; never skip."""
    explicit = os.environ.get("PRESCALE_HELM")
    if explicit:
        return Path(explicit)
    cache = Path(os.environ.get("PRESCALE_CACHE_DIR") or Path(
        os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "prescale")
    cached = cache / "tools" / f"helm-{HELM_VERSION}" / "helm"
    if cached.is_file():
        return cached
    done = subprocess.run([str(ROOT / "scripts" / "install-helm.sh")], capture_output=True, text=True,
                          timeout=300, check=False)
    if done.returncode != 0:
        pytest.fail(f"helm {HELM_VERSION} is missing and scripts/install-helm.sh failed "
                    f"(rc {done.returncode}):\n{done.stderr[-2000:]}")
    return Path(done.stdout.strip().splitlines()[-1])


def run(argv: list[str], cwd: Path = ROOT, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, cwd=cwd, input=stdin, capture_output=True, text=True, timeout=120,
                          check=False)


def kubectl(helm: Path) -> str:
    """kubectl for `kubectl kustomize`: the one scripts/install-helm.sh unpacks next to helm, or PATH's."""
    pinned = helm.parent / "kubectl"
    found = str(pinned) if pinned.is_file() else shutil.which("kubectl")
    if found is None:
        pytest.fail("kubectl is missing: run scripts/install-helm.sh (it installs kubectl next to helm)")
    return found


def docs(text: str) -> list[Obj]:
    return [d for d in yaml.safe_load_all(text) if d]


def helm_template(helm: Path, values: Mapping[str, Any] | None = None, *, release: str = "ps",
                  namespace: str = "prescale", api_versions: Iterable[str] = (),
                  extra: Iterable[str] = ()) -> list[Obj]:
    """Render the chart (CRDs included) with ``values`` given as a values file."""
    argv = [str(helm), "template", release, str(CHART), "--namespace", namespace, "--include-crds",
            "--values", "-", *(f"--api-versions={a}" for a in api_versions), *extra]
    done = run(argv, stdin=json.dumps(dict(values or {})))
    if done.returncode != 0:
        raise AssertionError(f"helm template failed (rc {done.returncode}):\n{done.stderr}")
    return docs(done.stdout)


@functools.cache
def _definitions(version: str) -> referencing.Resource[Any]:
    """The shared definitions of one version (several MB: parsed once)."""
    folder = SCHEMAS / f"v{version}.0-local-strict"
    return referencing.Resource.from_contents(json.loads((folder / "_definitions.json").read_text()))


@functools.cache
def _validator(version: str, kind: str, api_version: str) -> jsonschema.protocols.Validator | None:
    """A strict validator for one kind, as kubernetes_validate.validate builds it, cached."""
    if api_version == f"{PA_GROUP}/v1alpha1" and kind == "PredictiveAutoscaler":
        return jsonschema.validators.Draft7Validator(pa_schema())
    group = re.sub(r"^([^./]*)(?:\.[^/]*)?/", r"\1-", api_version)
    path = SCHEMAS / f"v{version}.0-local-strict" / f"{kind.lower()}-{group}.json"
    if not path.is_file():
        return None
    schema = json.loads(path.read_text())
    registry: referencing.Registry[Any] = referencing.Registry()
    registry = referencing.Resource.from_contents(schema) @ registry
    registry = _definitions(version) @ registry
    return jsonschema.validators.Draft202012Validator(schema, registry=registry)


def crd_files() -> list[Path]:
    """The PredictiveAutoscaler CRD: deploy/crds/ (the controller's, authoritative) when it
    exists, and the chart's copy."""
    return sorted((ROOT / "deploy" / "crds").glob("*.yaml")) + sorted((CHART / "crds").glob("*.yaml"))


@functools.cache
def pa_schema() -> dict[str, Any]:
    """The openAPIV3Schema of the PredictiveAutoscaler CRD (x-kubernetes-* keys are ignored)."""
    for path in crd_files():
        for doc in docs(path.read_text()):
            if doc.get("kind") == "CustomResourceDefinition" and doc["spec"]["group"] == PA_GROUP:
                version = next(v for v in doc["spec"]["versions"] if v["name"] == "v1alpha1")
                schema: dict[str, Any] = version["schema"]["openAPIV3Schema"]
                return schema
    raise AssertionError(f"no {PA_GROUP} CRD in {[str(p) for p in crd_files()]}")


def schema_errors(obj: Obj, version: str) -> list[str]:
    """Strict-schema violations of one object for Kubernetes ``version`` (empty: valid)."""
    where = f"{obj.get('kind')}/{obj.get('metadata', {}).get('name')} on {version}"
    if obj.get("apiVersion") in OPERATOR_APIS:
        return [f"{where}: {e}" for e in check_third_party(obj)]
    validator = _validator(version, obj["kind"], obj["apiVersion"])
    if validator is None:
        return [f"{where}: no schema for {obj['apiVersion']} {obj['kind']}"]
    return [f"{where}: {'/'.join(map(str, e.absolute_path))}: {e.message}"
            for e in validator.iter_errors(obj)]


def check_third_party(obj: Obj) -> list[str]:
    """The fields our templates set on operator kinds, checked by shape (no schema ships offline)."""
    spec = obj.get("spec", {})
    need = {"ServiceMonitor": ("selector", "endpoints"), "PodMonitor": ("selector", "podMetricsEndpoints"),
            "PrometheusRule": ("groups",), "Certificate": ("secretName", "issuerRef", "dnsNames"),
            "Issuer": ("selfSigned",)}.get(obj["kind"])
    if need is None:
        return [f"unexpected kind {obj['kind']}"]
    return [f"spec.{k} missing" for k in need if k not in spec]


# ---------------------------------------------------------------------------------------------
# Security policy: restricted Pod Security, bounded resources, least-privilege RBAC.

POD_KINDS: Final = {"Deployment", "DaemonSet", "StatefulSet", "Job"}


def pod_specs(objects: Iterable[Obj]) -> list[tuple[str, Obj]]:
    return [(f"{o['kind']}/{o['metadata']['name']}", o["spec"]["template"]["spec"])
            for o in objects if o.get("kind") in POD_KINDS]


def _container_findings(where: str, c: Obj, pod_non_root: bool) -> list[str]:
    out = []
    sc = c.get("securityContext") or {}
    name = f"{where} container {c['name']}"
    if sc.get("privileged"):
        out.append(f"{name}: privileged")
    if sc.get("allowPrivilegeEscalation") is not False:
        out.append(f"{name}: allowPrivilegeEscalation is not false")
    if sc.get("readOnlyRootFilesystem") is not True:
        out.append(f"{name}: root filesystem is writable")
    caps = sc.get("capabilities") or {}
    if caps.get("drop") != ["ALL"]:
        out.append(f"{name}: capabilities not dropped (drop: [ALL])")
    if caps.get("add"):
        out.append(f"{name}: adds capabilities {caps['add']}")
    non_root = sc.get("runAsNonRoot", pod_non_root)
    if non_root is not True or sc.get("runAsUser") == 0:
        out.append(f"{name}: may run as root")
    res = c.get("resources") or {}
    for kind in ("requests", "limits"):
        for r in ("cpu", "memory"):
            if r not in (res.get(kind) or {}):
                out.append(f"{name}: no {r} {kind[:-1]}")
    return out


def _pod_findings(where: str, spec: Obj) -> list[str]:
    out: list[str] = []
    psc = spec.get("securityContext") or {}
    for flag in ("hostNetwork", "hostPID", "hostIPC"):
        if spec.get(flag):
            out.append(f"{where}: {flag}")
    if (psc.get("seccompProfile") or {}).get("type") != "RuntimeDefault":
        out.append(f"{where}: seccompProfile is not RuntimeDefault")
    if psc.get("runAsUser") == 0:
        out.append(f"{where}: pod runs as uid 0")
    for v in spec.get("volumes", []):
        if "hostPath" in v:
            out.append(f"{where}: hostPath volume {v['hostPath']['path']}")
    pod_non_root = psc.get("runAsNonRoot") is True
    for c in [*spec.get("initContainers", []), *spec["containers"]]:
        out += _container_findings(where, c, pod_non_root)
        out += [f"{where} container {c['name']}: hostPort {p['hostPort']}"
                for p in c.get("ports", []) if p.get("hostPort")]
    return out


def _rbac_findings(o: Obj) -> list[str]:
    out: list[str] = []
    what = f"{o['kind']}/{o['metadata']['name']}"
    for rule in o.get("rules", []) if o.get("kind") in ("Role", "ClusterRole") else []:
        keys = ("apiGroups", "resources", "verbs", "resourceNames", "nonResourceURLs")
        out += [f"{what}: wildcard in {key}" for key in keys if "*" in rule.get(key, [])]
        if {"escalate", "bind", "impersonate"} & set(rule.get("verbs", [])):
            out.append(f"{what}: escalation verbs {rule['verbs']}")
        if "secrets" in rule.get("resources", []):
            out.append(f"{what}: reads secrets")
    if o.get("kind") == "ClusterRoleBinding" and o["roleRef"]["name"] == "cluster-admin":
        out.append(f"{what}: binds cluster-admin")
    return out


def security_findings(objects: list[Obj]) -> list[str]:
    """Everything in ``objects`` that breaks the policy, one line each (empty: compliant)."""
    out = [f for where, spec in pod_specs(objects) for f in _pod_findings(where, spec)]
    return out + [f for o in objects for f in _rbac_findings(o)]


def pod_resources_exception(exporter: str, path: str = "/var/lib/kubelet/pod-resources") -> set[str]:
    """The one documented deviation (values.yaml, docs/operations.md): with
    ``exporter.podResources.enabled`` the exporter reads the root-owned kubelet socket through a
    read-only hostPath as uid 0. Nothing else may deviate."""
    where = f"DaemonSet/{exporter}"
    return {f"{where}: pod runs as uid 0", f"{where}: hostPath volume {path}",
            f"{where} container exporter: may run as root"}
