"""Actuation modes: how a decision reaches the cluster. One Protocol, a dict registry.

- ``direct``: the target's scale subresource is set to the decision.
- ``hpa-floor``: the named HPA's ``minReplicas`` is set to the decision (clamped to the
  HPA's own ``maxReplicas``); the native HPA keeps reacting above the floor.
- ``external-metric``: nothing is written; the forecast is published as metrics and the
  adapter serves it to an HPA that scales on it.
- ``dry-run``: nothing is written; status and metrics only.

Each returns the replicas it put in place (or None when it wrote nothing). With
``raise_only`` (a reconcile between cycles) a write that would lower what is in place is not
made: scale-downs and their rate limits belong to the periodic cycle.
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


def unchanged(current: int, wanted: int, raise_only: bool) -> Applied | None:
    """What is applied without a write: nothing when ``wanted`` is in place, the current value
    when ``wanted`` would lower it between cycles; None when a write is due."""
    if current == wanted:
        return Applied(wanted, False)
    if raise_only and wanted < current:
        why = f"{current} -> {wanted} waits for the next cycle (only raises between cycles)"
        return Applied(current, False, why)
    return None


class Actuator(Protocol):
    """Puts ``replicas`` in place for one target."""

    async def apply(
        self,
        kube: KubeApi,
        namespace: str,
        spec: PASpec,
        workload: Workload,
        replicas: int,
        *,
        raise_only: bool = False,
    ) -> Applied: ...


class DirectScale:
    """``direct``: write the target's ``/scale``."""

    async def apply(
        self,
        kube: KubeApi,
        namespace: str,
        spec: PASpec,
        workload: Workload,
        replicas: int,
        *,
        raise_only: bool = False,
    ) -> Applied:
        if (kept := unchanged(workload.replicas, replicas, raise_only)) is not None:
            return kept
        await scale_to(kube, workload.path, replicas)
        return Applied(replicas, True, f"scaled {workload.replicas} -> {replicas}")


class HpaFloor:
    """``hpa-floor``: raise and lower the HPA's ``minReplicas``."""

    async def apply(
        self,
        kube: KubeApi,
        namespace: str,
        spec: PASpec,
        workload: Workload,
        replicas: int,
        *,
        raise_only: bool = False,
    ) -> Applied:
        path = f"/apis/autoscaling/v2/namespaces/{namespace}/horizontalpodautoscalers/{spec.hpa_name}"
        hpa = await kube.get(path)
        hspec = hpa.get("spec") or {}
        floor = max(1, min(replicas, int(hspec.get("maxReplicas", replicas))))
        current = int(hspec.get("minReplicas", 1))
        if (kept := unchanged(current, floor, raise_only)) is not None:
            return kept
        await kube.merge_patch(path, {"spec": {"minReplicas": floor}})
        return Applied(floor, True, f"HPA {spec.hpa_name} minReplicas {current} -> {floor}")


class NoWrite:
    """``external-metric`` and ``dry-run``: status and metrics only."""

    async def apply(
        self,
        kube: KubeApi,
        namespace: str,
        spec: PASpec,
        workload: Workload,
        replicas: int,
        *,
        raise_only: bool = False,
    ) -> Applied:
        return Applied(None, False)


ACTUATORS: Final[dict[str, Actuator]] = {
    "direct": DirectScale(),
    "hpa-floor": HpaFloor(),
    "external-metric": NoWrite(),
    "dry-run": NoWrite(),
}
"""Every actuation mode by its ``spec.actuation.mode`` name."""
