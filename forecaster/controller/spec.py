"""The PredictiveAutoscaler spec as frozen dataclasses, parsed strictly from the API object.

The CRD's OpenAPI schema and CEL rules (deploy/crds/) reject bad specs at admission; this
parser re-checks what the controller relies on, so an object admitted under an older schema
still gets a condition naming the field instead of a crash. Defaults here equal the CRD's.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

GROUP: Final = "autoscaling.prescale.dev"
VERSION: Final = "v1alpha1"
PLURAL: Final = "predictiveautoscalers"
KIND: Final = "PredictiveAutoscaler"
MODES: Final = ("direct", "hpa-floor", "external-metric", "dry-run")
NODE_BACKENDS: Final = ("placeholder-pods", "capacity-buffer", "machine-deployment", "karpenter-nodepool")
PRESETS: Final[dict[str, str]] = {
    "inference-requests": 'sum(rate(inference_requests_total{{namespace="{namespace}",{selector}}}[1m]))',
}
"""Demand presets: PromQL over the normalized inference families; ``{selector}`` comes from
``demand.selector`` (default: ``pod=~"<target>-.*"``)."""


class SpecError(ValueError):
    """A spec field is missing or out of range; ``field`` is its path (``spec.maxReplicas``)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


@dataclass(frozen=True)
class TargetRef:
    """The scaled workload (anything with a scale subresource)."""

    api_version: str
    """``apps/v1``; for KServe ``serving.kserve.io/v1beta1`` (its predictor Deployment is scaled)."""
    kind: str
    """``Deployment``, ``StatefulSet``, ``InferenceService`` or any kind with ``/scale``."""
    name: str


@dataclass(frozen=True)
class NodePoolSpec:
    """GPU node-pool headroom provisioned ahead of the forecast."""

    backend: str
    """One of :data:`NODE_BACKENDS`."""
    gpus_per_node: int
    """GPUs one node of the pool adds."""
    gpus_per_replica: int = 1
    """GPUs one replica of the target holds."""
    node_lead_time_s: float = 300.0
    """Time from asking for a node to the node being Ready (prior when measured)."""
    name: str = ""
    """The MachineDeployment / NodePool / CapacityBuffer name; placeholder Deployment name."""
    namespace: str = ""
    """Namespace of a MachineDeployment or CapacityBuffer (default: the PA's)."""
    max_nodes: int = 100
    """Never ask for more extra nodes than this."""
    priority_class: str = "prescale-placeholder"
    """Placeholder pods' PriorityClass (negative priority, so serving pods preempt them)."""
    node_selector: Mapping[str, str] | None = None
    """Placeholder pods' node selector (the pool's label)."""


@dataclass(frozen=True)
class PASpec:
    """What one PredictiveAutoscaler asks for. Times in seconds, demand in requests/s."""

    target: TargetRef
    min_replicas: int
    max_replicas: int
    query: str
    """PromQL returning the demand in requests/s (a preset expands to one)."""
    mode: str
    """One of :data:`MODES`."""
    step_s: float = 60.0
    """Model resolution and range-query step."""
    history_s: float = 14 * 86400.0
    """History the models fit on."""
    on_empty: str = "hold"
    """An empty query result: ``hold`` (keep the last decision, condition) or ``zero`` (demand is 0)."""
    capacity_rps: float | None = None
    """Fixed capacity per replica; None: learned from ``capacity_query``."""
    capacity_query: str = ""
    """PromQL of per-replica served requests/s at the SLO (learning capacity)."""
    pod_lead_time_s: float = 120.0
    """Prior (or fixed) time from scale-up to Ready."""
    measure_lead_time: bool = True
    """Learn the lead time from observed scale-ups (the prior until then)."""
    models: tuple[str, ...] = ()
    """Candidate models; empty: every registered one."""
    seasonalities_s: tuple[float, ...] = ()
    """Season lengths; empty: detected from the data."""
    miss_cost_ratio: float = 50.0
    """Cost of unserved demand over the cost of a GPU replica (sets the planning quantile)."""
    refit_interval_s: float = 3600.0
    """Full model refit period (between refits the model state is updated)."""
    scale_down_delay_s: float = 120.0
    fallback_hold_s: float = 300.0
    """While the forecast is gated off, scale-downs wait this long (the HPA's stabilization)."""
    max_scale_up_rate: float = 1000.0
    max_scale_down_rate: float = 2.0
    hpa_name: str = ""
    """The HPA whose ``minReplicas`` is the floor (``hpa-floor`` mode)."""
    node_pool: NodePoolSpec | None = None


def _get(
    m: Mapping[str, Any], key: str, path: str, kind: type | tuple[type, ...], default: Any = None
) -> Any:
    value = m.get(key, default)
    if value is None:
        if default is None:
            raise SpecError(f"{path}.{key}", "is required")
        return default
    if (isinstance(value, bool) and kind is not bool) or not isinstance(value, kind):
        raise SpecError(f"{path}.{key}", f"{value!r} is not a {getattr(kind, '__name__', kind)}")
    return value


def _positive(value: float, field: str) -> float:
    if not (math.isfinite(value) and value > 0):
        raise SpecError(field, f"{value!r} must be > 0")
    return float(value)


