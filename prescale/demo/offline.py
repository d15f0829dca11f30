"""``prescale demo --no-cluster``: the same comparison through the in-process replay model.

It replays one day of a trace (after some days of history the forecaster learns from)
through the HPA, prescale's predictive policy and the perfect-foresight oracle, scores all
three over that day, and writes the report.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from forecaster.backtest import frontier
from forecaster.backtest.engine import BacktestParams, BacktestResult, run_backtest
from forecaster.backtest.frontier import Frontier
from forecaster.backtest.trace import Trace
from prescale.demo import report

DAY_S = 86400.0
DEFAULT_MISS_COST = 50.0
"""The PredictiveAutoscaler default (spec.forecast.missCostRatio): the demo does not tune it."""


class DemoError(Exception):
    """Options the demo cannot run with; one line for the user."""


@dataclass(frozen=True)
class DemoWindow:
    """The part of the trace the demo replays: history, then the scored day."""

    trace: Trace
    """The sliced trace (history + scored day), time starting at 0."""
    score_from_s: float
    """Start of the scored day within ``trace``."""
    day_s: float
    """Length of the scored part (a day, or less when the trace is shorter)."""


def cut_window(trace: Trace, day: int, history_days: float) -> DemoWindow:
    """History of ``history_days`` before day ``day`` (0-based, counted from the trace start)."""
    if day < 0 or history_days < 0 or not math.isfinite(history_days):
        raise DemoError(f"--day must be >= 0 and --history-days >= 0 (got {day}, {history_days:g})")
    t = trace.timestamps_s - trace.timestamps_s[0]
    start = day * DAY_S
    begin = start - history_days * DAY_S
    end = min(start + DAY_S, trace.span_s)
    if begin < 0 or end - start < 2 * trace.bucket_s:
        days = trace.span_s / DAY_S
        raise DemoError(f"{trace.name}: spans {days:.1f} days; day {day} with {history_days:g} days of "
                        f"history does not fit (need day >= history days and day < {math.floor(days)})")
    keep = (t >= begin) & (t < end)
    sliced = replace(trace, timestamps_s=t[keep] - begin, requests=trace.requests[keep])
    return DemoWindow(trace=sliced, score_from_s=start - begin, day_s=end - start)


def params(window: DemoWindow, peak_replicas: int, pod_lead_s: float, miss_cost_ratio: float, *,
           step_s: float = 15.0,
           policies: tuple[str, ...] = ("oracle", "hpa", "predictive")) -> BacktestParams:
    """The replay's parameters: every policy scored over the demo's day."""
    return BacktestParams(step_s=step_s, peak_replicas=peak_replicas, pod_lead_s=pod_lead_s,
                          miss_cost_ratio=miss_cost_ratio, score_from_s=window.score_from_s,
                          policies=policies)


def run(window: DemoWindow, peak_replicas: int, pod_lead_s: float, miss_cost_ratio: float,
        progress: Callable[[str, float], None] | None = None, *, step_s: float = 15.0,
        policies: tuple[str, ...] = ("oracle", "hpa", "predictive")) -> BacktestResult:
    """Replay the window; ``step_s``: the control step (how often every policy decides)."""
    p = params(window, peak_replicas, pod_lead_s, miss_cost_ratio, step_s=step_s, policies=policies)
    return run_backtest(window.trace, p, progress)


def sweep(window: DemoWindow, peak_replicas: int, pod_lead_s: float, *, step_s: float) -> Frontier:
    """The HPA and prescale frontiers over the demo's day (see :mod:`forecaster.backtest.frontier`)."""
    p = params(window, peak_replicas, pod_lead_s, DEFAULT_MISS_COST, step_s=step_s)
    return frontier.sweep(window.trace, p, progress=lambda msg: print(msg, file=sys.stderr, flush=True))


def rows_of(result: BacktestResult, suffix: str = "") -> list[report.Row]:
    return [report.Row(name + suffix, s.under_provisioned_share, s.gpu_hours, s.violation_minutes,
                       s.scale_actions) for name, s in result.scores.items()]


def write_report(path: Path, window: DemoWindow, result: BacktestResult, title: str,
                 front: Frontier | None = None) -> None:
    step = float(result.parameters["step_s"])
    first = int(window.score_from_s // step)
    hours = (np.arange(result.lam.shape[0] - first) * step / 3600.0).tolist()
    demand = report.Curve("demand (req/s)", hours, result.lam[first:].tolist())
    curves = [report.Curve(f"{run.name}: ready capacity", hours,
                           (run.ready[first:] * result.capacity).tolist()) for run in result.runs]
    plot = report.capacity_plot(demand, curves, f"{window.trace.name}: the scored day")
    notes = [f"Forecast band coverage: {result.extra['predictive_coverage']['measured']:.1%} "
             f"(nominal {result.extra['predictive_coverage']['nominal']:.1%})"
             ] if "predictive_coverage" in result.extra else []
    plots = {"Demand and ready capacity": plot}
    if front is not None:
        plots["Frontier: under-provisioning against GPU-hours"] = report.frontier_plot(front)
        notes.append(front.summary())
    report.write_html(path, title, rows_of(result), plots=plots, params=result.parameters, notes=notes)
