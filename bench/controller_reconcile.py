"""1,000 PredictiveAutoscalers reconciled by one controller replica on one core.

The controller's own work is measured: the real :class:`Controller` and :class:`Reconciler`
(parse, incremental range fetch, model update or refit, calibration, decide, actuate,
status, events) against an in-memory API and an in-memory Prometheus, so API-server and
Prometheus latency are not part of the figure (on a cluster they overlap: requests are
concurrent, ``--concurrency`` at a time).

Also timed: a burst in which every target changes at once (what the target watches trigger
between cycles), as a ratio to a steady cycle of the same run.

Prints: the cold cycle (full history fetch + model selection and fit for every target), the
steady cycles (goal: < 30 s for the fleet), per-target reconcile cost, and peak RSS (goal:
< 1 GiB). Steady cycles advance a fake clock by the interval; refits come due on each
target's own phase (half the refit interval on average after the first fit), so with the
default ``--refit-interval`` equal to a few cycles the figure includes refits too.

Run: ``.venv/bin/python bench/controller_reconcile.py [--pas 1000] [--cycles 4]``
"""

from __future__ import annotations

import os

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import asyncio  # noqa: E402
import copy  # noqa: E402
import resource  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402
from collections.abc import AsyncIterator, Mapping  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402

from forecaster.controller.events import EventRecorder  # noqa: E402
from forecaster.controller.loop import TARGET, Controller  # noqa: E402
from forecaster.controller.metrics import ControllerMetrics  # noqa: E402
from forecaster.controller.reconcile import Deps, Reconciler  # noqa: E402
from forecaster.kube import JsonObj, NotFound  # noqa: E402
from forecaster.source import RangeResult, grid  # noqa: E402

DAY_S = 86400.0


class MemoryApi:
    """Just enough of the API server: GET objects and collections, POST, PATCH, PUT."""

    def __init__(self) -> None:
        self.objects: dict[str, JsonObj] = {}
        self.requests = 0

    async def get(self, path: str, query: Mapping[str, str] | None = None) -> JsonObj:
        self.requests += 1
        if path in self.objects:
            return copy.deepcopy(self.objects[path])
        prefix = path.rstrip("/") + "/"
        items = [o for p, o in self.objects.items() if p.startswith(prefix) and "/" not in p[len(prefix) :]]
        base, _, plural = path.rpartition("/")
        if not items and "/namespaces/" not in path:  # a list across all namespaces
            items = [
                o
                for p, o in self.objects.items()
                if p.startswith(f"{base}/namespaces/") and p.rsplit("/", 2)[1] == plural
            ]
        if items or path.endswith("s"):
            return {"items": copy.deepcopy(items), "metadata": {"resourceVersion": "1"}}
        raise NotFound(f"{path}: 404", 404)

    async def create(self, path: str, body: JsonObj) -> JsonObj:
        self.requests += 1
        return body

    async def merge_patch(self, path: str, body: JsonObj) -> JsonObj:
        self.requests += 1
        obj = self.objects.get(path.removesuffix("/scale").removesuffix("/status"))
        if obj is None:
            raise NotFound(f"{path}: 404", 404)
        if path.endswith("/scale"):
            obj["spec"]["replicas"] = body["spec"]["replicas"]
            obj["status"]["readyReplicas"] = body["spec"]["replicas"]
        elif path.endswith("/status"):
            obj["status"] = body["status"]
        return obj

    async def replace(self, path: str, body: JsonObj) -> JsonObj:
        self.requests += 1
        return body

    async def delete(self, path: str) -> None:
        self.requests += 1

    async def watch(
        self, path: str, resource_version: str, timeout_s: int
    ) -> AsyncIterator[tuple[str, JsonObj]]:
        await asyncio.sleep(timeout_s)
        for _ in ():
            yield "", {}


class SyntheticPrometheus:
    """Per-target demand: level, daily and weekly shape, phase, Poisson noise."""

    def __init__(self, targets: int, seed: int = 7) -> None:
        rng = np.random.default_rng(seed)
        self.level = rng.uniform(5, 500, targets)
        self.phase = rng.uniform(0, 2 * np.pi, targets)
        self.rng = rng
        self.points = 0

    async def range(self, query: str, start_s: float, end_s: float, step_s: float) -> RangeResult:
        i = int(query.split("=")[1].rstrip("}"))
        n = grid(start_s, end_s, step_s)
        self.points += n
        t = start_s + step_s * np.arange(n)
        lam = self.level[i] * (1 + 0.5 * np.sin(2 * np.pi * t / DAY_S + self.phase[i]))
        lam *= 1 + 0.2 * np.sin(2 * np.pi * t / (7 * DAY_S))
        return RangeResult(start_s, step_s, self.rng.poisson(lam).astype(np.float64))

    async def instant(self, query: str, at_s: float | None = None) -> float | None:
        return None


class BenchClock:
    def __init__(self, t: float) -> None:
        self.t = t

    def now(self) -> float:
        return self.t

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(0)


