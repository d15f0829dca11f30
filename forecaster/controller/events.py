"""Kubernetes Events about PredictiveAutoscalers (``core/v1`` Events, deduplicated).

An Event is written for what a person should see in ``kubectl describe pa``: a scale, a
forecast turning unhealthy, a missing target, a bad spec. The same (object, reason,
message) is written at most once per ``dedupe_s``; failures to write an Event are logged
and never fail a reconcile.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any, Final

from forecaster.controller.clock import Clock
from forecaster.controller.status import rfc3339
from forecaster.kube import KubeApi, KubeError

log = logging.getLogger(__name__)

COMPONENT: Final = "prescale-forecaster"


class EventRecorder:
    """Writes Events for one controller replica; ``allowed()`` gates writes (leadership)."""

    def __init__(
        self,
        kube: KubeApi,
        clock: Clock,
        *,
        dedupe_s: float = 600.0,
        allowed: Callable[[], bool] = lambda: True,
    ) -> None:
        self._kube, self._clock, self._dedupe_s, self._allowed = kube, clock, dedupe_s, allowed
        self._seen: dict[tuple[str, str, str, str], float] = {}
        self.written = 0

    async def record(self, obj: Mapping[str, Any], event_type: str, reason: str, message: str) -> bool:
        """Write one Event about ``obj``; False when deduplicated, not allowed, or failed."""
        meta = obj.get("metadata") or {}
        ns, name = str(meta.get("namespace", "default")), str(meta.get("name", ""))
        now = self._clock.now()
        key = (ns, name, reason, message)
        if now - self._seen.get(key, -1e18) < self._dedupe_s or not self._allowed():
            return False
        self._seen[key] = now
        if len(self._seen) > 20_000:
            self._seen = {k: t for k, t in self._seen.items() if now - t < self._dedupe_s}
        event = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"generateName": f"{name}.", "namespace": ns},
            "involvedObject": {
                "apiVersion": obj.get("apiVersion", ""),
                "kind": obj.get("kind", ""),
                "name": name,
                "namespace": ns,
                "uid": meta.get("uid", ""),
                "resourceVersion": meta.get("resourceVersion", ""),
            },
            "reason": reason,
            "message": message[:1000],
            "type": event_type,
            "firstTimestamp": rfc3339(now),
            "lastTimestamp": rfc3339(now),
            "count": 1,
            "source": {"component": COMPONENT},
            "reportingComponent": COMPONENT,
        }
        try:
            await self._kube.create(f"/api/v1/namespaces/{ns}/events", event)
        except KubeError as e:
            log.warning(
                "event not written",
                extra={"fields": {"object": f"{ns}/{name}", "reason": reason, "error": str(e)}},
            )
            return False
        self.written += 1
        return True
