"""Scores of a live demo run, with the replay model's definitions (docs/design.md):
under-provisioned share = sum(max(0, demand - ready * capacity)) / sum(demand), and GPU-hours
= GPUs held by existing (starting or ready) replicas x time, both in trace time."""

from __future__ import annotations

import csv
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class Sample:
    """One observation of one deployment at trace time ``sim_s``."""

    sim_s: float
    demand_rps: float
    ready: int
    held: int
    """Pods that exist and hold a GPU (starting or ready)."""
    desired: int
    """The replicas the deployment's spec asks for."""


@dataclass(frozen=True)
class Score:
    under_provisioned_share: float
    gpu_hours: float
    violation_minutes: float
    scale_actions: int


@dataclass
class Track:
    """Samples of one deployment in time order."""

    name: str
    samples: list[Sample] = field(default_factory=list)

    def add(self, sample: Sample) -> None:
        if self.samples and sample.sim_s < self.samples[-1].sim_s:
            raise ValueError(f"{self.name}: samples must be in time order")
        self.samples.append(sample)

    def score(self, capacity_rps: float, gpus_per_replica: int, from_sim_s: float = 0.0) -> Score:
        """Integrate over the intervals between samples (each holds its left sample's state)."""
        short = total = gpu_s = violation_s = 0.0
        actions = 0
        prev_desired: int | None = None
        pairs = zip(self.samples, self.samples[1:], strict=False)
        for a, b in pairs:
            if a.sim_s < from_sim_s:
                continue
            dt = b.sim_s - a.sim_s
            missing = max(0.0, a.demand_rps - a.ready * capacity_rps)
            short += missing * dt
            total += a.demand_rps * dt
            gpu_s += a.held * gpus_per_replica * dt
            violation_s += dt if missing > 1e-9 else 0.0
            if prev_desired is not None and a.desired != prev_desired:
                actions += 1
            prev_desired = a.desired
        return Score(
            under_provisioned_share=short / total if total > 0 else 0.0,
            gpu_hours=gpu_s / 3600.0,
            violation_minutes=violation_s / 60.0,
            scale_actions=actions,
        )


def write_samples(path: Path, tracks: Iterable[Track]) -> None:
    """Every sample of every track as CSV (``deployment,trace_s,demand_rps,ready,held,desired``)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["deployment", "trace_s", "demand_rps", "ready", "held", "desired"])
        for t in tracks:
            w.writerows([t.name, f"{s.sim_s:.1f}", f"{s.demand_rps:.4f}", s.ready, s.held, s.desired]
                        for s in t.samples)
