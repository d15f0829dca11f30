"""Compressed time: the demo replays a day of traffic in minutes of wall-clock time."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class CompressedClock:
    """Maps wall-clock seconds since start onto trace seconds: ``sim = start_sim + wall * factor``."""

    factor: float
    """Trace seconds per wall-clock second (a day in 10 minutes is 144)."""
    start_sim_s: float = 0.0
    """Trace time at which the replay starts."""
    wall: Callable[[], float] = time.monotonic
    _t0: float = field(default=0.0, init=False)

    def __post_init__(self) -> None:
        if not self.factor > 0:
            raise ValueError(f"time compression must be > 0, got {self.factor}")
        self._t0 = self.wall()

    def elapsed_wall_s(self) -> float:
        return self.wall() - self._t0

    def sim_s(self) -> float:
        return self.start_sim_s + self.elapsed_wall_s() * self.factor

    def wall_s_for(self, sim_seconds: float) -> float:
        """Wall-clock seconds that ``sim_seconds`` of trace time take."""
        return sim_seconds / self.factor
