"""Online estimation of capacity per replica and pod lead time from what was observed.

Capacity: the requests/s one ready replica served while the SLO held. The estimate is a
high quantile of per-replica load among SLO-met samples, capped below by violations (a load
that broke the SLO is above capacity). A fixed override wins over any estimate.

Lead time: the delay from a scale-up request to the pods being ready, planned at a high
quantile so a slow start is the rule we plan for, not the exception we miss.
"""

from __future__ import annotations

import math
from collections import deque

import numpy as np


class CapacityEstimator:
    """Capacity per replica (requests/s at the SLO)."""

    def __init__(
        self,
        *,
        fixed_rps: float | None = None,
        quantile: float = 0.9,
        window: int = 5000,
        min_samples: int = 30,
    ) -> None:
        if fixed_rps is not None and not (math.isfinite(fixed_rps) and fixed_rps > 0):
            raise ValueError(f"fixed capacity must be > 0 requests/s, got {fixed_rps!r}")
        self.fixed_rps = fixed_rps
        self.quantile = quantile
        self.min_samples = min_samples
        self._ok: deque[float] = deque(maxlen=window)
        self._bad: deque[float] = deque(maxlen=window)

    def observe(self, requests_rps: float, ready_replicas: int, slo_met: bool) -> None:
        """One sample: served load, ready replicas, and whether the SLO held at that load."""
        if ready_replicas <= 0 or not math.isfinite(requests_rps) or requests_rps <= 0:
            return
        (self._ok if slo_met else self._bad).append(requests_rps / ready_replicas)

    def estimate(self) -> float | None:
        """Requests/s per replica, or None while there is too little evidence."""
        if self.fixed_rps is not None:
            return self.fixed_rps
        if len(self._ok) < self.min_samples:
            return None
        ok = float(np.quantile(np.fromiter(self._ok, dtype=np.float64), self.quantile))
        if len(self._bad) >= self.min_samples // 3:
            bad = float(np.quantile(np.fromiter(self._bad, dtype=np.float64), 1.0 - self.quantile))
            ok = min(ok, bad)
        return ok


class LeadTimeEstimator:
    """Pod lead time (seconds from scale-up request to ready) at a high quantile."""

    def __init__(
        self, *, prior_s: float, quantile: float = 0.95, window: int = 200, fixed_s: float | None = None
    ) -> None:
        if not (math.isfinite(prior_s) and prior_s >= 0):
            raise ValueError(f"prior lead time must be >= 0 s, got {prior_s!r}")
        self.prior_s = prior_s
        self.fixed_s = fixed_s
        self.quantile = quantile
        self._delays: deque[float] = deque(maxlen=window)
        self._cached: float | None = None

    def observe(self, requested_at_s: float, ready_at_s: float) -> None:
        """One scale-up: when it was requested and when its pod became ready."""
        delay = ready_at_s - requested_at_s
        if math.isfinite(delay) and delay >= 0:
            self._delays.append(delay)
            self._cached = None

    def estimate_s(self) -> float:
        """Lead time to plan for: fixed, else the quantile of observed delays, else the prior."""
        if self.fixed_s is not None:
            return self.fixed_s
        if not self._delays:
            return self.prior_s
        if self._cached is None:
            self._cached = float(np.quantile(np.fromiter(self._delays, dtype=np.float64), self.quantile))
        return self._cached
