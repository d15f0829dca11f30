"""Readiness, start-up time and draining: the parts of a replica's life the autoscaler sees.

Start-up time runs from the process's start (read from ``/proc`` so interpreter start and
imports count) to the first moment every model is loaded and warmed up. It is the pod lead
time the forecaster learns, so it is logged once and exported as ``inference_startup_seconds``.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from serving.metrics import ServerMetrics

log = logging.getLogger(__name__)


class _Readiness(Protocol):
    @property
    def ready(self) -> bool: ...


def process_age_s(proc: Path = Path("/proc")) -> float | None:
    """Seconds since this process started, from /proc (None where /proc is not Linux's)."""
    try:
        stat = (proc / "self" / "stat").read_text()
        uptime_s = float((proc / "uptime").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    # Field 22 (starttime, clock ticks since boot); split after the ")" closing the command name.
    fields = stat.rsplit(")", 1)[-1].split()
    start_ticks = int(fields[19])
    return max(0.0, uptime_s - start_ticks / os.sysconf("SC_CLK_TCK"))


class Lifecycle:
    """Whether the replica takes traffic: ready once loaded, unready from SIGTERM on."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        age = process_age_s()
        self.started_at = clock() - (age if age is not None else 0.0)
        self.ready_after_s: float | None = None
        self.draining = False

    def ready(self, repository: _Readiness) -> bool:
        return repository.ready and not self.draining

    def mark_ready_if(self, repository: _Readiness, metrics: ServerMetrics) -> None:
        """Record the start-up time the first time the repository is ready."""
        ready = self.ready(repository)
        metrics.set_ready(ready)
        if ready and self.ready_after_s is None:
            self.ready_after_s = self._clock() - self.started_at
            metrics.set_startup(self.ready_after_s)
            log.info("ready", extra={"fields": {"startup_s": round(self.ready_after_s, 3)}})

    def start_draining(self, metrics: ServerMetrics) -> None:
        self.draining = True
        metrics.set_ready(False)
        log.info("draining: readiness is now false")
