"""GPU node-pool headroom: provision the GPUs the forecast will need before the pods ask.

One Protocol, four backends in a dict registry:

- ``placeholder-pods``: a Deployment of pause pods at a negative PriorityClass, each holding
  ``gpusPerReplica`` GPUs. They sit on free GPUs, or stay Pending and make the cluster's node
  autoscaler add nodes; serving pods preempt them (higher priority) the moment they need
  the GPUs. Released by scaling the placeholders down: only placeholders are ever deleted.
- ``capacity-buffer``: cluster-autoscaler's ``CapacityBuffer`` (``autoscaling.x-k8s.io``):
  its ``spec.replicas`` is set to the number of replica-sized chunks.
- ``machine-deployment`` (Cluster API) and ``karpenter-nodepool``: the ``/scale``
  subresource is raised by the extra nodes over the replicas found before our first raise
  (the baseline), and lowered back only to that baseline: we remove only what we added, and
  node removal itself (drain) stays with the infrastructure provider.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Final, Protocol

from forecaster.controller.spec import NodePoolSpec
from forecaster.kube import KubeApi, NotFound

PLACEHOLDER_PRIORITY: Final = -10
PLACEHOLDER_IMAGE: Final = "registry.k8s.io/pause:3.10"
MANAGED_BY: Final = "prescale.dev/managed-by"


@dataclass(frozen=True)
class Headroom:
    """Headroom asked of the pool at one reconcile."""

    backend: str
    gpus: int
    """Extra GPUs asked for."""
    nodes: int
    """Extra nodes that means (``ceil(gpus / gpusPerNode)``)."""
    placeholders: int = 0
    """Placeholder pods (or buffer chunks) asked for."""


def headroom_gpus(future_replicas: int, current_replicas: int, pool: NodePoolSpec) -> int:
    """Extra GPUs the forecast needs beyond what the target holds, capped by ``maxNodes``."""
    extra = max(0, future_replicas - current_replicas) * pool.gpus_per_replica
    return min(extra, pool.max_nodes * pool.gpus_per_node)


class NodePoolBackend(Protocol):
    """Makes ``gpus`` extra GPUs available (0 releases what was asked before)."""

    async def provide(
        self, kube: KubeApi, namespace: str, owner: str, pool: NodePoolSpec, gpus: int
    ) -> Headroom: ...


def placeholder_name(owner: str, pool: NodePoolSpec) -> str:
    return pool.name or f"{owner}-headroom"


def placeholder_deployment(
    name: str, namespace: str, owner: str, pool: NodePoolSpec, replicas: int
) -> dict[str, Any]:
    """The placeholder Deployment: pause pods holding GPUs at a negative priority."""
    labels = {"app.kubernetes.io/name": name, MANAGED_BY: "prescale", "prescale.dev/owner": owner}
    pod_spec: dict[str, Any] = {
        "priorityClassName": pool.priority_class,
        "terminationGracePeriodSeconds": 0,
        "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
        "containers": [
            {
                "name": "placeholder",
                "image": PLACEHOLDER_IMAGE,
                "resources": {"limits": {"nvidia.com/gpu": str(pool.gpus_per_replica)}},
            }
        ],
    }
    if pool.node_selector:
        pod_spec["nodeSelector"] = dict(pool.node_selector)
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": namespace, "labels": labels},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app.kubernetes.io/name": name}},
            "template": {"metadata": {"labels": labels}, "spec": pod_spec},
        },
    }


async def ensure_priority_class(kube: KubeApi, name: str) -> None:
    """Create the placeholders' PriorityClass when missing (never preempts, never default)."""
    path = "/apis/scheduling.k8s.io/v1/priorityclasses"
    try:
        await kube.get(f"{path}/{name}")
    except NotFound:
        await kube.create(
            path,
            {
                "apiVersion": "scheduling.k8s.io/v1",
                "kind": "PriorityClass",
                "metadata": {"name": name, "labels": {MANAGED_BY: "prescale"}},
                "value": PLACEHOLDER_PRIORITY,
                "globalDefault": False,
                "preemptionPolicy": "Never",
                "description": "prescale GPU headroom placeholders; any serving pod preempts them",
            },
        )


