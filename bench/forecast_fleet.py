"""Fit + forecast for 1,000 workloads with two weeks of 1-minute history, on one core.

Prints: the fleet's cold fit + first forecast (goal: < 60 s), the steady-state cost of one
control step for the fleet (state update + forecast per workload, full refits amortized over
a day), and the ratio against statsmodels ETS (heuristic init, daily season) measured on a few
workloads in the same run and extrapolated to the fleet.

Run: ``.venv/bin/python bench/forecast_fleet.py [--workloads N]``
"""

from __future__ import annotations

import os

# One core, as the goal says; set before numpy loads its BLAS.
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

from forecaster.models.base import FloatArray  # noqa: E402
from forecaster.models.ets import HoltWinters  # noqa: E402
from forecaster.models.fourier import FourierRegression  # noqa: E402

DAY = 1440
WEEK = 7 * DAY
HISTORY = 2 * WEEK
HORIZON = 15  # minutes ahead (lead time plus margin)
STEPS_PER_REFIT = DAY


def fleet(rng: np.random.Generator, workloads: int, n: int) -> FloatArray:
    """Poisson demand with per-workload level, daily and weekly shapes and phase."""
    t = np.arange(n) + 3 * DAY + DAY // 2  # the forecast origin falls mid-week, mid-day
    level = rng.uniform(5, 500, (workloads, 1))
    phase = rng.uniform(0, 2 * np.pi, (workloads, 1))
    daily = 1 + 0.5 * np.sin(2 * np.pi * t / DAY + phase)
    weekly = 1 - 0.3 * (((t // DAY) % 7) >= 5)
    return rng.poisson(level * daily * weekly).astype(np.float64)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--workloads", type=int, default=1000)
    p.add_argument("--steps", type=int, default=30, help="steady-state steps to time")
    p.add_argument("--baseline-workloads", type=int, default=3)
    args = p.parse_args()
    rng = np.random.default_rng(7)
    ys = fleet(rng, args.workloads, HISTORY + args.steps)
    hist, live = ys[:, :HISTORY], ys[:, HISTORY:]

    t0 = time.perf_counter()
    models = FourierRegression.fit_many(hist, season_lengths=(DAY, WEEK))
    forecasts = [m.predict(HORIZON) for m in models]
    cold_s = time.perf_counter() - t0

    t0 = time.perf_counter()
    for k in range(args.steps):
        for m, y in zip(models, live[:, k : k + 1], strict=True):
            m.update(y)
            m.predict(HORIZON)
    step_s = (time.perf_counter() - t0) / args.steps
    amortized_step_s = step_s + cold_s / STEPS_PER_REFIT

    h = min(HORIZON, args.steps)
    mae = float(np.mean([np.mean(np.abs(f.mean[:h] - y[:h])) for f, y in zip(forecasts, live, strict=True)]))
    naive = float(np.mean(np.abs(hist[:, HISTORY - WEEK : HISTORY - WEEK + h] - live[:, :h])))
    t0 = time.perf_counter()
    for y in hist[: args.baseline_workloads]:
        HoltWinters(season_length=DAY).fit(y[-WEEK:]).predict(HORIZON)
    ets_each_s = (time.perf_counter() - t0) / args.baseline_workloads
    ets_fleet_s = ets_each_s * args.workloads

    print(f"workloads {args.workloads}, history {HISTORY} points (1 min), horizon {HORIZON}, one core")
    verdict = "PASS" if cold_s < 60 else "FAIL"
    print(f"cold fit + forecast, whole fleet: {cold_s:.2f} s (goal < 60 s) -> {verdict}")
    print(
        f"steady state per 1-minute step, whole fleet: update+forecast {step_s * 1000:.1f} ms, "
        f"with daily refit amortized {amortized_step_s * 1000:.1f} ms"
    )
    print(
        f"MAE of the first {h}-minute forecast: {mae:.2f} requests/min "
        f"(seasonal naive, same time last week: {naive:.2f})"
    )
    print(
        f"baseline statsmodels ETS (daily season, 1 week, heuristic init): {ets_each_s:.2f} s per workload, "
        f"{ets_fleet_s:.0f} s for the fleet (extrapolated from {args.baseline_workloads})"
    )
    print(f"ratio: fleet fit is {ets_fleet_s / cold_s:.0f}x faster than ETS")


if __name__ == "__main__":
    main()
