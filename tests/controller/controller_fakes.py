"""In-memory fakes at the controller's seams: the API (KubeApi), the metric source, the clock."""

from __future__ import annotations

import asyncio
import copy
import math
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any

import numpy as np

from forecaster.kube import Conflict, Gone, JsonObj, NotFound, Retryable
from forecaster.source import RangeResult, SourceUnavailable, grid


def merge(dst: dict[str, Any], patch: Mapping[str, Any]) -> None:
    """RFC 7386 JSON merge patch."""
    for k, v in patch.items():
        if v is None:
            dst.pop(k, None)
        elif isinstance(v, Mapping) and isinstance(dst.get(k), dict):
            merge(dst[k], v)
        else:
            dst[k] = copy.deepcopy(v)


class FakeKube:
    """Objects by API path; ``/scale`` and ``/status`` act on their parent like the apiserver."""

    def __init__(self) -> None:
        self.objects: dict[str, JsonObj] = {}
        self.writes: list[tuple[str, str, Any]] = []
        self.fail: Callable[[str, str], Exception | None] = lambda method, path: None
        self.queues: dict[str, asyncio.Queue[tuple[str, JsonObj]]] = {}
        self.watching: dict[str, int] = {}
        """Watch streams opened, by collection path."""
        self._rv = 100

    def queue(self, path: str) -> asyncio.Queue[tuple[str, JsonObj]]:
        """The event queue a watch on collection ``path`` reads (one per path, so watches on
        different collections never take each other's events)."""
        return self.queues.setdefault(path, asyncio.Queue())

    def _next_rv(self) -> str:
        self._rv += 1
        return str(self._rv)

    def put(self, path: str, obj: JsonObj) -> JsonObj:
        obj = copy.deepcopy(obj)
        meta = obj.setdefault("metadata", {})
        meta["resourceVersion"] = self._next_rv()
        meta.setdefault("generation", 1)
        meta.setdefault("uid", f"uid-{self._rv}")
        self.objects[path] = obj
        return obj

    def _check(self, method: str, path: str) -> None:
        err = self.fail(method, path)
        if err is not None:
            raise err

    async def get(self, path: str, query: Mapping[str, str] | None = None) -> JsonObj:
        self._check("GET", path)
        if path.endswith("/scale"):
            parent = self._obj(path.removesuffix("/scale"))
            return {
                "spec": {"replicas": parent["spec"].get("replicas", 1)},
                "status": {"replicas": parent.get("status", {}).get("replicas", 0)},
            }
        if path in self.objects:
            return copy.deepcopy(self.objects[path])
        prefix = path.rstrip("/") + "/"
        items = [
            copy.deepcopy(o)
            for p, o in self.objects.items()
            if p.startswith(prefix) and "/" not in p[len(prefix) :]
        ]
        if items or path.endswith("s"):
            return {
                "items": self._select(items, (query or {}).get("labelSelector", "")),
                "metadata": {"resourceVersion": str(self._rv)},
            }
        raise NotFound(f"GET {path}: 404", 404)

    @staticmethod
    def _select(items: list[JsonObj], selector: str) -> list[JsonObj]:
        want = dict(kv.split("=", 1) for kv in selector.split(",") if kv)
        return [
            o
            for o in items
            if all(o.get("metadata", {}).get("labels", {}).get(k) == v for k, v in want.items())
        ]

    def _obj(self, path: str) -> JsonObj:
        if path not in self.objects:
            raise NotFound(f"{path}: 404", 404)
        return self.objects[path]

    async def create(self, path: str, body: JsonObj) -> JsonObj:
        self._check("POST", path)
        name = body["metadata"].get("name") or f"{body['metadata'].get('generateName', 'x-')}{self._rv}"
        full = f"{path}/{name}"
        if full in self.objects:
            raise Conflict(f"{full} exists", 409)
        self.writes.append(("POST", path, body))
        body = copy.deepcopy(body)
        body["metadata"]["name"] = name
        return self.put(full, body)

    async def merge_patch(self, path: str, body: JsonObj) -> JsonObj:
        self._check("PATCH", path)
        self.writes.append(("PATCH", path, body))
        target = path.removesuffix("/scale").removesuffix("/status")
        obj = self._obj(target)
        merge(obj, body)
        obj["metadata"]["resourceVersion"] = self._next_rv()
        if "spec" in body and not path.endswith(("/scale", "/status")):
            obj["metadata"]["generation"] = obj["metadata"].get("generation", 1) + 1
        return copy.deepcopy(obj)

    async def replace(self, path: str, body: JsonObj) -> JsonObj:
        self._check("PUT", path)
        cur = self._obj(path)
        if body["metadata"].get("resourceVersion") != cur["metadata"]["resourceVersion"]:
            raise Conflict(f"{path}: stale", 409)
        self.writes.append(("PUT", path, body))
        return self.put(path, body)

    async def delete(self, path: str) -> None:
        self._check("DELETE", path)
        self.objects.pop(path, None)

    async def watch(
        self, path: str, resource_version: str, timeout_s: int
    ) -> AsyncIterator[tuple[str, JsonObj]]:
        self._check("WATCH", path)
        self.watching[path] = self.watching.get(path, 0) + 1
        events = self.queue(path)
        while True:
            kind, obj = await events.get()
            if kind == "GONE":
                raise Gone("too old", 410)
            if kind == "CLOSE":
                return
            if kind == "ERROR":
                raise Retryable("boom", 500)
            yield kind, obj


