"""The scaled workload: where it lives in the API, what it runs now, and its scale subresource.

Any kind with a ``/scale`` subresource works. Deployments and StatefulSets are read whole
(one GET gives replicas, ready replicas and the selector); other kinds through ``/scale``.
A KServe ``InferenceService`` is scaled through its predictor Deployment
(``<name>-predictor``, KServe's raw-deployment naming).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from forecaster.controller.spec import TargetRef
from forecaster.kube import JsonObj, KubeApi, KubeError

_PLURALS: Final[dict[str, str]] = {
    "Deployment": "deployments",
    "StatefulSet": "statefulsets",
    "ReplicaSet": "replicasets",
    "ReplicationController": "replicationcontrollers",
    "MachineDeployment": "machinedeployments",
    "NodePool": "nodepools",
}
_WHOLE_OBJECT: Final = frozenset({"Deployment", "StatefulSet", "ReplicaSet"})


@dataclass(frozen=True)
class Workload:
    """What the controller knows about the target at one reconcile."""

    path: str
    """API path of the object (``/apis/apps/v1/namespaces/ns/deployments/name``)."""
    replicas: int
    """Replicas requested (``spec.replicas``)."""
    ready_replicas: int
    """Replicas Ready now (``status.readyReplicas``; ``status.replicas`` for other kinds)."""
    selector: str
    """Label selector of its pods (``a=b,c=d``), empty when unknown."""
    uid: str = ""


def plural(kind: str) -> str:
    """The resource name of a kind: known ones from a table, others lowercased plus ``s``."""
    return _PLURALS.get(kind) or kind.lower() + "s"


def object_path(api_version: str, kind: str, namespace: str, name: str) -> str:
    """API path of a namespaced object (``namespace`` empty: cluster-scoped)."""
    base = f"/api/{api_version}" if "/" not in api_version else f"/apis/{api_version}"
    ns = f"/namespaces/{namespace}" if namespace else ""
    return f"{base}{ns}/{plural(kind)}/{name}"


def resolve(ref: TargetRef, namespace: str) -> tuple[str, str]:
    """``(path, kind)`` of the object whose replicas we scale."""
    if ref.kind == "InferenceService":
        return object_path("apps/v1", "Deployment", namespace, f"{ref.name}-predictor"), "Deployment"
    return object_path(ref.api_version, ref.kind, namespace, ref.name), ref.kind


def _selector(match_labels: object) -> str:
    if not isinstance(match_labels, dict):
        return ""
    return ",".join(f"{k}={v}" for k, v in sorted(match_labels.items()))


async def read_workload(kube: KubeApi, ref: TargetRef, namespace: str) -> Workload:
    """Read the target; raises :class:`forecaster.kube.NotFound` when it does not exist."""
    path, kind = resolve(ref, namespace)
    if kind in _WHOLE_OBJECT:
        obj = await kube.get(path)
        spec, status = obj.get("spec") or {}, obj.get("status") or {}
        return Workload(
            path,
            int(spec.get("replicas", 1)),
            int(status.get("readyReplicas", 0) or 0),
            _selector((spec.get("selector") or {}).get("matchLabels")),
            str(obj.get("metadata", {}).get("uid", "")),
        )
    scale = await kube.get(f"{path}/scale")
    sstatus = scale.get("status") or {}
    return Workload(
        path,
        int((scale.get("spec") or {}).get("replicas", 0)),
        int(sstatus.get("replicas", 0)),
        str(sstatus.get("selector", "")),
        str(scale.get("metadata", {}).get("uid", "")),
    )


async def scale_to(kube: KubeApi, path: str, replicas: int) -> JsonObj:
    """Set ``spec.replicas`` through the scale subresource (never the whole object)."""
    return await kube.merge_patch(f"{path}/scale", {"spec": {"replicas": int(replicas)}})


async def bound_replicas(kube: KubeApi, namespace: str, workload: Workload) -> int:
    """The workload's pods that hold a node now (not being deleted), at most its replicas; its
    replicas when its pods cannot be listed."""
    if not workload.selector:
        return workload.replicas
    try:
        pods = await kube.get(f"/api/v1/namespaces/{namespace}/pods", {"labelSelector": workload.selector})
    except KubeError:
        return workload.replicas
    bound = sum(
        1
        for pod in pods.get("items", [])
        if pod.get("spec", {}).get("nodeName") and not pod.get("metadata", {}).get("deletionTimestamp")
    )
    return min(bound, workload.replicas)
