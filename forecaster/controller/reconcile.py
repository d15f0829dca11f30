"""Reconcile one PredictiveAutoscaler: collect -> forecast -> decide -> actuate -> report.

Collect: the target (replicas, ready replicas) and new demand samples from Prometheus.
Forecast: :class:`TargetForecaster` gives the calibrated peak over the planning window
``[now, now + lead time + interval]`` (the next decision comes one interval later, and what
it asks for is ready one lead time after that). Decide: :func:`forecaster.decider.decide`,
pure. Actuate: the mode's actuator, then node-pool headroom for the forecast over
``[now, now + pod lead + node lead]``. Report: status, Events, a snapshot for metrics.

Safety: every write is gated on ``allowed()`` (leadership, checked right before the write).
When the source fails or returns nothing, nothing is written but status: the target keeps
the last decision that was applied, and in ``hpa-floor`` mode the HPA keeps reacting above it.
"""

from __future__ import annotations

import asyncio
import logging
import math
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from forecaster.actuators.modes import ACTUATORS, Actuator, Applied
from forecaster.actuators.nodepool import Headroom, NodePoolBackend, backends, headroom_gpus
from forecaster.actuators.workload import Workload, bound_replicas, read_workload
from forecaster.controller import status as st
from forecaster.controller.clock import Clock
from forecaster.controller.events import EventRecorder
from forecaster.controller.forecasting import TargetForecaster
from forecaster.controller.leadtime import ScaleUp, measure_scale_up
from forecaster.controller.nodelead import NodeLead
from forecaster.controller.report import reconcile_conditions, status_fields
from forecaster.controller.spec import GROUP, PLURAL, VERSION, PASpec, SpecError, parse
from forecaster.controller.state import Memory, Outcome
from forecaster.decider import Decision, Observation, ScalingPolicy, WindowForecast, decide
from forecaster.estimation import LeadTimeEstimator
from forecaster.kube import KubeApi, KubeError, NotFound
from forecaster.source import MetricSource, QueryError, SourceError, SourceUnavailable

log = logging.getLogger(__name__)


@dataclass
class Deps:
    """What a reconcile needs from outside; every piece is injectable."""

    kube: KubeApi
    source: MetricSource
    clock: Clock
    events: EventRecorder
    interval_s: float = 30.0
    """Reconcile period (part of the planning window)."""
    allowed: Callable[[], bool] = lambda: True
    """True while this replica may write (it holds the leader Lease)."""
    actuators: Mapping[str, Actuator] = field(default_factory=lambda: dict(ACTUATORS))
    pools: Mapping[str, NodePoolBackend] = field(default_factory=backends)
    fit_in_thread: bool = True
    """Run full model fits in a worker thread so the loop (and the Lease) keeps ticking."""


class _Hold(Exception):
    """Stop this reconcile without acting; the conditions say why."""

    def __init__(self, conds: list[st.Condition], event: tuple[str, str] | None = None) -> None:
        super().__init__(conds[0].message if conds else "hold")
        self.conds, self.event = conds, event


def _phase(key: tuple[str, str]) -> float:
    """A stable number in [0, 1) per object (spreads refits over time)."""
    return zlib.crc32(f"{key[0]}/{key[1]}".encode()) / 2**32


def status_path(namespace: str, name: str) -> str:
    return f"/apis/{GROUP}/{VERSION}/namespaces/{namespace}/{PLURAL}/{name}/status"