class FakeSource:
    """Demand ``f(t)`` on any grid; ``down`` makes it unreachable, ``empty`` returns nothing."""

    def __init__(self, demand: Callable[[float], float]) -> None:
        self.demand = demand
        self.down = False
        self.empty = False
        self.range_calls = 0
        self.points = 0

    async def range(self, query: str, start_s: float, end_s: float, step_s: float) -> RangeResult:
        if self.down:
            raise SourceUnavailable("connection refused")
        self.range_calls += 1
        n = grid(start_s, end_s, step_s)
        self.points += n
        if self.empty:
            return RangeResult(start_s, step_s, np.full(n, np.nan))
        t = start_s + step_s * np.arange(n)
        return RangeResult(start_s, step_s, np.array([self.demand(float(x)) for x in t]))

    async def instant(self, query: str, at_s: float | None = None) -> float | None:
        if self.down:
            raise SourceUnavailable("connection refused")
        return None


class FakeClock:
    """Time moves only when told to (``advance``) or when a sleeper asks (instantly)."""

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self.t = start

    def now(self) -> float:
        return self.t

    def advance(self, seconds: float) -> None:
        self.t += seconds

    async def sleep(self, seconds: float) -> None:
        self.t += max(0.0, seconds)
        await asyncio.sleep(0)


def daily(base: float = 20.0, amp: float = 15.0, period_s: float = 3600.0) -> Callable[[float], float]:
    """A smooth seasonal demand with period ``period_s``."""
    return lambda t: base + amp * math.sin(2 * math.pi * t / period_s)


def deployment(ns: str, name: str, replicas: int, ready: int | None = None) -> JsonObj:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": ns},
        "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}}},
        "status": {"readyReplicas": replicas if ready is None else ready},
    }


def pa(ns: str, name: str, target: str, **spec: Any) -> JsonObj:
    body: dict[str, Any] = {
        "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": target},
        "minReplicas": 1,
        "maxReplicas": 20,
        "demand": {"query": "sum(demand)", "stepSeconds": 60, "historySeconds": 86400},
        "capacity": {"requestsPerSecondPerReplica": 10},
        "leadTime": {"podSeconds": 120, "measure": True},
        "forecast": {"seasonalitiesSeconds": [3600], "models": ["fourier", "seasonal_naive"]},
        "actuation": {"mode": "direct"},
    }
    merge(body, spec)
    return {
        "apiVersion": "autoscaling.prescale.dev/v1alpha1",
        "kind": "PredictiveAutoscaler",
        "metadata": {"name": name, "namespace": ns, "generation": 1},
        "spec": body,
    }


PA_PATH = "/apis/autoscaling.prescale.dev/v1alpha1/namespaces/{ns}/predictiveautoscalers/{name}"
DEPLOY_PATH = "/apis/apps/v1/namespaces/{ns}/deployments/{name}"
