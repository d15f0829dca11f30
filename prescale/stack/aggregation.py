"""Registering an extension API server (the adapter) with the local aggregator.

The aggregator routes to EndpointSlice addresses (``--enable-aggregator-routing``), which
must not be loopback: the server listens on the private namespace address, behind a
selector-less Service and a hand-made EndpointSlice.
"""

from __future__ import annotations

import base64
import json
import subprocess
from dataclasses import dataclass

import yaml

from prescale.stack.cluster import Cluster
from prescale.stack.errors import StackError
from prescale.stack.polling import wait_for


@dataclass(frozen=True)
class ApiServiceBackend:
    """Where an API group is served and how to trust it."""

    group: str
    version: str
    service: str
    namespace: str
    address: str
    port: int
    ca_pem: bytes

    @property
    def name(self) -> str:
        return f"{self.version}.{self.group}"

    def objects(self) -> list[dict[str, object]]:
        return [
            {"apiVersion": "v1", "kind": "Service",
             "metadata": {"name": self.service, "namespace": self.namespace},
             "spec": {"ports": [{"name": "https", "port": 443, "protocol": "TCP"}]}},
            {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
             "metadata": {"name": f"{self.service}-local", "namespace": self.namespace,
                          "labels": {"kubernetes.io/service-name": self.service,
                                     "endpointslice.kubernetes.io/managed-by": "prescale-local-stack"}},
             "addressType": "IPv4",
             "endpoints": [{"addresses": [self.address], "conditions": {"ready": True}}],
             "ports": [{"name": "https", "port": self.port, "protocol": "TCP"}]},
            {"apiVersion": "apiregistration.k8s.io/v1", "kind": "APIService", "metadata": {"name": self.name},
             "spec": {"group": self.group, "version": self.version, "groupPriorityMinimum": 100,
                      "versionPriority": 100, "caBundle": base64.b64encode(self.ca_pem).decode(),
                      "service": {"name": self.service, "namespace": self.namespace, "port": 443}}},
        ]


def register(cluster: Cluster, backend: ApiServiceBackend) -> None:
    cluster.apply(yaml.safe_dump_all(backend.objects()))


def unregister(cluster: Cluster, backend: ApiServiceBackend) -> None:
    cluster.kubectl("delete", "apiservice", backend.name, "--ignore-not-found")
    cluster.kubectl("delete", "-n", backend.namespace, f"service/{backend.service}",
                    f"endpointslice/{backend.service}-local", "--ignore-not-found")


def is_available(cluster: Cluster, name: str) -> bool:
    doc = json.loads(cluster.kubectl("get", "apiservice", name, "-o", "json"))
    return any(c["type"] == "Available" and c["status"] == "True"
               for c in doc.get("status", {}).get("conditions", []))


def wait_available(cluster: Cluster, name: str, timeout_s: float) -> None:
    def conditions() -> str:
        doc = json.loads(cluster.kubectl("get", "apiservice", name, "-o", "json"))
        return f"conditions: {doc.get('status', {}).get('conditions')}"

    wait_for(lambda: is_available(cluster, name), timeout_s, f"APIService {name} Available", conditions)
    # The proxy reads availability from its own informer, so it may still answer 503 for a
    # moment after the status flips: done only once the group's discovery answers through it.
    version, group = name.split(".", 1)
    wait_for(lambda: routes(cluster, f"/apis/{group}/{version}"), timeout_s,
             f"APIService {name} routed by the aggregator", conditions)


def routes(cluster: Cluster, path: str) -> bool:
    """True when a GET of ``path`` through the API server answers (False on any error)."""
    try:
        cluster.kubectl("get", "--raw", path, timeout_s=10)
    except (StackError, subprocess.TimeoutExpired):
        return False
    return True