def populate(api: MemoryApi, pas: int, step_s: float, history_days: float, refit_s: float) -> None:
    for i in range(pas):
        ns, name = f"team-{i % 50}", f"model-{i}"
        api.objects[f"/apis/apps/v1/namespaces/{ns}/deployments/{name}"] = {
            "metadata": {"name": name, "namespace": ns},
            "spec": {"replicas": 2, "selector": {"matchLabels": {"app": name}}},
            "status": {"readyReplicas": 2},
        }
        api.objects[
            f"/apis/autoscaling.prescale.dev/v1alpha1/namespaces/{ns}/predictiveautoscalers/{name}"
        ] = {
            "apiVersion": "autoscaling.prescale.dev/v1alpha1",
            "kind": "PredictiveAutoscaler",
            "metadata": {"name": name, "namespace": ns, "generation": 1},
            "spec": {
                "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
                "minReplicas": 1,
                "maxReplicas": 100,
                "demand": {
                    "query": f"demand{{i={i}}}",
                    "stepSeconds": step_s,
                    "historySeconds": history_days * DAY_S,
                },
                "capacity": {"requestsPerSecondPerReplica": 20},
                "leadTime": {"podSeconds": 180},
                "forecast": {"refitIntervalSeconds": refit_s},
            },
        }


async def run(args: argparse.Namespace) -> None:
    api, prom = MemoryApi(), SyntheticPrometheus(args.pas)
    clock = BenchClock(1_800_000_000.0)
    populate(api, args.pas, args.step, args.history_days, args.refit_interval)
    deps = Deps(api, prom, clock, EventRecorder(api, clock), interval_s=args.interval, fit_in_thread=False)
    reconciler = Reconciler(deps)
    controller = Controller(reconciler, ControllerMetrics(), concurrency=args.concurrency)
    await controller._list()
    per_target: list[float] = []
    original = reconciler.reconcile

    async def counted(obj: Mapping[str, Any], *, triggered: bool = False) -> Any:
        per_target.append(1.0)
        return await original(obj, triggered=triggered)

    reconciler.reconcile = counted  # type: ignore[method-assign,assignment]
    cycles: list[tuple[float, float, int]] = []
    for c in range(args.cycles):
        per_target.clear()
        wall, cpu = time.perf_counter(), time.process_time()
        failures = await controller.reconcile_all()
        cycles.append((time.perf_counter() - wall, time.process_time() - cpu, failures))
        label = "cold (fetch history + select + fit)" if c == 0 else "steady"
        per_cpu_ms = cycles[-1][1] / max(len(per_target), 1) * 1e3
        print(
            f"cycle {c}: {label:36s} wall {cycles[-1][0]:6.2f} s  cpu {cycles[-1][1]:6.2f} s  "
            f"cpu per target {per_cpu_ms:6.2f} ms  failures {failures}"
        )
        clock.t += args.interval
    # Target watches: every target changed at once (the worst burst) reconciles every PA
    # between cycles; compared with a steady cycle of the same fleet measured just above.
    clock.t += args.trigger_delay
    wall = time.perf_counter()
    failures = await controller.reconcile_all({key: TARGET for key in controller.cache})
    burst_s = time.perf_counter() - wall
    steady = [w for w, _, _ in cycles[1:]] or [math_nan()]
    rss_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    reasons: dict[str, int] = {}
    for mem in reconciler.memory.values():
        for r, n in mem.decisions.items():
            reasons[r] = reasons.get(r, 0) + n
    print(
        f"\n{args.pas} PredictiveAutoscalers, {args.history_days:g} d history at {args.step:g} s "
        f"({int(args.history_days * DAY_S / args.step)} points each), one core"
    )
    print(
        f"cold cycle: {cycles[0][0]:.1f} s; steady cycle: max {max(steady):.2f} s, "
        f"median {statistics.median(steady):.2f} s (goal < {args.interval:g} s)"
    )
    fit_s = cycles[0][1] / args.pas
    refits = args.pas * args.interval / (0.75 * args.refit_interval)
    print(
        f"refits: {fit_s * 1e3:.0f} ms CPU each; on average {refits:.1f} come due per steady cycle "
        f"(+{refits * fit_s:.2f} s), spread by each target's phase"
    )
    print(
        f"target-change burst ({len(controller.cache)} targets changed at once, {failures} failures): "
        f"{burst_s:.2f} s, {burst_s / statistics.median(steady):.2f}x a steady cycle"
    )
    print(
        f"peak RSS: {rss_mib:.0f} MiB (goal < 1024 MiB); API requests: {api.requests}; "
        f"points fetched: {prom.points}; decisions by reason: {reasons}"
    )


def math_nan() -> float:
    return float("nan")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--pas", type=int, default=1000)
    p.add_argument("--cycles", type=int, default=4)
    p.add_argument("--interval", type=float, default=30.0)
    p.add_argument("--step", type=float, default=60.0)
    p.add_argument("--history-days", type=float, default=14.0)
    p.add_argument("--refit-interval", type=float, default=3600.0)
    p.add_argument("--concurrency", type=int, default=16)
    p.add_argument("--trigger-delay", type=float, default=0.5)
    args = p.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
    asyncio.run(run(args))


if __name__ == "__main__":
    main()