class Reconciler:
    """Reconciles PredictiveAutoscalers one at a time; keeps per-object memory."""

    def __init__(self, deps: Deps) -> None:
        self.deps = deps
        self.memory: dict[tuple[str, str], Memory] = {}

    def forget(self, namespace: str, name: str) -> None:
        self.memory.pop((namespace, name), None)

    def _memory(self, key: tuple[str, str], spec: PASpec, generation: int) -> Memory:
        mem = self.memory.get(key)
        if mem is None or mem.generation != generation:
            fixed = None if spec.measure_lead_time else spec.pod_lead_time_s
            lead = (
                mem.lead
                if mem is not None
                else LeadTimeEstimator(prior_s=spec.pod_lead_time_s, fixed_s=fixed)
            )
            lead.prior_s, lead.fixed_s = spec.pod_lead_time_s, fixed
            node_lead = mem.node_lead if mem is not None else None
            if spec.node_pool is None:
                node_lead = None
            else:
                prior = spec.node_pool.node_lead_time_s
                if node_lead is None:
                    node_lead = NodeLead(LeadTimeEstimator(prior_s=prior))
                node_lead.estimator.prior_s = prior
                node_lead.estimator.fixed_s = None if spec.measure_lead_time else prior
            fc = TargetForecaster(spec, interval_s=self.deps.interval_s, phase=_phase(key))
            mem = Memory(spec, generation, fc, lead, node_lead=node_lead)
            self.memory[key] = mem
        return mem

    async def reconcile(self, pa: Mapping[str, Any], *, triggered: bool = False) -> Outcome:
        """Reconcile one object. ``triggered``: between cycles, because its target changed; the
        forecast is not recorded for calibration again and the target is never lowered."""
        meta = pa.get("metadata") or {}
        ns, name = str(meta.get("namespace", "")), str(meta.get("name", ""))
        generation = int(meta.get("generation", 0))
        now = self.deps.clock.now()
        try:
            spec = parse(pa)
        except SpecError as e:
            cond = st.Condition("Ready", False, "InvalidSpec", str(e))
            await self._report(pa, now, [cond], {}, ("InvalidSpec", str(e)))
            return Outcome(ns, name, cond)
        mem = self._memory((ns, name), spec, generation)
        try:
            return await self._run(pa, ns, name, spec, mem, now=now, triggered=triggered)
        except _Hold as hold:
            await self._report(pa, now, hold.conds, {}, hold.event)
            return Outcome(
                ns,
                name,
                hold.conds[0],
                decisions=dict(mem.decisions),
                lead_time_s=mem.lead.estimate_s(),
                capacity_rps=mem.capacity_rps,
            )

    async def _workload(self, spec: PASpec, ns: str) -> Workload:
        try:
            return await read_workload(self.deps.kube, spec.target, ns)
        except NotFound as e:
            msg = f"{spec.target.kind}/{spec.target.name} not found in namespace {ns}"
            raise _Hold(
                [
                    st.Condition("Ready", False, "TargetNotFound", msg),
                    st.Condition("AbleToScale", False, "TargetNotFound", msg),
                ],
                ("TargetNotFound", msg),
            ) from e

    async def _collect(self, spec: PASpec, mem: Memory, now: float) -> float:
        """Fetch new demand; the latest observed demand (requests/s)."""
        fc = mem.forecaster
        rng = fc.next_range(now)
        try:
            if rng is not None:
                fc.ingest(await self.deps.source.range(spec.query, rng[0], rng[1], spec.step_s))
            # The planner observes the freshest demand at every decision; the grid is the model's.
            fresh = await self.deps.source.instant(spec.query)
            if spec.capacity_query:
                cap = await self.deps.source.instant(spec.capacity_query)
                if cap is not None and math.isfinite(cap) and cap > 0:
                    mem.capacity_rps = cap
        except SourceUnavailable as e:
            raise self._unhealthy("SourceUnavailable", f"metrics source unreachable: {e}") from e
        except (QueryError, SourceError) as e:
            raise self._unhealthy("QueryRejected", str(e)) from e
        demand = fresh if fresh is not None and math.isfinite(fresh) and fresh >= 0 else fc.latest()
        if demand is None:
            if spec.on_empty == "zero":
                return 0.0
            raise self._unhealthy("EmptyQuery", f"demand query returned no samples: {spec.query}")
        return demand

    @staticmethod
    def _unhealthy(reason: str, message: str) -> _Hold:
        return _Hold(
            [
                st.Condition("Ready", False, reason, message),
                st.Condition("ForecastHealthy", False, reason, message),
            ],
            (reason, message),
        )

    async def _forecast(
        self, mem: Memory, now: float, window_s: float, demand: float, *, record: bool = True
    ) -> tuple[WindowForecast | None, float]:
        fc = mem.forecaster
        fc.advance(window_s)
        if fc.needs_fit(now):
            if self.deps.fit_in_thread:
                await asyncio.to_thread(fc.fit, now, window_s)
            else:
                fc.fit(now, window_s)
        if record:
            fc.observe(now, demand)
        return fc.window(now, window_s, record=record)

    async def _run(
        self,
        pa: Mapping[str, Any],
        ns: str,
        name: str,
        spec: PASpec,
        mem: Memory,
        *,
        now: float,
        triggered: bool = False,
    ) -> Outcome:
        workload = await self._workload(spec, ns)
        demand = await self._collect(spec, mem, now)
        capacity = spec.capacity_rps or mem.capacity_rps
        if capacity is None:
            msg = f"capacity query returned nothing yet: {spec.capacity_query}"
            raise _Hold([st.Condition("Ready", False, "CapacityUnknown", msg)], ("CapacityUnknown", msg))
        await self._measure(mem, workload, ns)
        lead_s = mem.lead.estimate_s()
        window_s = lead_s + self.deps.interval_s
        mem.forecaster.use_capacity(capacity)
        wf, _point = await self._forecast(mem, now, window_s, demand, record=not triggered)
        policy = ScalingPolicy(
            capacity_per_replica_rps=capacity,
            min_replicas=spec.min_replicas,
            max_replicas=spec.max_replicas,
            miss_cost_ratio=spec.miss_cost_ratio,
            scale_down_delay_s=spec.scale_down_delay_s,
            fallback_hold_s=spec.fallback_hold_s,
            max_scale_up_rate=spec.max_scale_up_rate,
            max_scale_down_rate=spec.max_scale_down_rate,
        )
        quality = mem.forecaster.quality()
        obs = Observation(demand, workload.replicas)
        decision, mem.decider = decide(wf, quality, obs, policy, mem.decider, now=now)
        mem.decisions[decision.reason] = mem.decisions.get(decision.reason, 0) + 1
        applied, able = await self._actuate(spec, ns, workload, decision, mem, now=now, raise_only=triggered)
        out = Outcome(
            ns,
            name,
            st.Condition("Ready", able.status, "Reconciled"),
            decision,
            applied,
            wf,
            demand,
            capacity,
            lead_s,
            window_s,
            None,
            dict(mem.decisions),
            (quality.error_ratio, quality.coverage),
        )
        node_lead_s = mem.node_lead.estimate_s() if mem.node_lead is not None else None
        out = replace(out, node_lead_time_s=node_lead_s)
        room = await self._headroom(spec, ns, name, workload, out, policy=policy, raise_only=triggered)
        out = replace(out, headroom=room)
        conds = reconcile_conditions(mem, decision, wf, able)
        event = ("Scaled", applied.detail) if applied is not None and applied.changed else None
        if event is not None:
            log.info(
                "scaled",
                extra={
                    "fields": {
                        "pa": f"{ns}/{name}",
                        "from": workload.replicas,
                        "to": decision.replicas,
                        "reason": decision.reason,
                        "detail": decision.detail,
                        "demand_rps": round(demand, 3),
                        "error_ratio": round(quality.error_ratio, 3),
                        "coverage": round(quality.coverage, 3),
                    }
                },
            )
        fields = status_fields(spec, mem, workload, out, policy, now=now)
        await self._report(pa, now, conds, fields, event, normal=True)
        return replace(out, ready=conds[0])

    async def _actuate(
        self,
        spec: PASpec,
        ns: str,
        workload: Workload,
        decision: Decision,
        mem: Memory,
        *,
        now: float,
        raise_only: bool = False,
    ) -> tuple[Applied | None, st.Condition]:
        if not decision.valid or not self.deps.allowed():
            return None, st.Condition("AbleToScale", True, "NotActing", "no valid decision or not the leader")
        try:
            applied = await self.deps.actuators[spec.mode].apply(
                self.deps.kube, ns, spec, workload, decision.replicas, raise_only=raise_only
            )
        except KubeError as e:
            return None, st.Condition("AbleToScale", False, "FailedUpdateScale", str(e))
        if applied.changed and applied.replicas is not None and applied.replicas > workload.replicas:
            mem.scale_up = ScaleUp(now, applied.replicas, workload.replicas)
        return applied, st.Condition(
            "AbleToScale", True, "SucceededRescale" if applied.changed else "ReadyForNewScale", applied.detail
        )

    async def _measure(self, mem: Memory, workload: Workload, ns: str) -> None:
        """Close a pending scale-up once its pods are Ready; feed the delay to the estimator."""
        up = mem.scale_up
        if up is None or workload.ready_replicas < up.replicas:
            if up is not None and workload.replicas < up.replicas:
                mem.scale_up = None  # scaled back down before it finished: not a sample
            return
        mem.scale_up = None
        delay = await measure_scale_up(self.deps.kube, ns, workload.selector, up, self.deps.clock.now())
        if delay is not None:
            mem.lead.observe(up.requested_at_s, up.requested_at_s + delay)

    async def _headroom(
        self,
        spec: PASpec,
        ns: str,
        name: str,
        workload: Workload,
        out: Outcome,
        *,
        policy: ScalingPolicy,
        raise_only: bool = False,
    ) -> Headroom | None:
        pool = spec.node_pool
        if pool is None or not self.deps.allowed() or spec.mode in ("dry-run", "external-metric"):
            return None
        # Nodes take longer than pods: plan the pool on the peak over [now, now + pod lead +
        # node lead + interval], calibrated like the decision window; no forecast, no headroom.
        lead_s = out.lead_time_s or 0.0
        mem = self.memory[(ns, name)]
        node_lead_s = pool.node_lead_time_s if out.node_lead_time_s is None else out.node_lead_time_s
        now = self.deps.clock.now()
        wf, _ = mem.forecaster.window(now, lead_s + node_lead_s + self.deps.interval_s, record=False)
        mu = policy.capacity_per_replica_rps
        future = 0 if wf is None else math.ceil(wf.at(policy.planning_quantile) / mu - 1e-9)
        future = min(max(future, spec.min_replicas), spec.max_replicas)
        # Against the serving pods already bound to a node: placeholders give way only after
        # the new serving pods have taken their GPUs (by preemption), never by racing them.
        gpus = headroom_gpus(future, await bound_replicas(self.deps.kube, ns, workload), pool)
        headroom = mem.headroom
        # Between cycles headroom only grows: a scale-up's serving pods take the placeholders'
        # GPUs by preemption before the next cycle shrinks them.
        if headroom is None or not raise_only or gpus > headroom.gpus:
            try:
                headroom = await self.deps.pools[pool.backend].provide(self.deps.kube, ns, name, pool, gpus)
            except KubeError as e:
                log.warning("node headroom failed", extra={"fields": {"pa": f"{ns}/{name}", "error": str(e)}})
                return None
            mem.headroom = headroom
        if mem.node_lead is not None:
            await mem.node_lead.follow(
                self.deps.kube, ns, name, pool, headroom.nodes, now_s=now, measure=spec.measure_lead_time
            )
        return headroom

    async def _report(
        self,
        pa: Mapping[str, Any],
        now: float,
        conds: list[st.Condition],
        fields: dict[str, Any],
        event: tuple[str, str] | None,
        *,
        normal: bool = False,
    ) -> None:
        if not self.deps.allowed():
            return
        meta = pa.get("metadata") or {}
        ns, name, gen = (
            str(meta.get("namespace", "")),
            str(meta.get("name", "")),
            int(meta.get("generation", 0)),
        )
        previous = (pa.get("status") or {}).get("conditions") or []
        present = {c.type for c in conds}
        # Conditions this reconcile did not evaluate keep their last value.
        kept = [
            st.Condition(
                str(c["type"]), c.get("status") == "True", str(c.get("reason", "")), str(c.get("message", ""))
            )
            for c in previous
            if c.get("type") in st.CONDITION_TYPES and c.get("type") not in present
        ]
        body = {
            "observedGeneration": gen,
            **fields,
            "conditions": st.conditions(previous, now, [*conds, *kept], gen),
        }
        try:
            await self.deps.kube.merge_patch(status_path(ns, name), {"status": body})
        except NotFound:
            return
        except KubeError as e:
            log.warning("status not written", extra={"fields": {"pa": f"{ns}/{name}", "error": str(e)}})
        if event is not None:
            await self.deps.events.record(pa, "Normal" if normal else "Warning", event[0], event[1])
