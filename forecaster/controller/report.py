"""What a reconcile reports: its conditions and the ``status`` body (pure)."""

from __future__ import annotations

from typing import Any

from forecaster.actuators.workload import Workload
from forecaster.controller import status as st
from forecaster.controller.spec import PASpec
from forecaster.controller.state import Memory, Outcome
from forecaster.decider import Decision, ScalingPolicy, WindowForecast


def reconcile_conditions(
    mem: Memory, decision: Decision, wf: WindowForecast | None, able: st.Condition
) -> list[st.Condition]:
    """``Ready``, ``ForecastHealthy``, ``AbleToScale``, ``ScalingLimited`` after a full reconcile."""
    healthy = decision.reason in ("forecast", "reactive_floor")
    why = decision.reason if not healthy else "ForecastUsed"
    msg = mem.forecaster.fit_error or decision.detail
    if wf is None and not mem.forecaster.fit_error:
        msg = "calibrating: too few forecast outcomes yet" if mem.forecaster.model else "no model fitted yet"
    ready = st.Condition("Ready", able.status, "Reconciled" if able.status else able.reason, able.message)
    return [ready, st.Condition("ForecastHealthy", healthy, why, msg), able, st.limited(decision)]


def status_fields(
    spec: PASpec, mem: Memory, workload: Workload, out: Outcome, policy: ScalingPolicy, *, now: float
) -> dict[str, Any]:
    """The status body (conditions aside) after a full reconcile."""
    fc, wf, decision, applied, headroom = mem.forecaster, out.window, out.decision, out.applied, out.headroom
    if decision is None or out.horizon_s is None:
        raise ValueError("status_fields needs an outcome with a decision")
    sel = fc.model.selection if fc.model is not None else None
    planned = wf.at(policy.planning_quantile) if wf is not None else None
    node = None
    if headroom is not None:
        node = {
            "backend": headroom.backend,
            "gpus": headroom.gpus,
            "nodes": headroom.nodes,
            "placeholders": headroom.placeholders,
        }
    changed = applied is not None and applied.changed
    return st.body(
        observedDemandRps=out.demand_rps,
        currentReplicas=workload.replicas,
        readyReplicas=workload.ready_replicas,
        desiredReplicas=decision.replicas,
        capacityPerReplicaRps=out.capacity_rps,
        leadTimeSeconds=out.lead_time_s,
        nodeLeadTimeSeconds=out.node_lead_time_s,
        nodeLeadTimeSamples=mem.node_lead.samples if mem.node_lead is not None else None,
        forecast=st.forecast_status(wf, planned, decision.quantile, out.horizon_s, now) if wf else None,
        model=st.model_status(
            sel.chosen if sel else "",
            fc.quality(),
            fc.fitted_at_s,
            "; ".join(sel.notes) if sel else fc.fit_error,
        ),
        nodeHeadroom=node,
        lastDecision=st.decision_status(decision, changed, now),
        lastScaleTime=st.rfc3339(now) if changed else None,
    )
