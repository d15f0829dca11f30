"""Helpers for applying the rendered chart to the real test control plane: a namespace that
enforces the restricted Pod Security level, JSON reads through kubectl, and the removal of
what a release put outside its namespace."""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import yaml
from deploylib import Obj

from prescale.stack import polling
from prescale.stack.cluster import Cluster

GPU_TOLERATION = {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
CLUSTER_SCOPED = {"ClusterRole", "ClusterRoleBinding", "PriorityClass", "APIService",
                  "CustomResourceDefinition"}


def wait_for(cond: Callable[[], Any], timeout_s: float, what: str, cluster: Cluster) -> Any:
    return polling.wait_for(cond, timeout_s, what, cluster.logs, interval_s=0.5)


def get(cluster: Cluster, *args: str) -> Any:
    return json.loads(cluster.kubectl("get", *args, "-o", "json"))


@contextmanager
def restricted_namespace(cluster: Cluster, prefix: str) -> Iterator[str]:
    """A fresh namespace enforcing restricted Pod Security; deleted (not awaited) afterwards."""
    name = f"{prefix}{secrets.token_hex(3)}"
    cluster.apply(yaml.safe_dump({"apiVersion": "v1", "kind": "Namespace", "metadata": {
        "name": name, "labels": {"pod-security.kubernetes.io/enforce": "restricted",
                                 "pod-security.kubernetes.io/warn": "restricted"}}}))
    try:
        yield name
    finally:
        cluster.kubectl("delete", "namespace", name, "--wait=false")


def cleanup(cluster: Cluster, objects: list[Obj]) -> None:
    """Delete the cluster-scoped and kube-system objects among ``objects`` (the namespace goes
    with the release)."""
    for o in objects:
        args = [o["kind"].lower(), o["metadata"]["name"], "--ignore-not-found", "--wait=false"]
        if o["kind"] in CLUSTER_SCOPED:
            cluster.kubectl("delete", *args)
        elif o["metadata"].get("namespace") == "kube-system":
            cluster.kubectl("delete", "-n", "kube-system", *args)