class PlaceholderPods:
    """``placeholder-pods`` backend."""

    async def provide(
        self, kube: KubeApi, namespace: str, owner: str, pool: NodePoolSpec, gpus: int
    ) -> Headroom:
        count = math.ceil(gpus / pool.gpus_per_replica)
        name = placeholder_name(owner, pool)
        path = f"/apis/apps/v1/namespaces/{namespace}/deployments/{name}"
        try:
            current = await kube.get(path)
        except NotFound:
            if count == 0:
                return Headroom("placeholder-pods", 0, 0, 0)
            await ensure_priority_class(kube, pool.priority_class)
            await kube.create(
                f"/apis/apps/v1/namespaces/{namespace}/deployments",
                placeholder_deployment(name, namespace, owner, pool, count),
            )
        else:
            if int((current.get("spec") or {}).get("replicas", 0)) != count:
                await kube.merge_patch(f"{path}/scale", {"spec": {"replicas": count}})
        return Headroom("placeholder-pods", gpus, math.ceil(gpus / pool.gpus_per_node), count)


class CapacityBuffer:
    """``capacity-buffer`` backend (cluster-autoscaler ``CapacityBuffer``)."""

    async def provide(
        self, kube: KubeApi, namespace: str, owner: str, pool: NodePoolSpec, gpus: int
    ) -> Headroom:
        count = math.ceil(gpus / pool.gpus_per_replica)
        ns = pool.namespace or namespace
        path = f"/apis/autoscaling.x-k8s.io/v1alpha1/namespaces/{ns}/capacitybuffers/{pool.name}"
        await kube.merge_patch(path, {"spec": {"replicas": count}})
        return Headroom("capacity-buffer", gpus, math.ceil(gpus / pool.gpus_per_node), count)


class ScaledPool:
    """``/scale`` backends: Cluster API MachineDeployment, Karpenter NodePool."""

    def __init__(self, backend: str, api_version: str, plural: str, namespaced: bool) -> None:
        self.backend, self.api_version, self.plural, self.namespaced = (
            backend,
            api_version,
            plural,
            namespaced,
        )
        self._baseline: dict[str, int] = {}

    def _path(self, namespace: str, pool: NodePoolSpec) -> str:
        ns = f"/namespaces/{pool.namespace or namespace}" if self.namespaced else ""
        return f"/apis/{self.api_version}{ns}/{self.plural}/{pool.name}/scale"

    async def provide(
        self, kube: KubeApi, namespace: str, owner: str, pool: NodePoolSpec, gpus: int
    ) -> Headroom:
        path = self._path(namespace, pool)
        nodes = math.ceil(gpus / pool.gpus_per_node)
        current = int(((await kube.get(path)).get("spec") or {}).get("replicas", 0))
        base = self._baseline.setdefault(path, current)
        want = base + nodes
        if want != current:
            await kube.merge_patch(path, {"spec": {"replicas": want}})
        if nodes == 0:
            self._baseline.pop(path, None)
        return Headroom(self.backend, gpus, nodes, 0)


def backends() -> dict[str, NodePoolBackend]:
    """A fresh registry (the ``/scale`` backends remember their baselines per controller)."""
    return {
        "placeholder-pods": PlaceholderPods(),
        "capacity-buffer": CapacityBuffer(),
        "machine-deployment": ScaledPool(
            "machine-deployment", "cluster.x-k8s.io/v1beta1", "machinedeployments", True
        ),
        "karpenter-nodepool": ScaledPool("karpenter-nodepool", "karpenter.sh/v1", "nodepools", False),
    }
