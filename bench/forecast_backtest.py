"""A 30-day, 1-minute backtest of all four policies (goal: under 2 minutes).

The trace is synthetic (seeded): Poisson demand around daily and weekly cycles with a few
bursts, 43,200 one-minute buckets, replayed at 15 s steps (172,800 decisions per policy).
Prints the wall time per policy and the total, and the ratio of the predictive policy's time
to the HPA replay's (the baseline measured in the same run).

Run: ``.venv/bin/python bench/forecast_backtest.py [--days 30]``
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from forecaster.backtest.engine import BacktestParams, run_backtest
from forecaster.backtest.report import table
from forecaster.backtest.trace import Trace

MINUTE = 60.0


def synthetic_trace(rng: np.random.Generator, days: int) -> Trace:
    """Per-minute counts with daily and weekly shape and occasional bursts."""
    n = days * 1440
    t = np.arange(n)
    rate = 60 * (1 + 0.6 * np.sin(2 * np.pi * t / 1440)) * (1 - 0.3 * (((t // 1440) % 7) >= 5))
    bursts = rng.random(n) < 0.002
    rate = rate * np.where(bursts, rng.uniform(1.5, 3.0, n), 1.0)
    counts = rng.poisson(rate).astype(np.float64)
    return Trace(np.asarray(t * MINUTE, dtype=np.float64), counts, MINUTE, "requests", f"synthetic-{days}d")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--days", type=int, default=30)
    args = p.parse_args()
    trace = synthetic_trace(np.random.default_rng(11), args.days)
    times: dict[str, float] = {}
    results = {}
    for name in ("oracle", "hpa", "kpa", "predictive"):
        t0 = time.perf_counter()
        results[name] = run_backtest(trace, BacktestParams(policies=(name,)))
        times[name] = time.perf_counter() - t0
    total = sum(times.values())
    steps = results["hpa"].lam.shape[0]
    print(f"trace {trace.name}: {trace.requests.shape[0]} one-minute buckets, {steps} steps of 15 s")
    for name, sec in times.items():
        print(f"  {name:<11} {sec:7.1f} s  ({sec / steps * 1e6:6.1f} us per decision)")
    print(f"total {total:.1f} s for four policies (goal < 120 s) -> {'PASS' if total < 120 else 'FAIL'}")
    print(f"ratio: predictive replay takes {times['predictive'] / times['hpa']:.1f}x the HPA replay")
    scores = {name: r.scores[name] for name, r in results.items()}
    print(table(scores))


if __name__ == "__main__":
    main()
