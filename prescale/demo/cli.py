"""``prescale demo``: prescale next to the HPA on the same real demand.

By default the whole stack runs on this machine (control plane with KWOK GPU nodes,
Prometheus, exporter, adapter, controller) and a day of a real trace plays in compressed
time. ``--no-cluster`` runs the same comparison through the in-process replay model, in
seconds, for machines where the control plane cannot run.
"""

from __future__ import annotations

import argparse
import logging
import math
import sys
from pathlib import Path

from forecaster.backtest.cli import BUILTIN
from forecaster.backtest.engine import BacktestError
from forecaster.backtest.trace import TraceError, load_trace
from prescale.demo import live, offline, report

log = logging.getLogger(__name__)
DEFAULT_TRACE = BUILTIN / "servegen_m_large_per_10min.csv"
DEFAULT_MISS_COST = offline.DEFAULT_MISS_COST


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="prescale demo", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--no-cluster", action="store_true",
                   help="replay in-process only (seconds; no control plane needed)")
    p.add_argument("--trace", type=Path, default=DEFAULT_TRACE,
                   help="trace CSV (timestamp_s,requests); default: ServeGen LLM serving, 10-min buckets")
    p.add_argument("--day", type=int, default=12,
                   help="which day of the trace to replay (0-based; default 12)")
    p.add_argument("--history-days", type=float, default=7.0,
                   help="days before it the forecaster learns from (default 7)")
    p.add_argument("--peak-replicas", type=int, default=20,
                   help="capacity per replica is set so the day's peak needs this many (default 20)")
    p.add_argument("--pod-lead-s", type=float, default=180.0,
                   help="seconds from scale-up to a Ready replica, in trace time (default 180)")
    p.add_argument("--miss-cost-ratio", type=float, default=DEFAULT_MISS_COST,
                   help="cost of one replica-hour of unserved demand in GPU replica-hours; sets the "
                        f"quantile prescale plans on, q = r / (r + 1) (default {DEFAULT_MISS_COST:g})")
    p.add_argument("--step-s", type=float, default=15.0,
                   help="control step of the replay, in trace seconds: every policy decides once per "
                        "step (default 15). The cluster demo also replays at its own cadence.")
    p.add_argument("--frontier", action="store_true",
                   help="with --no-cluster: also sweep the HPA's target utilization and prescale's miss "
                        "cost and compare them at equal GPU-hours (10 more replays, about a minute). "
                        "The cluster demo always sweeps, at its own cadence.")
    p.add_argument("--day-minutes", type=float, default=10.0,
                   help="wall-clock minutes one day of traffic takes in the cluster demo (default 10)")
    p.add_argument("--out", type=Path, default=Path("demo-report"),
                   help="folder for report.html (default ./demo-report)")
    return p


def _progress(name: str, frac: float) -> None:
    """A bar on a terminal; otherwise one line per quarter, so logs stay readable."""
    if sys.stderr.isatty():
        end = "\n" if frac >= 1.0 else ""
        print(f"\rreplaying {name:<11} [{'#' * int(frac * 30):<30}] {100 * frac:5.1f}%", end=end,
              file=sys.stderr, flush=True)
    elif frac == 0.0 or frac >= 1.0 or int(frac * 100) % 25 == 0:
        print(f"replaying {name}: {100 * frac:.0f}%", file=sys.stderr, flush=True)


def _run_offline(args: argparse.Namespace) -> int:
    trace = load_trace(args.trace)
    window = offline.cut_window(trace, args.day, args.history_days)
    print(f"{trace.name}: replaying day {args.day} after {args.history_days:g} days of history "
          f"(in-process replay model, pod lead time {args.pod_lead_s:g} s, a decision every "
          f"{args.step_s:g} s)", file=sys.stderr)
    result = offline.run(window, args.peak_replicas, args.pod_lead_s, args.miss_cost_ratio, _progress,
                         step_s=args.step_s)
    rows = offline.rows_of(result)
    print(report.table_text(rows))
    front = None
    if args.frontier:
        front = offline.sweep(window, args.peak_replicas, args.pod_lead_s, step_s=args.step_s)
        print(front.table())
        print(front.summary())
    path = args.out / "report.html"
    offline.write_report(path, window, result, f"prescale demo (replay): {trace.name}, day {args.day}", front)
    print(f"report: {path}")
    return 0


def main(argv: list[str]) -> int:
    args = parser().parse_args(argv)
    if (args.peak_replicas < 1 or not args.pod_lead_s >= 0 or not 0 < args.day_minutes < math.inf
            or not args.miss_cost_ratio > 0 or not 0 < args.step_s < math.inf):
        print("prescale demo: --peak-replicas must be >= 1, --pod-lead-s >= 0, --day-minutes > 0, "
              "--miss-cost-ratio > 0 and --step-s > 0", file=sys.stderr)
        return 2
    try:
        if args.no_cluster:
            return _run_offline(args)
        return live.run(args)
    except (TraceError, BacktestError, offline.DemoError) as e:
        print(f"prescale demo: {e}", file=sys.stderr)
        return 2
