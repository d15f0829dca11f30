"""Measured lead time: from a scale-up request to its pods being Ready.

When a scale-up the controller requested has all its replicas Ready, the pods created
for it are listed and the delay is taken from their ``Ready`` condition's transition time
(the apiserver's clock, one-second resolution), not from when the controller happened to
look. The slowest new pod counts: the scale-up is ready when its last replica is.
"""

from __future__ import annotations

from dataclasses import dataclass

from forecaster.controller.status import parse_time
from forecaster.kube import JsonObj, KubeApi, KubeError

CLOCK_SLACK_S = 1.0
"""Kubernetes timestamps are truncated to seconds: a pod created in the same second counts."""


@dataclass(frozen=True)
class ScaleUp:
    """A scale-up the controller requested."""

    requested_at_s: float
    replicas: int
    """Replicas asked for."""
    previous: int
    """Replicas before the request."""


def ready_since(pod: JsonObj) -> float | None:
    """When the pod became Ready, or None while it is not."""
    for c in (pod.get("status") or {}).get("conditions") or []:
        if c.get("type") == "Ready" and c.get("status") == "True" and c.get("lastTransitionTime"):
            return parse_time(str(c["lastTransitionTime"]))
    return None


def scale_up_delay(pods: list[JsonObj], up: ScaleUp) -> float | None:
    """Seconds from the request to the last new pod Ready; None when no new pod is Ready."""
    times = []
    for pod in pods:
        created = (pod.get("metadata") or {}).get("creationTimestamp")
        if created is None or parse_time(str(created)) < up.requested_at_s - CLOCK_SLACK_S:
            continue
        ready = ready_since(pod)
        if ready is not None:
            times.append(ready)
    return max(0.0, max(times) - up.requested_at_s) if times else None


async def measure_scale_up(
    kube: KubeApi, namespace: str, selector: str, up: ScaleUp, now_s: float
) -> float | None:
    """The measured delay; the time until now when the pods cannot be read."""
    if not selector:
        return now_s - up.requested_at_s
    try:
        pods = await kube.get(f"/api/v1/namespaces/{namespace}/pods", {"labelSelector": selector})
    except KubeError:
        return now_s - up.requested_at_s
    return scale_up_delay(list(pods.get("items") or []), up)
