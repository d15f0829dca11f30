"""The replay model (docs/design.md): pods that take a lead time to become ready, optional GPU
node pools, and the scoring of one policy's run.

Step ``i`` covers ``[i*step, (i+1)*step)``. At its start, pods and nodes that became ready are
promoted, then the policy's request is applied: scale-up adds starting pods (ready after the
pod lead time), scale-down is immediate and cancels unscheduled, then starting, then ready
pods. The ready count during step ``i`` serves that step's demand.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field


@dataclass(frozen=True)
class ReplayConfig:
    """Parameters of the replay model."""

    step_s: float = 15.0
    """Control step."""
    pod_lead_s: float = 180.0
    """Scale-up request to ready."""
    gpus_per_replica: int = 1
    """GPUs each replica holds (a starting pod holds its GPU)."""
    node_lead_s: float = 0.0
    """Time for a new node to appear (node pools only)."""
    gpus_per_node: int | None = None
    """GPUs per node; None: no node pool modelled, cost counts replica GPUs."""

    def steps(self, seconds: float) -> int:
        return math.ceil(seconds / self.step_s - 1e-9)

    @property
    def total_lead_s(self) -> float:
        """Worst-case request-to-ready time: a new node, then the pod on it."""
        return self.pod_lead_s + (self.node_lead_s if self.gpus_per_node else 0.0)


@dataclass
class Cluster:
    """Pods (and nodes) of one policy's run."""

    config: ReplayConfig
    ready: int = 0
    starting: deque[list[int]] = field(default_factory=deque)  # [ready_step, count, requested_step]
    unscheduled: int = 0
    nodes_ready: int = 0
    nodes_pending: deque[list[int]] = field(default_factory=deque)  # [ready_step, count]
    promoted: list[tuple[int, int]] = field(default_factory=list)  # (requested_step, ready_step) this step

    @classmethod
    def warm(cls, config: ReplayConfig, replicas: int) -> Cluster:
        c = cls(config, ready=replicas)
        if config.gpus_per_node:
            c.nodes_ready = math.ceil(replicas * config.gpus_per_replica / config.gpus_per_node)
        return c

    @property
    def requested(self) -> int:
        return self.ready + self.unscheduled + sum(p[1] for p in self.starting)

    @property
    def nodes(self) -> int:
        return self.nodes_ready + sum(p[1] for p in self.nodes_pending)

    def gpus_held(self) -> int:
        """GPUs paid for now: node GPUs with a node pool, else replica GPUs."""
        if self.config.gpus_per_node:
            return self.nodes * self.config.gpus_per_node
        return self.requested * self.config.gpus_per_replica

    def _promote(self, i: int) -> None:
        self.promoted = []
        while self.starting and self.starting[0][0] <= i:
            ready_step, n, req = self.starting.popleft()
            self.ready += n
            self.promoted.append((req, ready_step))
        while self.nodes_pending and self.nodes_pending[0][0] <= i:
            self.nodes_ready += self.nodes_pending.popleft()[1]

    def _remove(self, n: int) -> None:
        take = min(n, self.unscheduled)
        self.unscheduled -= take
        n -= take
        while n > 0 and self.starting:
            last = self.starting[-1]
            take = min(n, last[1])
            last[1] -= take
            n -= take
            if last[1] == 0:
                self.starting.pop()
        self.ready -= n

    def _schedule(self, i: int) -> None:
        cfg = self.config
        if cfg.gpus_per_node:
            need = math.ceil(self.requested * cfg.gpus_per_replica / cfg.gpus_per_node)
            have = self.nodes
            if need > have:
                self.nodes_pending.append([i + cfg.steps(cfg.node_lead_s), need - have])
            while need < self.nodes and self.nodes_pending:
                last = self.nodes_pending[-1]
                take = min(self.nodes - need, last[1])
                last[1] -= take
                if last[1] == 0:
                    self.nodes_pending.pop()
            self.nodes_ready = min(self.nodes_ready, need)
            room = self.nodes_ready * cfg.gpus_per_node // cfg.gpus_per_replica
            placed = self.requested - self.unscheduled
            start = max(0, min(self.unscheduled, room - placed))
        else:
            start = self.unscheduled
        if start:
            self.unscheduled -= start
            self.starting.append([i + cfg.steps(cfg.pod_lead_s), start, i])
            if cfg.pod_lead_s <= 0:
                self._promote(i)

    def step(self, i: int, requested: int) -> None:
        """Promote what is ready at step ``i``, then apply the policy's request."""
        self._promote(i)
        delta = requested - self.requested
        if delta < 0:
            self._remove(-delta)
        else:
            self.unscheduled += delta
        self._schedule(i)
