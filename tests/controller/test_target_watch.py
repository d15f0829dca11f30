"""Target watches on the in-memory API: a change of a Deployment reconciles the
PredictiveAutoscalers pointing at it between cycles, resumes and relists like the PA watch,
and a reconcile it triggers never lowers the target."""

from __future__ import annotations

import asyncio
import copy
import time
from collections.abc import Mapping
from typing import Any

from controller_fakes import DEPLOY_PATH, PA_PATH, FakeClock, FakeKube, FakeSource, daily, deployment, pa

from forecaster.actuators.modes import HpaFloor
from forecaster.actuators.workload import Workload
from forecaster.controller.clock import SystemClock
from forecaster.controller.events import EventRecorder
from forecaster.controller.loop import Controller, collection_path
from forecaster.controller.metrics import ControllerMetrics
from forecaster.controller.reconcile import Deps, Reconciler
from forecaster.controller.spec import parse
from forecaster.controller.state import Outcome
from forecaster.controller.targets import TargetIndex, collections

DEPLOYS = "/apis/apps/v1/namespaces/a/deployments"


async def until(cond: Any, what: str, timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout_s}s")
        await asyncio.sleep(0.005)


def modified(kube: FakeKube, name: str, **status: Any) -> dict[str, Any]:
    obj = kube.objects[DEPLOY_PATH.format(ns="a", name=name)]
    obj["status"].update(status)
    return copy.deepcopy(kube.put(DEPLOY_PATH.format(ns="a", name=name), obj))


def test_collections_and_index_follow_moves_and_relists() -> None:
    assert collections("a") == [DEPLOYS, "/apis/apps/v1/namespaces/a/statefulsets"]
    assert collections(None) == ["/apis/apps/v1/deployments", "/apis/apps/v1/statefulsets"]
    idx = TargetIndex()
    idx.point(("a", "p"), pa("a", "p", "m1"))
    idx.point(("a", "q"), pa("a", "q", "m1"))
    idx.point(("a", "bad"), {"metadata": {"namespace": "a", "name": "bad"}, "spec": {}})
    m1, m2 = DEPLOY_PATH.format(ns="a", name="m1"), DEPLOY_PATH.format(ns="a", name="m2")
    assert idx.pointing_at(m1) == {("a", "p"), ("a", "q")}
    idx.point(("a", "q"), pa("a", "q", "m2"))  # the spec moved q to another target
    assert idx.pointing_at(m1) == {("a", "p")}
    assert idx.pointing_at(m2) == {("a", "q")}
    assert idx.observe(m1, (2, 2)) == {("a", "p")}  # first sight counts as a change
    assert idx.observe(m1, (2, 2)) == set()
    other_ns = {"metadata": {"namespace": "b", "name": "m1"}, "spec": {"replicas": 1}, "status": {}}
    idx.relist("/apis/apps/v1/namespaces/b/deployments", [other_ns])
    # A relist of namespace a without m1: m1 was deleted; b's object is not touched.
    assert idx.relist(DEPLOYS, []) == {("a", "p")}
    assert "/apis/apps/v1/namespaces/b/deployments/m1" in idx.seen
    idx.drop(("a", "p"))
    assert idx.pointing_at(m1) == set()


