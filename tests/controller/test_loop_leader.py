"""The watch loop (resume, 410 Gone, errors) and Lease leader election, on the in-memory API."""

from __future__ import annotations

import asyncio
import copy
from collections.abc import Mapping
from typing import Any

from controller_fakes import DEPLOY_PATH, PA_PATH, FakeClock, FakeKube, FakeSource, daily, deployment, pa

from forecaster.controller.events import EventRecorder
from forecaster.controller.leader import LeaderElector
from forecaster.controller.loop import Controller, collection_path
from forecaster.controller.metrics import ControllerMetrics
from forecaster.controller.reconcile import Deps, Reconciler
from forecaster.controller.state import Outcome
from forecaster.kube import Retryable


def controller(kube: FakeKube, clock: FakeClock) -> Controller:
    deps = Deps(
        kube, FakeSource(daily()), clock, EventRecorder(kube, clock), interval_s=30.0, fit_in_thread=False
    )
    return Controller(Reconciler(deps), ControllerMetrics(), namespace="a")


async def wait_until(cond: object, what: str) -> None:
    for _ in range(2000):
        if callable(cond) and cond():
            return
        await asyncio.sleep(0)
    raise AssertionError(what)


async def test_watch_lists_resumes_and_relists_after_gone() -> None:
    kube, clock = FakeKube(), FakeClock()
    kube.put(PA_PATH.format(ns="a", name="p1"), pa("a", "p1", "m"))
    c = controller(kube, clock)
    events = kube.queue(collection_path("a"))
    stop = asyncio.Event()
    task = asyncio.create_task(c.watch(stop))
    await asyncio.wait_for(c.synced.wait(), 5)
    assert set(c.cache) == {("a", "p1")}
    added = kube.put(PA_PATH.format(ns="a", name="p2"), pa("a", "p2", "m"))
    await events.put(("ADDED", added))
    await wait_until(lambda: ("a", "p2") in c.cache, "ADDED applied")
    await events.put(("CLOSE", {}))  # stream ends: resume from the last version, no relist
    await events.put(("DELETED", copy.deepcopy(added)))
    await wait_until(lambda: ("a", "p2") not in c.cache, "DELETED applied")
    assert c.relists == 1
    kube.put(PA_PATH.format(ns="a", name="p3"), pa("a", "p3", "m"))
    await events.put(("GONE", {}))  # 410: relist picks up p3 without an event
    await wait_until(lambda: ("a", "p3") in c.cache, "relisted after 410")
    assert c.relists == 2
    await events.put(("ERROR", {}))  # 500 from the stream: back off and resume
    await wait_until(lambda: clock.now() > 1_700_000_000.0, "backed off")
    stop.set()
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


async def test_one_failing_object_does_not_stop_the_others() -> None:
    kube, clock = FakeKube(), FakeClock()
    kube.put(DEPLOY_PATH.format(ns="a", name="m"), deployment("a", "m", 2))
    for name in ("good", "bad"):
        kube.put(PA_PATH.format(ns="a", name=name), pa("a", name, "m"))
    c = controller(kube, clock)
    await c._list()
    inner = c.reconciler.reconcile

    async def failing(obj: Mapping[str, Any]) -> Outcome:
        if obj["metadata"]["name"] == "bad":
            raise RuntimeError("boom")
        return await inner(obj)

    c.reconciler.reconcile = failing  # type: ignore[method-assign,assignment]
    failures = await c.reconcile_all()
    assert failures == 1
    assert c.metrics.errors == 1
    assert ("a", "good") in c.metrics.outcomes


async def test_only_one_of_two_electors_leads_and_release_hands_over() -> None:
    kube, clock = FakeKube(), FakeClock()
    a = LeaderElector(kube, clock, "default", "lease", "a", lease_s=10, renew_s=2)
    b = LeaderElector(kube, clock, "default", "lease", "b", lease_s=10, renew_s=2)
    assert await a.try_acquire_or_renew()
    assert not await b.try_acquire_or_renew()
    assert a.is_leader()
    assert not b.is_leader()
    clock.advance(5)
    assert await a.try_acquire_or_renew()  # renewal keeps it
    assert not await b.try_acquire_or_renew()
    await a.release()
    assert not a.is_leader()
    assert await b.try_acquire_or_renew()


async def test_a_dead_leader_is_replaced_after_the_lease_and_stops_acting_before() -> None:
    kube, clock = FakeKube(), FakeClock()
    a = LeaderElector(kube, clock, "default", "lease", "a", lease_s=10, renew_s=2)
    b = LeaderElector(kube, clock, "default", "lease", "b", lease_s=10, renew_s=2)
    assert await a.try_acquire_or_renew()
    assert not await b.try_acquire_or_renew()
    clock.advance(8.5)
    assert not a.is_leader()  # a stops acting renew_s before its lease could lapse
    assert not await b.try_acquire_or_renew()
    clock.advance(2)
    assert await b.try_acquire_or_renew()  # 10.5 s without a change: expired
    lease = kube.objects["/apis/coordination.k8s.io/v1/namespaces/default/leases/lease"]
    assert lease["spec"]["holderIdentity"] == "b"
    assert lease["spec"]["leaseTransitions"] == 1
    assert not await a.try_acquire_or_renew()


async def test_a_lost_race_is_a_conflict_not_two_leaders() -> None:
    kube, clock = FakeKube(), FakeClock()
    a = LeaderElector(kube, clock, "default", "lease", "a", lease_s=10, renew_s=2)
    assert await a.try_acquire_or_renew()
    clock.advance(11)
    b = LeaderElector(kube, clock, "default", "lease", "b", lease_s=10, renew_s=2)
    c = LeaderElector(kube, clock, "default", "lease", "c", lease_s=10, renew_s=2)
    await b.try_acquire_or_renew()  # observes the record
    await c.try_acquire_or_renew()
    clock.advance(11)
    results = [await b.try_acquire_or_renew(), await c.try_acquire_or_renew()]
    assert results.count(True) == 1


async def test_leader_run_survives_api_errors_and_releases_on_stop() -> None:
    kube, clock = FakeKube(), FakeClock()
    a = LeaderElector(kube, clock, "default", "lease", "a", lease_s=10, renew_s=2)
    calls = {"n": 0}

    def flaky(method: str, path: str) -> Exception | None:
        calls["n"] += 1
        return Retryable("503", 503) if calls["n"] <= 2 else None

    kube.fail = flaky
    stop = asyncio.Event()
    task = asyncio.create_task(a.run(stop))
    await wait_until(a.is_leader, "became leader after errors")
    stop.set()
    await task
    lease = kube.objects["/apis/coordination.k8s.io/v1/namespaces/default/leases/lease"]
    assert lease["spec"]["holderIdentity"] == ""
