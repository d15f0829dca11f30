"""What a replayed policy is, and the perfect-foresight oracle.

A policy sees the demand array but promises causality: ``decide(i, cluster)`` at step ``i``
reads demand of completed steps only (``< i``), except the oracle, whose point is to cheat.
The causality test perturbs the future and checks that earlier decisions do not move.
"""

from __future__ import annotations

import math
from typing import Protocol

import numpy as np

from forecaster.backtest.replay import Cluster
from forecaster.models.base import FloatArray


class ReplayPolicy(Protocol):
    """One autoscaler under replay."""

    name: str

    def initial(self) -> int:
        """Replicas at the (warm) start of the replay."""
        ...

    def decide(self, i: int, cluster: Cluster) -> int:
        """Replicas to request at the start of step ``i``."""
        ...


def observed(lam: FloatArray, i: int, delay_steps: int = 0) -> float:
    """Demand of the last step completed ``delay_steps`` steps before step ``i`` (0 before any)."""
    j = i - 1 - delay_steps
    return float(lam[j]) if j >= 0 else float(lam[0])


def replicas_for(rps: float, capacity: float) -> int:
    """Replicas that serve ``rps`` at full capacity (at least 1)."""
    return max(1, math.ceil(rps / capacity - 1e-9))


class Oracle:
    """Requests at ``t`` what the maximum demand over ``[t, t + lead]`` needs."""

    name = "oracle"

    def __init__(self, lam: FloatArray, capacity: float, lead_steps: int) -> None:
        self.capacity = capacity
        # Sliding maximum over [i, i + lead] for every i, computed once.
        n = lam.shape[0]
        padded = np.concatenate([lam, np.full(lead_steps, lam[-1])])
        windows = np.lib.stride_tricks.sliding_window_view(padded, lead_steps + 1)
        self._need = [replicas_for(float(v), capacity) for v in windows.max(axis=1)[:n]]

    def initial(self) -> int:
        return self._need[0]

    def decide(self, i: int, cluster: Cluster) -> int:
        return self._need[i]