async def test_target_changes_reconcile_only_the_pas_pointing_at_them() -> None:
    kube = FakeKube()
    for name in ("m1", "m2"):
        kube.put(DEPLOY_PATH.format(ns="a", name=name), deployment("a", name, 2))
        kube.put(PA_PATH.format(ns="a", name=f"p-{name}"), pa("a", f"p-{name}", name))
    deps = Deps(
        kube,
        FakeSource(daily()),
        SystemClock(),
        EventRecorder(kube, SystemClock()),
        interval_s=3600.0,
        fit_in_thread=False,
    )
    c = Controller(Reconciler(deps), ControllerMetrics(), namespace="a", trigger_delay_s=0.01)
    calls: list[tuple[str, bool]] = []
    inner = c.reconciler.reconcile

    async def counted(obj: Mapping[str, Any], *, triggered: bool = False) -> Outcome:
        calls.append((obj["metadata"]["name"], triggered))
        return await inner(obj, triggered=triggered)

    c.reconciler.reconcile = counted  # type: ignore[method-assign,assignment]
    stop = asyncio.Event()
    task = asyncio.create_task(c.run(stop))
    try:
        await until(lambda: c.metrics.cycles == 1 and len(calls) == 2, "first cycle")
        assert sorted(calls) == [("p-m1", False), ("p-m2", False)]
        assert kube.watching.get(DEPLOYS) == 1
        targets = kube.queue(DEPLOYS)
        await targets.put(("MODIFIED", modified(kube, "m1", readyReplicas=1)))
        await until(lambda: ("p-m1", True) in calls, "m1's PA reconciled after its change")
        # An event that changes neither replicas nor ready replicas triggers nothing; m2's does.
        await targets.put(("MODIFIED", modified(kube, "m1", observedGeneration=7)))
        await targets.put(("MODIFIED", modified(kube, "m2", readyReplicas=0)))
        await until(lambda: ("p-m2", True) in calls, "m2's PA reconciled after its change")
        assert calls.count(("p-m1", True)) == 1
        # 410 Gone on the target watch: the relist finds m1 changed and reconciles its PA.
        modified(kube, "m1", readyReplicas=2)
        await targets.put(("GONE", {}))
        await until(lambda: calls.count(("p-m1", True)) == 2, "relisted after 410")
        # The stream closes: the watch resumes without a relist; a deletion is a change.
        await targets.put(("CLOSE", {}))
        gone = kube.objects.pop(DEPLOY_PATH.format(ns="a", name="m2"))
        await targets.put(("DELETED", gone))
        await until(lambda: calls.count(("p-m2", True)) == 2, "deleted target reconciled")
        await until(
            lambda: "TargetNotFound" in str(kube.objects[PA_PATH.format(ns="a", name="p-m2")]["status"]),
            "TargetNotFound reported",
        )
        assert kube.watching[DEPLOYS] == 3
        assert c.target_relists == 3
        # PA events still reach the PA watch (each collection has its own stream).
        added = kube.put(PA_PATH.format(ns="a", name="p-new"), pa("a", "p-new", "m1"))
        await kube.queue(collection_path("a")).put(("ADDED", added))
        await until(lambda: ("p-new", False) in calls, "new PA reconciled at once")
        assert c.metrics.cycles == 1, "no full cycle ran: every reconcile above was triggered"
    finally:
        stop.set()
        await task


async def test_a_triggered_reconcile_raises_but_never_lowers_the_target() -> None:
    kube, clock = FakeKube(), FakeClock(1_700_000_000.0 - 1_700_000_000.0 % 3600 + 5 * 3600 + 600)
    path = DEPLOY_PATH.format(ns="a", name="m")
    kube.put(path, deployment("a", "m", 12))
    kube.put(PA_PATH.format(ns="a", name="p"), pa("a", "p", "m"))
    deps = Deps(kube, FakeSource(daily()), clock, EventRecorder(kube, clock), fit_in_thread=False)
    rec = Reconciler(deps)
    obj = kube.objects[PA_PATH.format(ns="a", name="p")]
    out = await rec.reconcile(obj, triggered=True)
    assert out.decision is not None
    assert out.decision.replicas < 12, "the decision itself is to scale down"
    assert out.applied is not None
    assert not out.applied.changed
    assert "waits for the next cycle" in out.applied.detail
    assert kube.objects[path]["spec"]["replicas"] == 12
    fc = rec.memory[("a", "p")].forecaster
    recorded: list[bool] = []
    window = fc.window

    def spy(now_s: float, window_s: float, *, record: bool = True) -> Any:
        recorded.append(record)
        return window(now_s, window_s, record=record)

    fc.window = spy  # type: ignore[method-assign]
    clock.advance(30)
    out = await rec.reconcile(obj)  # the periodic cycle lowers it (within the rate limit)
    assert out.decision is not None
    assert out.decision.replicas < 12
    assert kube.objects[path]["spec"]["replicas"] == out.decision.replicas
    assert recorded == [True], "a cycle records its decision window for calibration"
    kube.objects[path]["spec"]["replicas"] = 1
    out = await rec.reconcile(obj, triggered=True)  # someone lowered it: raised at once
    assert out.decision is not None
    assert out.decision.replicas > 1
    assert kube.objects[path]["spec"]["replicas"] == out.decision.replicas
    assert recorded == [True, False], "a triggered reconcile records nothing"


