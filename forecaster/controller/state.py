"""What the controller keeps per PredictiveAutoscaler (``Memory``) and what one reconcile
produced (``Outcome``, read by the metrics collector and the tests)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from forecaster.actuators.modes import Applied
from forecaster.actuators.nodepool import Headroom
from forecaster.controller.forecasting import TargetForecaster
from forecaster.controller.leadtime import ScaleUp
from forecaster.controller.nodelead import NodeLead
from forecaster.controller.spec import PASpec
from forecaster.controller.status import Condition
from forecaster.decider import DeciderState, Decision, WindowForecast
from forecaster.estimation import LeadTimeEstimator


@dataclass
class Memory:
    """What the controller remembers about one PredictiveAutoscaler between reconciles."""

    spec: PASpec
    generation: int
    forecaster: TargetForecaster
    lead: LeadTimeEstimator
    decider: DeciderState = field(default_factory=DeciderState)
    capacity_rps: float | None = None
    scale_up: ScaleUp | None = None
    decisions: dict[str, int] = field(default_factory=dict)
    """Decisions made, by reason (the ``prescale_decisions_total`` counter)."""
    node_lead: NodeLead | None = None
    """Node lead time of the spec's node pool (None without one)."""
    headroom: Headroom | None = None
    """Headroom last asked of the node pool."""


@dataclass(frozen=True)
class Outcome:
    """What one reconcile found and did (for metrics, logs and tests)."""

    namespace: str
    name: str
    ready: Condition
    decision: Decision | None = None
    applied: Applied | None = None
    window: WindowForecast | None = None
    demand_rps: float | None = None
    capacity_rps: float | None = None
    lead_time_s: float | None = None
    horizon_s: float | None = None
    headroom: Headroom | None = None
    decisions: Mapping[str, int] = field(default_factory=dict)
    quality: tuple[float, float] | None = None
    """Recent (error ratio, coverage) of the forecast."""
    node_lead_time_s: float | None = None
    """Node lead time planned for (measured quantile or the spec's prior)."""
