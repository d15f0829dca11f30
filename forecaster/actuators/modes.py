"""Actuation modes: how a decision reaches the cluster. One Protocol, a dict registry.

- ``direct``: the target's scale subresource is set to the decision.
- ``hpa-floor``: the named HPA's ``minReplicas`` is set to the decision (clamped to the
  HPA's own ``maxReplicas``); the native HPA keeps reacting above the floor.
- ``external-metric``: nothing is written; the forecast is published as metrics and the
  adapter serves it to an HPA that scales on it.
- ``dry-run``: nothing is written; status and metrics only.

Each returns the replicas it put in place (or None when it wrote nothing).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Protocol

from forecaster.actuators.workload import Workload, scale_to
from forecaster.controller.spec import PASpec
from forecaster.kube import KubeApi


@dataclass(frozen=True)
class Applied:
    """What an actuation did."""

    replicas: int | None
    """Replicas (or floor) now in place because of us; None: nothing written."""
    changed: bool
    """True when a write changed the cluster."""
    detail: str = ""


class Actuator(Protocol):
    """Puts ``replicas`` in place for one target."""

    async def apply(
        self, kube: KubeApi, namespace: str, spec: PASpec, workload: Workload, replicas: int
    ) -> Applied: ...


class DirectScale:
    """``direct``: write the target's ``/scale``."""

    async def apply(
        self, kube: KubeApi, namespace: str, spec: PASpec, workload: Workload, replicas: int
    ) -> Applied:
        if workload.replicas == replicas:
            return Applied(replicas, False)
        await scale_to(kube, workload.path, replicas)
        return Applied(replicas, True, f"scaled {workload.replicas} -> {replicas}")


class HpaFloor:
    """``hpa-floor``: raise and lower the HPA's ``minReplicas``."""

    async def apply(
        self, kube: KubeApi, namespace: str, spec: PASpec, workload: Workload, replicas: int
    ) -> Applied:
        path = f"/apis/autoscaling/v2/namespaces/{namespace}/horizontalpodautoscalers/{spec.hpa_name}"
        hpa = await kube.get(path)
        hspec = hpa.get("spec") or {}
        floor = max(1, min(replicas, int(hspec.get("maxReplicas", replicas))))
        current = int(hspec.get("minReplicas", 1))
        if current == floor:
            return Applied(floor, False)
        await kube.merge_patch(path, {"spec": {"minReplicas": floor}})
        return Applied(floor, True, f"HPA {spec.hpa_name} minReplicas {current} -> {floor}")


class NoWrite:
    """``external-metric`` and ``dry-run``: status and metrics only."""

    async def apply(
        self, kube: KubeApi, namespace: str, spec: PASpec, workload: Workload, replicas: int
    ) -> Applied:
        return Applied(None, False)


ACTUATORS: Final[dict[str, Actuator]] = {
    "direct": DirectScale(),
    "hpa-floor": HpaFloor(),
    "external-metric": NoWrite(),
    "dry-run": NoWrite(),
}
"""Every actuation mode by its ``spec.actuation.mode`` name."""
