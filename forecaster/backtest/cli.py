"""``prescale backtest TRACE.csv``: replay a trace through oracle, hpa, kpa and predictive.

Errors in the trace or the options print one line and exit 2; never a traceback.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from forecaster.backtest import frontier, report
from forecaster.backtest.engine import BacktestError, BacktestParams, run_backtest
from forecaster.backtest.trace import TraceError, load_trace

log = logging.getLogger(__name__)
EXIT_USAGE = 2
BUILTIN = Path(__file__).parent / "traces"


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="prescale backtest",
        description="Replay a request trace (timestamp_s,requests) through oracle, hpa, kpa and predictive "
        "under the same replay model, and compare under-provisioning and GPU-hours.",
        epilog=f"Built-in example traces: {BUILTIN}",
    )
    p.add_argument("trace", type=Path, help="CSV with columns timestamp_s and the demand column")
    p.add_argument("--column", default="requests", help="demand column (requests per bucket)")
    cap = p.add_mutually_exclusive_group()
    cap.add_argument(
        "--peak-replicas", type=int, default=None, help="capacity so that the peak needs N replicas (40)"
    )
    cap.add_argument(
        "--capacity-per-replica", type=float, default=None, help="requests/s one replica serves at its SLO"
    )
    p.add_argument(
        "--step-s",
        type=float,
        default=15.0,
        help="control step: every policy decides once per step (s, default 15); a live run in "
        "compressed time decides once per compression x its interval",
    )
    p.add_argument("--pod-lead-s", type=float, default=180.0, help="scale-up request to ready (s)")
    p.add_argument(
        "--node-lead-s", type=float, default=0.0, help="new node to ready (s); needs --gpus-per-node"
    )
    p.add_argument("--gpus-per-node", type=int, default=None, help="model a GPU node pool of this node size")
    p.add_argument("--gpus-per-replica", type=int, default=1)
    p.add_argument("--hpa-target-utilization", type=float, default=0.7)
    p.add_argument("--kpa-target-utilization", type=float, default=0.7)
    p.add_argument(
        "--seasonality",
        default=None,
        help="predictive: use these seasons instead of detecting them (hourly,daily,weekly)",
    )
    p.add_argument(
        "--scale-down-delay-s",
        type=float,
        default=None,
        help="predictive: hold the highest recommendation this long before scaling down",
    )
    p.add_argument(
        "--miss-cost-ratio",
        type=float,
        default=None,
        help="cost of a replica-hour of unserved demand / cost of a GPU replica-hour (sets the quantile)",
    )
    p.add_argument(
        "--score-from-s",
        type=float,
        default=None,
        help="score every policy from this time (default: after the predictive warm-up)",
    )
    _output_options(p)
    return p


def _output_options(p: argparse.ArgumentParser) -> None:
    """Which policies run and where the results go."""
    p.add_argument("--policies", default="oracle,hpa,kpa,predictive", help="comma-separated subset")
    p.add_argument(
        "--json", type=Path, default=None, metavar="OUT", help="write figures and parameters as JSON"
    )
    p.add_argument("--decisions", type=Path, default=None, metavar="OUT.csv", help="write per-step decisions")
    p.add_argument(
        "--plot", type=Path, default=None, metavar="OUT.png", help="plot demand, capacity and bands"
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    p.add_argument(
        "--frontier",
        action="store_true",
        help="also sweep the HPA's target utilization and predictive's miss cost, and compare "
        "their under-provisioning at equal GPU-hours (10 more replays)",
    )
    for flag, what, metavar, defaults in (
        ("--frontier-targets", "HPA target utilizations", "T,T,...", frontier.HPA_TARGETS),
        ("--frontier-costs", "predictive miss cost ratios", "C,C,...", frontier.MISS_COSTS),
    ):
        default = ",".join(f"{v:g}" for v in defaults)
        p.add_argument(
            flag,
            default=None,
            metavar=metavar,
            help=f"{what} of the frontier (implies --frontier; default {default})",
        )


def _floats(text: str, option: str) -> list[float]:
    """A comma-separated list of numbers, or one line naming the bad item."""
    out = []
    for item in (x.strip() for x in text.split(",")):
        try:
            out.append(float(item))
        except ValueError:
            raise BacktestError(
                f"{option}: {item!r} is not a number (expected numbers separated by commas)"
            ) from None
    return out


def _progress(name: str, frac: float) -> None:
    bar = "#" * int(frac * 30)
    end = "\n" if frac >= 1.0 else ""
    print(f"\r{name:<11} [{bar:<30}] {100 * frac:5.1f}%", end=end, file=sys.stderr, flush=True)


def main(argv: list[str]) -> int:
    args = parser().parse_args(argv)
    try:
        trace = load_trace(args.trace, args.column)
        params = BacktestParams.from_args(args)
        sweeping = args.frontier or args.frontier_targets is not None or args.frontier_costs is not None
        targets, costs = frontier.settings(
            frontier.HPA_TARGETS
            if args.frontier_targets is None
            else _floats(args.frontier_targets, "--frontier-targets"),
            frontier.MISS_COSTS
            if args.frontier_costs is None
            else _floats(args.frontier_costs, "--frontier-costs"),
        )
        result = run_backtest(trace, params, None if args.no_progress else _progress)
        front = (
            frontier.sweep(
                trace,
                params,
                targets=targets,
                costs=costs,
                progress=None if args.no_progress else lambda msg: print(msg, file=sys.stderr, flush=True),
            )
            if sweeping
            else None
        )
        doc = report.document(result.parameters, result.scores, result.extra)
        if front is not None:
            doc["frontier"] = front.document()
        if args.json:
            report.write_json(args.json, doc)
        if args.decisions:
            report.write_decisions(args.decisions, result.runs, result.lam, params.step_s)
        if args.plot:
            report.write_plot(
                args.plot,
                result.runs,
                result.lam,
                step_s=params.step_s,
                capacity=result.capacity,
                band=result.band,
                scored_from_s=result.scored_from_s,
            )
    except (TraceError, BacktestError) as e:
        print(f"prescale backtest: {e}", file=sys.stderr)
        return EXIT_USAGE
    except OSError as e:
        print(f"prescale backtest: cannot write output: {e}", file=sys.stderr)
        return EXIT_USAGE
    print(
        f"trace {trace.name}: {result.lam.shape[0]} steps of {params.step_s:g} s, "
        f"capacity {result.capacity:.4g} req/s per replica, scored from {result.scored_from_s:g} s"
    )
    print(report.table(result.scores))
    cov = result.extra.get("predictive_coverage")
    if isinstance(cov, dict):
        print(
            f"predictive band coverage {100 * cov['measured']:.1f}% of steps (nominal "
            f"{100 * cov['nominal']:.1f}%, {cov['steps']} steps; window peaks "
            f"{100 * cov['window_peak_measured']:.1f}%)"
        )
    if front is not None:
        print(front.table())
        print(front.summary())
    log.info("backtest done", extra={"fields": {"trace": trace.name, "steps": int(result.lam.shape[0])}})
    return 0
