"""Leader election on a ``coordination.k8s.io/v1`` Lease, so two replicas never act at once.

client-go's algorithm, reduced: a candidate takes the Lease when it is free or when its
record has not changed for ``lease_s`` *as observed locally* (no cross-machine clock
comparison); the holder renews every ``renew_s`` with an optimistic-concurrency update (a
lost race is a 409, never two holders). The holder stops acting ``renew_s`` before its own
lease could expire without a renewal (``is_leader`` turns false on its own clock), so a
partitioned old leader stops writing before a new one can start. On shutdown the Lease is
released, which lets the standby take over at its next try instead of after expiry.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import Callable
from typing import Any

from forecaster.controller.clock import Clock, sleep_or_stop
from forecaster.kube import Conflict, JsonObj, KubeApi, KubeError, NotFound

log = logging.getLogger(__name__)


def micro_time(t_s: float) -> str:
    """Kubernetes MicroTime."""
    return dt.datetime.fromtimestamp(t_s, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class LeaderElector:
    """Holds (or waits for) one Lease. ``is_leader()`` is safe to call before every write."""

    def __init__(
        self,
        kube: KubeApi,
        clock: Clock,
        namespace: str,
        name: str,
        identity: str,
        *,
        lease_s: float = 10.0,
        renew_s: float = 2.0,
        on_change: Callable[[bool], None] | None = None,
    ) -> None:
        if not 0 < renew_s < lease_s:
            raise ValueError(f"renew period {renew_s} s must be > 0 and < lease duration {lease_s} s")
        self._kube, self._clock = kube, clock
        self.path = f"/apis/coordination.k8s.io/v1/namespaces/{namespace}/leases/{name}"
        self._collection = f"/apis/coordination.k8s.io/v1/namespaces/{namespace}/leases"
        self.namespace, self.name, self.identity = namespace, name, identity
        self.lease_s, self.renew_s = lease_s, renew_s
        self._on_change = on_change
        self._valid_until = 0.0
        self._observed: tuple[str, float] = ("", 0.0)
        """(the record's resourceVersion, local time we first saw it)."""

    def is_leader(self) -> bool:
        return self._clock.now() < self._valid_until

    def _set(self, leader: bool, renewed_at: float = 0.0) -> None:
        was = self.is_leader()
        self._valid_until = renewed_at + self.lease_s - self.renew_s if leader else 0.0
        if was != self.is_leader():
            log.info(
                "leadership changed",
                extra={
                    "fields": {
                        "identity": self.identity,
                        "leader": leader,
                        "lease": f"{self.namespace}/{self.name}",
                    }
                },
            )
            if self._on_change is not None:
                self._on_change(leader)

    def _spec(self, now: float, transitions: int, acquire: str | None) -> dict[str, Any]:
        return {
            "holderIdentity": self.identity,
            "leaseDurationSeconds": int(self.lease_s),
            "acquireTime": acquire or micro_time(now),
            "renewTime": micro_time(now),
            "leaseTransitions": transitions,
        }

    async def try_acquire_or_renew(self) -> bool:
        """One attempt; True when this replica holds the Lease afterwards."""
        now = self._clock.now()
        try:
            lease = await self._kube.get(self.path)
        except NotFound:
            body = {
                "apiVersion": "coordination.k8s.io/v1",
                "kind": "Lease",
                "metadata": {"name": self.name, "namespace": self.namespace},
                "spec": self._spec(now, 0, None),
            }
            return await self._write(self._kube.create(self._collection, body), now)
        spec: JsonObj = lease.get("spec") or {}
        rv = str(lease.get("metadata", {}).get("resourceVersion", ""))
        if rv != self._observed[0]:
            self._observed = (rv, now)
        holder = str(spec.get("holderIdentity") or "")
        duration = float(spec.get("leaseDurationSeconds") or self.lease_s)
        mine = holder == self.identity
        if holder and not mine and now < self._observed[1] + duration:
            self._set(False)
            return False
        transitions = int(spec.get("leaseTransitions") or 0) + (0 if mine else 1)
        lease["spec"] = self._spec(now, transitions, str(spec.get("acquireTime")) if mine else None)
        return await self._write(self._kube.replace(self.path, lease), now)

    async def _write(self, call: Any, now: float) -> bool:
        try:
            await call
        except Conflict:
            self._set(False)
            return False
        self._set(True, now)
        return True

    async def run(self, stop: asyncio.Event) -> None:
        """Acquire and renew until ``stop``; then release if held."""
        while not stop.is_set():
            try:
                await self.try_acquire_or_renew()
            except KubeError as e:
                log.warning("lease attempt failed", extra={"fields": {"error": str(e)}})
                if not self.is_leader():
                    self._set(False)
            await sleep_or_stop(self._clock, stop, self.renew_s)
        await self.release()

    async def release(self) -> None:
        """Give the Lease up (best effort) so a standby takes over without waiting."""
        if not self.is_leader():
            return
        self._set(False)
        try:
            lease = await self._kube.get(self.path)
            if (lease.get("spec") or {}).get("holderIdentity") == self.identity:
                lease["spec"]["holderIdentity"] = ""
                await self._kube.replace(self.path, lease)
        except KubeError as e:
            log.warning("lease not released", extra={"fields": {"error": str(e)}})
