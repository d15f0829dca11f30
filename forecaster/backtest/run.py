"""Running policies through the replay model and scoring them over a common window."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from forecaster.backtest.policies import ReplayPolicy
from forecaster.backtest.replay import Cluster, ReplayConfig
from forecaster.models.base import FloatArray

IntArray = npt.NDArray[np.int64]
Progress = Callable[[str, float], None]


@dataclass(frozen=True)
class PolicyRun:
    """What one policy did, per step."""

    name: str
    requested: IntArray
    ready: IntArray
    gpus: IntArray


@dataclass(frozen=True)
class PolicyScore:
    """The figures a backtest reports for one policy (over the scored window)."""

    under_provisioned_share: float
    """sum(max(0, demand - ready * capacity)) / sum(demand)."""
    gpu_hours: float
    """GPUs held (requested replicas, or node GPUs with a node pool) x time."""
    violation_minutes: float
    """Minutes during which some demand exceeded ready capacity."""
    scale_actions: int
    """Changes of the requested replica count."""


def run_policy(
    policy: ReplayPolicy, lam: FloatArray, config: ReplayConfig, progress: Progress | None = None
) -> PolicyRun:
    """Replay ``policy`` over every step of ``lam``; the replay starts warm."""
    n = lam.shape[0]
    cluster = Cluster.warm(config, policy.initial())
    requested = np.zeros(n, dtype=np.int64)
    ready = np.zeros(n, dtype=np.int64)
    gpus = np.zeros(n, dtype=np.int64)
    every = max(1, n // 50)
    for i in range(n):
        want = policy.decide(i, cluster)
        cluster.step(i, max(0, int(want)))
        requested[i], ready[i], gpus[i] = cluster.requested, cluster.ready, cluster.gpus_held()
        if progress is not None and i % every == 0:
            progress(policy.name, i / n)
    if progress is not None:
        progress(policy.name, 1.0)
    return PolicyRun(policy.name, requested, ready, gpus)


def score(run: PolicyRun, lam: FloatArray, capacity: float, step_s: float, from_step: int) -> PolicyScore:
    """Score ``run`` over steps ``[from_step, end)``."""
    d = lam[from_step:]
    short = np.maximum(0.0, d - run.ready[from_step:] * capacity)
    total = float(d.sum())
    req = run.requested[from_step - 1 :] if from_step > 0 else run.requested
    return PolicyScore(
        under_provisioned_share=float(short.sum() / total) if total > 0 else 0.0,
        gpu_hours=float(run.gpus[from_step:].sum() * step_s / 3600.0),
        violation_minutes=float(np.count_nonzero(short > 1e-9 * max(capacity, 1.0)) * step_s / 60.0),
        scale_actions=int(np.count_nonzero(np.diff(req))),
    )


def step_coverage(planned: FloatArray, lam: FloatArray, lead_steps: int, from_step: int) -> tuple[float, int]:
    """Share of scored steps whose demand was at or below the lowest band issued for a window
    holding the step (``planned[u]`` for ``u`` in ``[s - lead, s]``): the capacity it got."""
    n = lam.shape[0]
    padded = np.concatenate([np.full(lead_steps, np.nan), planned])
    windows = np.lib.stride_tricks.sliding_window_view(padded, lead_steps + 1)[:n]
    with np.errstate(all="ignore"):
        lowest = np.where(np.isnan(windows), np.inf, windows).min(axis=1)
    ok = np.isfinite(lowest[from_step:])
    total = int(np.count_nonzero(ok))
    hits = int(np.count_nonzero(lam[from_step:][ok] <= lowest[from_step:][ok] + 1e-9))
    return (hits / total if total else math.nan), total


def window_coverage(
    point: FloatArray, planned: FloatArray, lam: FloatArray, lead_steps: int, from_step: int
) -> tuple[float, int]:
    """Share of scored windows whose actual peak was at or below the planned band."""
    hits = total = 0
    n = lam.shape[0]
    for j in range(from_step, n - lead_steps):
        if math.isnan(planned[j]):
            continue
        total += 1
        hits += float(lam[j : j + lead_steps + 1].max()) <= planned[j] + 1e-9
    return (hits / total if total else math.nan), total
