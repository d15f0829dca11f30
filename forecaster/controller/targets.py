"""Which PredictiveAutoscalers point at which workload, and what changed on a workload.

The controller watches Deployments and StatefulSets (an InferenceService is scaled through
its predictor Deployment, so it is covered too). It keeps, per workload, only the two numbers
a reconcile reacts to, ``(spec.replicas, status.readyReplicas)``; a change of either (or the
workload appearing or disappearing) names the PredictiveAutoscalers to reconcile at once.
Other target kinds are read on each periodic reconcile only.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from forecaster.actuators.workload import resolve
from forecaster.controller.spec import SpecError, parse

Key = tuple[str, str]
Summary = tuple[int, int]

WATCHED: Final[dict[str, str]] = {"Deployment": "deployments", "StatefulSet": "statefulsets"}
"""Kinds whose objects are watched, by their resource name (all in ``apps/v1``)."""


def collections(namespace: str | None) -> list[str]:
    """Collection paths to watch: every watched kind, in ``namespace`` or cluster-wide."""
    ns = f"/namespaces/{namespace}" if namespace else ""
    return [f"/apis/apps/v1{ns}/{plural}" for plural in WATCHED.values()]


def item_path(collection: str, obj: Mapping[str, Any]) -> str:
    """API path of one object of a watched collection (the path :func:`resolve` gives)."""
    meta = obj.get("metadata") or {}
    plural = collection.rsplit("/", 1)[-1]
    return f"/apis/apps/v1/namespaces/{meta.get('namespace', '')}/{plural}/{meta.get('name', '')}"


def summary(obj: Mapping[str, Any]) -> Summary:
    """``(spec.replicas, status.readyReplicas)``: what a target event is judged by."""
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    return int(spec.get("replicas", 1) or 0), int(status.get("readyReplicas", 0) or 0)


def target_of(pa: Mapping[str, Any]) -> str | None:
    """Path of the watched workload a PredictiveAutoscaler scales; None when its spec is
    invalid or its target kind is not watched."""
    try:
        spec = parse(pa)
    except SpecError:
        return None
    path, kind = resolve(spec.target, str((pa.get("metadata") or {}).get("namespace", "")))
    return path if kind in WATCHED else None


class TargetIndex:
    """PredictiveAutoscalers by target path, and the last summary seen of each workload."""

    def __init__(self) -> None:
        self._pas: dict[str, set[Key]] = {}
        self._target: dict[Key, str] = {}
        self.seen: dict[str, Summary] = {}

    def point(self, key: Key, pa: Mapping[str, Any]) -> None:
        """Record (or move) what ``key`` points at."""
        path = target_of(pa)
        old = self._target.get(key)
        if old == path:
            return
        self.drop(key)
        if path is not None:
            self._target[key] = path
            self._pas.setdefault(path, set()).add(key)

    def drop(self, key: Key) -> None:
        old = self._target.pop(key, None)
        if old is not None:
            keys = self._pas.get(old, set())
            keys.discard(key)
            if not keys:
                self._pas.pop(old, None)

    def pointing_at(self, path: str) -> set[Key]:
        return set(self._pas.get(path, ()))

    def observe(self, path: str, value: Summary | None) -> set[Key]:
        """Record a workload's new summary (None: deleted); the PAs to reconcile when it changed."""
        old = self.seen.pop(path, None) if value is None else self.seen.get(path)
        if value is not None:
            self.seen[path] = value
        return self.pointing_at(path) if old != value else set()

    def relist(self, collection: str, items: list[Mapping[str, Any]]) -> set[Key]:
        """Replace what is known of one collection by a fresh list; the PAs whose target changed."""
        base, _, plural = collection.rpartition("/")
        scope = base + "/" if "/namespaces/" in base else f"{base}/namespaces/"
        fresh = {item_path(collection, o): summary(o) for o in items}
        gone = [p for p in self.seen if p.startswith(scope) and p.split("/")[-2] == plural and p not in fresh]
        changed: set[Key] = set()
        for path in gone:
            changed |= self.observe(path, None)
        for path, value in fresh.items():
            changed |= self.observe(path, value)
        return changed