def _demand(d: Mapping[str, Any], ns: str, target: TargetRef) -> str:
    query, preset = d.get("query"), d.get("preset")
    if bool(query) == bool(preset):
        raise SpecError("spec.demand", "set exactly one of query and preset")
    if query:
        return str(query)
    if preset not in PRESETS:
        raise SpecError("spec.demand.preset", f"{preset!r} is not one of {', '.join(PRESETS)}")
    selector = str(d.get("selector") or f'pod=~"{target.name}-.*"')
    return PRESETS[preset].format(namespace=ns, selector=selector)


def _node_pool(n: Mapping[str, Any] | None) -> NodePoolSpec | None:
    if not n:
        return None
    p = "spec.nodePool"
    backend = _get(n, "backend", p, str)
    if backend not in NODE_BACKENDS:
        raise SpecError(f"{p}.backend", f"{backend!r} is not one of {', '.join(NODE_BACKENDS)}")
    name = _get(n, "name", p, str, "")
    if backend != "placeholder-pods" and not name:
        raise SpecError(f"{p}.name", f"is required for backend {backend}")
    return NodePoolSpec(
        backend=backend,
        gpus_per_node=int(_positive(_get(n, "gpusPerNode", p, int), f"{p}.gpusPerNode")),
        gpus_per_replica=int(_get(n, "gpusPerReplica", p, int, 1)),
        node_lead_time_s=float(_get(n, "nodeLeadTimeSeconds", p, (int, float), 300)),
        name=name,
        namespace=_get(n, "namespace", p, str, ""),
        max_nodes=int(_get(n, "maxNodes", p, int, 100)),
        priority_class=_get(n, "priorityClassName", p, str, "prescale-placeholder"),
        node_selector=dict(_get(n, "nodeSelector", p, dict, {})) or None,
    )


def parse(obj: Mapping[str, Any]) -> PASpec:
    """The spec of a PredictiveAutoscaler object; :class:`SpecError` names the bad field."""
    spec = obj.get("spec") or {}
    ns = str(obj.get("metadata", {}).get("namespace", ""))
    ref = _get(spec, "scaleTargetRef", "spec", dict)
    target = TargetRef(
        _get(ref, "apiVersion", "spec.scaleTargetRef", str),
        _get(ref, "kind", "spec.scaleTargetRef", str),
        _get(ref, "name", "spec.scaleTargetRef", str),
    )
    lo, hi = int(_get(spec, "minReplicas", "spec", int, 1)), int(_get(spec, "maxReplicas", "spec", int))
    if lo < 0 or hi < max(lo, 1):
        raise SpecError("spec.maxReplicas", f"{hi} must be >= minReplicas ({lo}) and >= 1")
    demand = _get(spec, "demand", "spec", dict)
    act = spec.get("actuation") or {}
    mode = _get(act, "mode", "spec.actuation", str, "direct")
    if mode not in MODES:
        raise SpecError("spec.actuation.mode", f"{mode!r} is not one of {', '.join(MODES)}")
    if mode == "hpa-floor" and not act.get("hpaName"):
        raise SpecError("spec.actuation.hpaName", "is required when mode is hpa-floor")
    cap = spec.get("capacity") or {}
    fixed = cap.get("requestsPerSecondPerReplica")
    if fixed is None and not cap.get("query"):
        raise SpecError("spec.capacity", "set requestsPerSecondPerReplica or query")
    lead = spec.get("leadTime") or {}
    fc = spec.get("forecast") or {}
    beh = spec.get("behavior") or {}
    step = _positive(
        float(_get(demand, "stepSeconds", "spec.demand", (int, float), 60)), "spec.demand.stepSeconds"
    )
    return PASpec(
        target=target,
        min_replicas=lo,
        max_replicas=hi,
        query=_demand(demand, ns, target),
        mode=mode,
        step_s=step,
        history_s=_positive(
            float(_get(demand, "historySeconds", "spec.demand", (int, float), 14 * 86400)),
            "spec.demand.historySeconds",
        ),
        on_empty=_get(demand, "onEmpty", "spec.demand", str, "hold"),
        capacity_rps=None
        if fixed is None
        else _positive(float(fixed), "spec.capacity.requestsPerSecondPerReplica"),
        capacity_query=str(cap.get("query") or ""),
        pod_lead_time_s=float(_get(lead, "podSeconds", "spec.leadTime", (int, float), 120)),
        measure_lead_time=bool(_get(lead, "measure", "spec.leadTime", bool, True)),
        models=tuple(_get(fc, "models", "spec.forecast", list, [])),
        seasonalities_s=tuple(float(s) for s in _get(fc, "seasonalitiesSeconds", "spec.forecast", list, [])),
        miss_cost_ratio=_positive(
            float(_get(fc, "missCostRatio", "spec.forecast", (int, float), 50)), "spec.forecast.missCostRatio"
        ),
        refit_interval_s=float(_get(fc, "refitIntervalSeconds", "spec.forecast", (int, float), 3600)),
        scale_down_delay_s=float(_get(beh, "scaleDownDelaySeconds", "spec.behavior", (int, float), 120)),
        fallback_hold_s=float(_get(beh, "fallbackHoldSeconds", "spec.behavior", (int, float), 300)),
        max_scale_up_rate=float(_get(beh, "maxScaleUpRate", "spec.behavior", (int, float), 1000)),
        max_scale_down_rate=float(_get(beh, "maxScaleDownRate", "spec.behavior", (int, float), 2)),
        hpa_name=str(act.get("hpaName") or ""),
        node_pool=_node_pool(spec.get("nodePool")),
    )
