"""The control-plane side of the on-real-data test: the serving workload as the cluster sees it
(a KWOK Deployment, the HPA on the adapter's external metric, a PredictiveAutoscaler that
raises the HPA's floor and asks for node headroom), the real controller process
(``prescale forecaster`` with leader election), and the scrape jobs for the parts that run
against the cluster (kube-state-metrics, the kube-apiserver's own metrics)."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml
from deploylib import ROOT
from real_stack import DEPLOYMENT, NAMESPACE

from prescale.stack import procs
from prescale.stack.cluster import Cluster
from prescale.stack.kube_api import http_ok

CRD = ROOT / "deploy" / "crds" / "predictiveautoscalers.yaml"
PRIORITY_CLASS = "prescale-real-data-placeholder"
"""The placeholders' PriorityClass (the controller creates it; removed at the end)."""
CAPACITY_RPS = 2.0
"""Requests/s per replica in the PredictiveAutoscaler: the test's ~5 rps need a few replicas."""


def deployment() -> dict[str, Any]:
    """The serving Deployment as the cluster sees it: KWOK pods holding one GPU each."""
    return {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": DEPLOYMENT, "namespace": NAMESPACE},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": DEPLOYMENT}},
            "template": {
                "metadata": {"labels": {"app": DEPLOYMENT},
                             "annotations": {"pod-ready.stage.kwok.x-k8s.io/delay": "1s"}},
                "spec": {
                    "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
                    "containers": [{"name": "server", "image": "example.invalid/prescale:test",
                                    "resources": {"limits": {"nvidia.com/gpu": "1"}}}],
                },
            },
        },
    }


def hpa() -> dict[str, Any]:
    """The reactive HPA on the adapter's ``inference_requests_per_second`` (as deploy/serving)."""
    return {
        "apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": DEPLOYMENT, "namespace": NAMESPACE},
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": DEPLOYMENT},
            "minReplicas": 1, "maxReplicas": 4,
            "metrics": [{"type": "External", "external": {
                "metric": {"name": "inference_requests_per_second",
                           "selector": {"matchLabels": {"namespace": NAMESPACE, "deployment": DEPLOYMENT}}},
                "target": {"type": "AverageValue", "averageValue": str(int(CAPACITY_RPS))}}}],
        },
    }


def predictive_autoscaler() -> dict[str, Any]:
    """Forecast the live demand the exporter reports, one-second steps, a short refit period
    so the model is fitted and calibrated within the test; hpa-floor mode, placeholder headroom."""
    return {
        "apiVersion": "autoscaling.prescale.dev/v1alpha1", "kind": "PredictiveAutoscaler",
        "metadata": {"name": DEPLOYMENT, "namespace": NAMESPACE},
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": DEPLOYMENT},
            "minReplicas": 1, "maxReplicas": 4,
            "demand": {"query": f'sum(rate(inference_requests_total{{namespace="{NAMESPACE}",'
                                f'deployment="{DEPLOYMENT}"}}[5s]))',
                       "stepSeconds": 1, "historySeconds": 120},
            "capacity": {"requestsPerSecondPerReplica": CAPACITY_RPS},
            "leadTime": {"podSeconds": 2, "measure": False},
            "forecast": {"models": ["seasonal_naive"], "seasonalitiesSeconds": [10],
                         "refitIntervalSeconds": 10},
            "behavior": {"scaleDownDelaySeconds": 5, "fallbackHoldSeconds": 5},
            "actuation": {"mode": "hpa-floor", "hpaName": DEPLOYMENT},
            "nodePool": {"backend": "placeholder-pods", "gpusPerNode": 8, "nodeLeadTimeSeconds": 2,
                         "maxNodes": 1, "priorityClassName": PRIORITY_CLASS},
        },
    }


@contextlib.contextmanager
def workload(cluster: Cluster) -> Iterator[None]:
    """The namespace, CRD, Deployment, HPA and PredictiveAutoscaler; all removed afterwards."""
    cluster.apply_crds(CRD.read_text())
    namespace = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}}
    try:
        cluster.apply(yaml.safe_dump_all([namespace, deployment(), hpa(), predictive_autoscaler()]))
        yield
    finally:
        cluster.kubectl("delete", "namespace", NAMESPACE, "--ignore-not-found", "--wait=false")
        cluster.kubectl("delete", "priorityclass", PRIORITY_CLASS, "--ignore-not-found")


@contextlib.contextmanager
def controller(cluster: Cluster, work: Path, prometheus_url: str) -> Iterator[str]:
    """``prescale forecaster`` on this namespace with leader election; yields its metrics target."""
    port = procs.free_port()
    p = procs.start("prescale-forecaster", procs.prescale_command(
        "forecaster", f"--prometheus-url={prometheus_url}", f"--kubeconfig={cluster.kubeconfig}",
        f"--namespace={NAMESPACE}", "--interval=1", f"--metrics-address=127.0.0.1:{port}",
        f"--lease-namespace={NAMESPACE}", "--lease-name=prescale-forecaster",
        "--lease-duration=6", "--renew-period=2", "--identity=real-data-test"), work / "forecaster.log")
    try:
        p.wait_ready(lambda: http_ok(f"http://127.0.0.1:{port}/healthz"), 60, "serving /healthz")
        yield f"127.0.0.1:{port}"
    finally:
        p.stop()


def apiserver_job(cluster: Cluster) -> dict[str, Any]:
    """The kube-apiserver's /metrics (aggregator_unavailable_apiservice), scraped as the admin."""
    pki = cluster.pki
    return {"job_name": "apiserver", "scheme": "https",
            "tls_config": {"ca_file": str(pki.ca.cert), "cert_file": str(pki.admin.cert),
                           "key_file": str(pki.admin.key)},
            "static_configs": [{"targets": [cluster.server.removeprefix("https://")]}]}


def job(name: str, target: str, **extra: Any) -> dict[str, Any]:
    return {"job_name": name, "static_configs": [{"targets": [target]}], **extra}


def pa_status(cluster: Cluster) -> str:
    """The PredictiveAutoscaler's status, for a failed wait."""
    doc = json.loads(cluster.kubectl("get", "predictiveautoscaler", DEPLOYMENT, "-n", NAMESPACE,
                                     "-o", "json"))
    return f"PredictiveAutoscaler status: {json.dumps(doc.get('status'))[:2000]}"
