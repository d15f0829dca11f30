"""Knative Serving's KPA (``pkg/autoscaler/scaling/autoscaler.go`` ``Scale``), exactly, on
the requests-per-second metric, decided once per control step.

Defaults are upstream's: stable window 60 s, panic window 10 % of it (6 s), panic threshold
200 %, max scale-up rate 1000, max scale-down rate 2, target utilization 70 %, scale-down
delay 0. The per-second metric buckets are the replay's demand (held over each step); the
activator, scale to zero and pod sampling are not modelled (min scale 1).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from forecaster.backtest.policies import replicas_for
from forecaster.backtest.replay import Cluster
from forecaster.models.base import FloatArray


@dataclass(frozen=True)
class KPAConfig:
    """KPA knobs; defaults are upstream's."""

    target_utilization: float = 0.7
    stable_window_s: float = 60.0
    panic_window_percentage: float = 10.0
    panic_threshold: float = 2.0
    max_scale_up_rate: float = 1000.0
    max_scale_down_rate: float = 2.0
    min_scale: int = 1
    max_scale: int = 1000


class KPA:
    """One Knative revision's autoscaler under replay."""

    name = "kpa"

    def __init__(self, lam: FloatArray, capacity: float, step_s: float, config: KPAConfig) -> None:
        self.lam = lam
        self.step_s = step_s
        self.config = config
        self.target = capacity * config.target_utilization
        self.stable_steps = max(1, round(config.stable_window_s / step_s))
        panic_s = max(1.0, round(config.stable_window_s * config.panic_window_percentage / 100))
        self.panic_steps = max(1, math.ceil(panic_s / step_s - 1e-9))
        self.panic_time: float | None = None
        self.max_panic_pods = 0
        # Window averages of completed steps, computed once (cumulative sums).
        self._csum = np.concatenate([[0.0], np.cumsum(lam)])

    def initial(self) -> int:
        return replicas_for(float(self.lam[0]), self.target)

    def _avg(self, i: int, steps: int) -> float:
        lo = max(0, i - steps)
        if i <= 0:
            return float(self.lam[0])
        return float((self._csum[i] - self._csum[lo]) / (i - lo))

    def decide(self, i: int, cluster: Cluster) -> int:
        c = self.config
        now = i * self.step_s
        ready = max(1, cluster.ready)
        max_up = math.ceil(c.max_scale_up_rate * ready)
        max_down = math.floor(ready / c.max_scale_down_rate)
        dspc = math.ceil(self._avg(i, self.stable_steps) / self.target)
        dppc = math.ceil(self._avg(i, self.panic_steps) / self.target)
        ds = min(max(dspc, max_down), max_up)
        dp = min(max(dppc, max_down), max_up)
        over = dppc / ready >= c.panic_threshold
        if over:
            self.panic_time = now  # enter or extend panic
        elif self.panic_time is not None and now > self.panic_time + c.stable_window_s:
            self.panic_time = None
            self.max_panic_pods = 0
        if self.panic_time is not None:
            self.max_panic_pods = max(self.max_panic_pods, ds, dp)
            desired = self.max_panic_pods
        else:
            desired = ds
        return min(max(desired, c.min_scale), c.max_scale)