async def test_between_cycles_an_hpa_floor_is_never_lowered() -> None:
    kube = FakeKube()
    hpa_path = "/apis/autoscaling/v2/namespaces/a/horizontalpodautoscalers/m"
    kube.put(
        hpa_path, {"metadata": {"name": "m", "namespace": "a"}, "spec": {"minReplicas": 9, "maxReplicas": 20}}
    )
    spec = parse(pa("a", "p", "m", actuation={"mode": "hpa-floor", "hpaName": "m"}))
    # The HPA has scaled the target above our floor: its replicas are not the floor.
    workload = Workload(DEPLOY_PATH.format(ns="a", name="m"), 14, 14, "app=m")
    floor = HpaFloor()
    held = await floor.apply(kube, "a", spec, workload, 4, raise_only=True)
    assert (held.replicas, held.changed) == (9, False)
    assert kube.objects[hpa_path]["spec"]["minReplicas"] == 9
    raised = await floor.apply(kube, "a", spec, workload, 11, raise_only=True)
    assert (raised.replicas, raised.changed) == (11, True)
    lowered = await floor.apply(kube, "a", spec, workload, 4)
    assert (lowered.replicas, lowered.changed) == (4, True)
    assert kube.objects[hpa_path]["spec"]["minReplicas"] == 4


def serving_pod(ns: str, name: str, app: str, node: str) -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": ns, "labels": {"app": app}}, "spec": {"nodeName": node}}


async def test_between_cycles_node_headroom_only_grows() -> None:
    kube, clock = FakeKube(), FakeClock(1_700_000_000.0 - 1_700_000_000.0 % 3600 + 5 * 3600 + 600)
    path = DEPLOY_PATH.format(ns="a", name="m")
    kube.put(path, deployment("a", "m", 1))
    kube.put("/api/v1/namespaces/a/pods/m-0", serving_pod("a", "m-0", "m", node="n0"))
    node_pool = {"backend": "placeholder-pods", "gpusPerNode": 8, "nodeLeadTimeSeconds": 600}
    kube.put(PA_PATH.format(ns="a", name="p"), pa("a", "p", "m", nodePool=node_pool))
    rec = Reconciler(Deps(kube, FakeSource(daily()), clock, EventRecorder(kube, clock), fit_in_thread=False))
    obj = kube.objects[PA_PATH.format(ns="a", name="p")]
    out = await rec.reconcile(obj)
    assert out.headroom is not None
    asked = out.headroom.gpus
    assert asked > 0, "the rise ahead needs headroom beyond the single replica"
    placeholders = "/apis/apps/v1/namespaces/a/deployments/p-headroom"
    assert kube.objects[placeholders]["spec"]["replicas"] == asked
    kube.objects[path]["spec"]["replicas"] = 19  # the target grew: less headroom needed
    out = await rec.reconcile(obj, triggered=True)
    assert out.headroom is not None
    assert out.headroom.gpus == asked
    assert kube.objects[placeholders]["spec"]["replicas"] == asked, "shrunk between cycles"
    clock.advance(30)
    out = await rec.reconcile(obj)  # a cycle, but the new serving pods have no node yet
    assert out.headroom is not None
    assert out.headroom.gpus >= asked, "placeholders gave way before the serving pods took their place"
    for i in range(1, 19):  # the new serving pods are bound (they preempted the placeholders)
        kube.put(f"/api/v1/namespaces/a/pods/m-{i}", serving_pod("a", f"m-{i}", "m", node="n1"))
    clock.advance(30)
    out = await rec.reconcile(obj)
    assert out.headroom is not None
    assert out.headroom.gpus < asked
    assert kube.objects[placeholders]["spec"]["replicas"] == out.headroom.gpus
