"""The cost frontier: the HPA over target utilizations against prescale over miss costs.

A single run of each policy compares two points, but each policy has a knob that trades
GPU-hours for unserved demand (the HPA's target utilization, prescale's miss cost ratio), so
one run can look better on one axis and worse on the other only because of where its knob
sits. The frontier sweeps both knobs over the same trace, step and scored window, and
compares prescale with the HPA *at equal GPU-hours*: the HPA's under-provisioning at a given
GPU-hour figure is interpolated linearly between the two HPA runs whose GPU-hours bracket it
(none outside the HPA's swept range: the frontier does not extrapolate).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from forecaster.backtest.engine import BacktestError, BacktestParams, run_backtest
from forecaster.backtest.trace import Trace

HPA_TARGETS = (0.5, 0.6, 0.7, 0.8, 0.9)
"""Target utilizations the HPA is swept over (0.7 is the usual setting)."""
MISS_COSTS = (5.0, 10.0, 20.0, 50.0, 200.0)
"""Miss cost ratios prescale is swept over (50 is the PredictiveAutoscaler default)."""


@dataclass(frozen=True)
class FrontierPoint:
    """One run: a policy at one setting of its knob."""

    policy: str
    """``hpa`` or ``predictive``."""
    knob: float
    """The HPA's target utilization, or prescale's miss cost ratio."""
    under_provisioned_share: float
    gpu_hours: float


@dataclass(frozen=True)
class Frontier:
    """Both sweeps over one trace, step and scored window."""

    step_s: float
    scored_from_s: float
    hpa: tuple[FrontierPoint, ...]
    predictive: tuple[FrontierPoint, ...]

    def hpa_under_at(self, gpu_hours: float) -> float | None:
        """The HPA's under-provisioned share at ``gpu_hours``, interpolated between the two
        swept settings that bracket it; None outside the swept range."""
        pts = sorted(self.hpa, key=lambda p: p.gpu_hours)
        for lo, hi in itertools.pairwise(pts):
            if lo.gpu_hours <= gpu_hours <= hi.gpu_hours:
                span = hi.gpu_hours - lo.gpu_hours
                w = 0.0 if span <= 0 else (gpu_hours - lo.gpu_hours) / span
                return lo.under_provisioned_share + w * (
                    hi.under_provisioned_share - lo.under_provisioned_share
                )
        return None

    def comparisons(self) -> list[tuple[FrontierPoint, float | None]]:
        """Each prescale point with the HPA's under-provisioning at the same GPU-hours."""
        return [(p, self.hpa_under_at(p.gpu_hours)) for p in self.predictive]

    def table(self) -> str:
        """Plain-text table: both sweeps, and the HPA at each prescale point's GPU-hours."""
        head = (
            f"{'policy':<11} {'setting':>16} {'under-prov %':>12} {'GPU-hours':>10} {'hpa at same GPU-h':>18}"
        )
        lines = [head, "-" * len(head)]
        for p in self.hpa:
            lines.append(
                f"{'hpa':<11} {f'target {p.knob:g}':>16} {100 * p.under_provisioned_share:>12.3f} "
                f"{p.gpu_hours:>10.1f} {'':>18}"
            )
        for p, at in self.comparisons():
            same = "outside its range" if at is None else f"{100 * at:.3f} %"
            lines.append(
                f"{'predictive':<11} {f'miss cost {p.knob:g}':>16} {100 * p.under_provisioned_share:>12.3f} "
                f"{p.gpu_hours:>10.1f} {same:>18}"
            )
        return "\n".join(lines)

    def summary(self) -> str:
        """One line: at how many miss costs prescale misses less than the HPA at equal GPU-hours."""
        inside = [(p, at) for p, at in self.comparisons() if at is not None]
        better = [p for p, at in inside if p.under_provisioned_share < at]
        parts = [f"miss cost {p.knob:g}: {p.under_provisioned_share:.2%} vs {at:.2%}" for p, at in inside]
        if not inside:
            gpu = [p.gpu_hours for p in self.hpa]
            return (
                f"frontier (replay, a decision every {self.step_s:g} s): no miss cost puts prescale "
                f"inside the HPA's GPU-hour range ({min(gpu):.1f} to {max(gpu):.1f}), so there is no "
                f"comparison at equal GPU-hours"
            )
        head = (
            f"frontier (replay, a decision every {self.step_s:g} s): at equal GPU-hours prescale "
            f"under-provisions less than the HPA at {len(better)} of {len(inside)} miss costs inside "
            f"the HPA's range"
        )
        return head + ": " + "; ".join(parts)

    def document(self) -> dict[str, Any]:
        """The frontier for ``--json``."""
        return {
            "step_s": self.step_s,
            "scored_from_s": self.scored_from_s,
            "hpa": [
                {
                    "target_utilization": p.knob,
                    "under_provisioned_share": p.under_provisioned_share,
                    "gpu_hours": p.gpu_hours,
                }
                for p in self.hpa
            ],
            "predictive": [
                {
                    "miss_cost_ratio": p.knob,
                    "under_provisioned_share": p.under_provisioned_share,
                    "gpu_hours": p.gpu_hours,
                    "hpa_under_provisioned_share_at_same_gpu_hours": at,
                }
                for p, at in self.comparisons()
            ],
        }


def settings(targets: Sequence[float], costs: Sequence[float]) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """The sweep's HPA targets and miss costs, sorted and checked (one-line error when bad)."""
    return _knobs(targets, "--frontier-targets", upper=1.0), _knobs(costs, "--frontier-costs")


def _knobs(values: Sequence[float], name: str, *, upper: float = math.inf) -> tuple[float, ...]:
    if len(set(values)) < 2:
        raise BacktestError(
            f"{name}: the frontier needs at least 2 different settings, got {len(set(values))}"
        )
    bad = [v for v in values if not (math.isfinite(v) and 0 < v <= upper)]
    if bad:
        allowed = f"in (0, {upper:g}]" if math.isfinite(upper) else "> 0"
        raise BacktestError(f"{name}: {bad[0]:g} is not allowed; every setting must be {allowed}")
    return tuple(sorted(set(values)))


def sweep(
    trace: Trace,
    params: BacktestParams,
    *,
    targets: Sequence[float] = HPA_TARGETS,
    costs: Sequence[float] = MISS_COSTS,
    progress: Callable[[str], None] | None = None,
) -> Frontier:
    """Replay the HPA at every target and prescale at every miss cost, all else as ``params``.

    Every run scores the same window (``params.score_from_s`` or the default after the
    predictive warm-up, which depends only on the trace and the step)."""
    hpa_targets, miss_costs = settings(targets, costs)
    runs = [("hpa", t) for t in hpa_targets] + [("predictive", c) for c in miss_costs]
    points: dict[str, list[FrontierPoint]] = {"hpa": [], "predictive": []}
    scored_from = math.nan
    for k, (policy, knob) in enumerate(runs, 1):
        if progress is not None:
            setting = f"target {knob:g}" if policy == "hpa" else f"miss cost {knob:g}"
            progress(f"frontier {k}/{len(runs)}: {policy} at {setting}")
        p = (
            replace(params, policies=("hpa",), hpa_target_utilization=knob)
            if policy == "hpa"
            else replace(params, policies=("predictive",), miss_cost_ratio=knob)
        )
        result = run_backtest(trace, p)
        s = result.scores[policy]
        scored_from = result.scored_from_s
        points[policy].append(FrontierPoint(policy, knob, s.under_provisioned_share, s.gpu_hours))
    return Frontier(params.step_s, scored_from, tuple(points["hpa"]), tuple(points["predictive"]))
