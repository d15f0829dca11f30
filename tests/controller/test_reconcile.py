"""One PredictiveAutoscaler reconciled against the in-memory API, source and clock."""

from __future__ import annotations

import math
from typing import Any

import pytest
from controller_fakes import (
    DEPLOY_PATH,
    PA_PATH,
    FakeClock,
    FakeKube,
    FakeSource,
    daily,
    deployment,
    pa,
)

from forecaster.controller.events import EventRecorder
from forecaster.controller.reconcile import Deps, Reconciler
from forecaster.controller.status import rfc3339
from forecaster.kube import Retryable

HOUR = 3600.0


def setup(
    mode: str = "direct", demand: Any = None, start_phase_s: float = 600.0, **spec: Any
) -> tuple[FakeKube, FakeSource, FakeClock, Reconciler]:
    kube = FakeKube()
    clock = FakeClock(1_700_000_000.0 - 1_700_000_000.0 % HOUR + 5 * HOUR + start_phase_s)
    source = FakeSource(demand or daily())
    kube.put(DEPLOY_PATH.format(ns="a", name="m"), deployment("a", "m", 2))
    spec.setdefault("actuation", {"mode": mode, **({"hpaName": "m"} if mode == "hpa-floor" else {})})
    kube.put(PA_PATH.format(ns="a", name="p"), pa("a", "p", "m", **spec))
    deps = Deps(kube, source, clock, EventRecorder(kube, clock), interval_s=30.0, fit_in_thread=False)
    return kube, source, clock, Reconciler(deps)


def pa_obj(kube: FakeKube) -> dict[str, Any]:
    return kube.objects[PA_PATH.format(ns="a", name="p")]


def conditions(kube: FakeKube) -> dict[str, dict[str, Any]]:
    return {c["type"]: c for c in pa_obj(kube)["status"]["conditions"]}


def writes(kube: FakeKube, suffix: str) -> list[Any]:
    return [w for w in kube.writes if w[1].endswith(suffix)]


async def test_direct_mode_scales_for_the_forecast_peak_ahead_of_the_rise() -> None:
    kube, source, clock, rec = setup()
    out = await rec.reconcile(pa_obj(kube))
    demand_now = daily()(clock.now())
    peak_ahead = max(daily()(clock.now() + s) for s in range(0, 151, 10))
    assert out.decision is not None
    assert out.decision.reason == "forecast"
    # Demand rises over the window: the decision covers the peak ahead, not just the present.
    assert out.decision.replicas >= math.ceil(peak_ahead / 10)
    assert out.decision.replicas > math.ceil(demand_now / 10) - 1
    assert kube.objects[DEPLOY_PATH.format(ns="a", name="m")]["spec"]["replicas"] == out.decision.replicas
    status = pa_obj(kube)["status"]
    assert status["desiredReplicas"] == out.decision.replicas
    assert status["forecast"]["plannedPeakRps"] >= peak_ahead * 0.95
    assert status["leadTimeSeconds"] == 120
    assert conditions(kube)["ForecastHealthy"]["status"] == "True"
    assert [w[2]["reason"] for w in writes(kube, "/events")] == ["Scaled"]
    assert source.range_calls == 1


async def test_later_reconciles_fetch_only_new_points_and_keep_transition_times() -> None:
    kube, source, clock, rec = setup()
    await rec.reconcile(pa_obj(kube))
    first = conditions(kube)["Ready"]["lastTransitionTime"]
    points = source.points
    clock.advance(120)
    await rec.reconcile(pa_obj(kube))
    assert source.points - points == 2  # two new 60 s slots, not the whole day again
    assert conditions(kube)["Ready"]["lastTransitionTime"] == first


async def test_dry_run_and_external_metric_write_status_only() -> None:
    for mode in ("dry-run", "external-metric"):
        kube, _, _, rec = setup(mode)
        out = await rec.reconcile(pa_obj(kube))
        assert out.decision is not None
        assert out.decision.valid
        assert writes(kube, "/scale") == []
        assert kube.objects[DEPLOY_PATH.format(ns="a", name="m")]["spec"]["replicas"] == 2
        assert pa_obj(kube)["status"]["lastDecision"]["applied"] is False


