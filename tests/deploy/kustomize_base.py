"""Generate the Kustomize manifests from the Helm chart, so the chart stays the one source.

    .venv/bin/python tests/deploy/kustomize_base.py     # rewrite the generated files

Writes deploy/kustomize/base/{crds,exporter,adapter,controller}.yaml,
overlays/production/{monitoring,certificate}.yaml and overlays/with-serving/serving.yaml.
The kustomization.yaml files and patches are written by hand. tests/deploy fails when a
generated file differs from what this writes.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import yaml
from deploylib import KUSTOMIZE, Obj, helm_binary, helm_template

HEADER = ("# Generated from deploy/helm/prescale by tests/deploy/kustomize_base.py; edit the chart and\n"
          "# run `.venv/bin/python tests/deploy/kustomize_base.py`. A test fails when this file drifts.\n")
BASE_VALUES: dict[str, Any] = {
    "fullnameOverride": "prescale",
    "monitoring": {"serviceMonitors": "disabled", "prometheusRule": "disabled"},
    # Rendered as "secret" only to keep the chart from generating a key; the TLS wiring is
    # removed below: the base adapter signs its own certificate at start.
    "adapter": {"tls": {"mode": "secret", "existingSecret": "prescale-adapter-tls", "caBundle": "Cg=="}},
}
HELM_ONLY_LABELS = ("helm.sh/chart", "app.kubernetes.io/managed-by")


def _strip_helm_labels(o: Obj) -> Obj:
    for meta in (o.get("metadata", {}), o.get("spec", {}).get("template", {}).get("metadata", {})):
        for key in HELM_ONLY_LABELS:
            (meta.get("labels") or {}).pop(key, None)
    return o


def _base_adapter(o: Obj) -> Obj:
    """No certificate in the base: APIServices skip verification, the adapter self-signs."""
    if o["kind"] == "APIService":
        o["spec"].pop("caBundle", None)
        o["spec"]["insecureSkipTLSVerify"] = True
    if o["kind"] == "Deployment" and o["metadata"]["name"] == "prescale-adapter":
        pod = o["spec"]["template"]["spec"]
        c = pod["containers"][0]
        c["args"] = [a for a in c["args"] if not a.startswith(("--tls-cert-file", "--tls-private-key-file"))]
        c["volumeMounts"] = [m for m in c["volumeMounts"] if m["name"] != "tls"]
        pod["volumes"] = [v for v in pod["volumes"] if v["name"] != "tls"]
    return o


def _component(o: Obj) -> str:
    if o["kind"] == "CustomResourceDefinition":
        return "crds"
    return str(o["metadata"]["labels"]["app.kubernetes.io/component"])


def _dump(objects: list[Obj]) -> str:
    return HEADER + yaml.safe_dump_all(objects, sort_keys=False, width=110)


def generated(helm: Path) -> dict[Path, str]:
    """Path -> content of every generated file."""
    base = [_base_adapter(_strip_helm_labels(o))
            for o in helm_template(helm, BASE_VALUES, release="prescale")]
    out: dict[Path, str] = {}
    for part in ("crds", "exporter", "adapter", "controller"):
        out[KUSTOMIZE / "base" / f"{part}.yaml"] = _dump([o for o in base if _component(o) == part])
    operator_values = {**BASE_VALUES, "monitoring": {"serviceMonitors": "enabled"},
                       "adapter": {"tls": {"mode": "certManager"}}}
    operator = [_strip_helm_labels(o) for o in helm_template(helm, operator_values, release="prescale")]
    out[KUSTOMIZE / "overlays" / "production" / "monitoring.yaml"] = _dump(
        [o for o in operator if o["kind"] == "ServiceMonitor"])
    out[KUSTOMIZE / "overlays" / "production" / "certificate.yaml"] = _dump(
        [o for o in operator if o["kind"] in ("Issuer", "Certificate")])
    serving = [_strip_helm_labels(o) for o in helm_template(
        helm, {**BASE_VALUES, "serving": {"enabled": True, "predictiveAutoscaler": {"enabled": True}}},
        release="prescale")]
    out[KUSTOMIZE / "overlays" / "with-serving" / "serving.yaml"] = _dump(
        [o for o in serving if _component(o) == "serving"])
    return out


def main() -> int:
    for path, text in generated(helm_binary()).items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