async def test_hpa_floor_raises_min_replicas_within_the_hpa_max() -> None:
    kube, _, _, rec = setup("hpa-floor")
    path = "/apis/autoscaling/v2/namespaces/a/horizontalpodautoscalers/m"
    kube.put(
        path, {"metadata": {"name": "m", "namespace": "a"}, "spec": {"minReplicas": 1, "maxReplicas": 3}}
    )
    out = await rec.reconcile(pa_obj(kube))
    assert out.decision is not None
    assert out.decision.replicas > 3
    assert kube.objects[path]["spec"]["minReplicas"] == 3  # clamped to the HPA's own max
    assert writes(kube, "/scale") == []


async def test_source_down_holds_the_target_and_says_why() -> None:
    kube, source, clock, rec = setup()
    await rec.reconcile(pa_obj(kube))
    replicas = kube.objects[DEPLOY_PATH.format(ns="a", name="m")]["spec"]["replicas"]
    source.down = True
    clock.advance(600)
    out = await rec.reconcile(pa_obj(kube))
    assert out.ready.reason == "SourceUnavailable"
    assert kube.objects[DEPLOY_PATH.format(ns="a", name="m")]["spec"]["replicas"] == replicas
    conds = conditions(kube)
    assert conds["ForecastHealthy"]["status"] == "False"
    assert conds["ForecastHealthy"]["reason"] == "SourceUnavailable"
    assert pa_obj(kube)["status"]["lastDecision"]["replicas"] == replicas  # the last decision is kept
    assert "SourceUnavailable" in [w[2]["reason"] for w in writes(kube, "/events")]


async def test_empty_query_gets_a_condition_and_one_event() -> None:
    kube, source, clock, rec = setup()
    source.empty = True
    for _ in range(3):
        out = await rec.reconcile(pa_obj(kube))
        clock.advance(30)
    assert out.ready.reason == "EmptyQuery"
    assert "sum(demand)" in conditions(kube)["Ready"]["message"]
    assert [w[2]["reason"] for w in writes(kube, "/events")] == ["EmptyQuery"]  # deduplicated


async def test_missing_target_and_invalid_spec_name_the_problem() -> None:
    kube, _, _, rec = setup()
    del kube.objects[DEPLOY_PATH.format(ns="a", name="m")]
    out = await rec.reconcile(pa_obj(kube))
    assert out.ready.reason == "TargetNotFound"
    assert "Deployment/m not found" in conditions(kube)["AbleToScale"]["message"]
    bad = pa("a", "p", "m", maxReplicas=0)
    kube.put(PA_PATH.format(ns="a", name="p"), bad)
    out = await rec.reconcile(pa_obj(kube))
    assert out.ready.reason == "InvalidSpec"
    assert "spec.maxReplicas" in conditions(kube)["Ready"]["message"]


async def test_a_follower_writes_nothing() -> None:
    kube, _source, clock, rec = setup()
    rec.deps.allowed = lambda: False
    rec.deps.events = EventRecorder(kube, clock, allowed=lambda: False)
    out = await rec.reconcile(pa_obj(kube))
    assert out.decision is not None
    assert kube.writes == []


async def test_api_errors_on_scale_set_able_to_scale_false() -> None:
    kube, _, _, rec = setup()
    kube.fail = lambda method, path: Retryable("503", 503) if path.endswith("/scale") else None
    await rec.reconcile(pa_obj(kube))
    conds = conditions(kube)
    assert conds["AbleToScale"]["status"] == "False"
    assert conds["AbleToScale"]["reason"] == "FailedUpdateScale"


async def test_measured_lead_time_replaces_the_prior() -> None:
    kube, _, clock, rec = setup(start_phase_s=600.0)
    out = await rec.reconcile(pa_obj(kube))
    assert out.decision is not None
    assert out.decision.replicas > 2
    requested = clock.now()
    dep = kube.objects[DEPLOY_PATH.format(ns="a", name="m")]
    dep["status"]["readyReplicas"] = dep["spec"]["replicas"]
    for i in range(dep["spec"]["replicas"]):
        kube.put(
            f"/api/v1/namespaces/a/pods/m-{i}",
            {
                "metadata": {
                    "name": f"m-{i}",
                    "labels": {"app": "m"},
                    "creationTimestamp": _ts(requested + 1),
                },
                "status": {
                    "conditions": [
                        {"type": "Ready", "status": "True", "lastTransitionTime": _ts(requested + 45 + i)}
                    ]
                },
            },
        )
    clock.advance(60)
    out = await rec.reconcile(pa_obj(kube))
    assert out.lead_time_s == pytest.approx(45 + dep["spec"]["replicas"] - 1)


def _ts(t: float) -> str:
    return rfc3339(t)
