"""Measured node lead time: from asking a node pool for headroom to its new nodes being Ready.

A measurement starts when a reconcile asks the pool for more nodes than the one before; the
pool's nodes are listed then. It closes when the headroom is in place and every new node is
Ready: for ``placeholder-pods`` when every placeholder pod is bound to a node, for the other
backends when as many new nodes are Ready as were asked for. A node is new when it was not
in that list (by uid): creation timestamps are whole seconds, so time cannot tell a node made
just before the request from one made for it. The delay is the last new node's ``Ready``
transition (the apiserver's clock) minus the request. No new node (the pool had room) gives
no sample; neither does a request that is never met within :data:`GIVE_UP_S` (nothing is
learned from a pool that cannot grow).

The pool's nodes are found by ``nodePool.nodeSelector``; a Karpenter NodePool's nodes carry
``karpenter.sh/nodepool=<name>`` when no selector is given. Without either nothing is measured
and the spec's ``nodeLeadTimeSeconds`` is planned for.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Final

from forecaster.actuators.nodepool import placeholder_name
from forecaster.controller.leadtime import ready_since
from forecaster.controller.spec import NodePoolSpec
from forecaster.estimation import LeadTimeEstimator
from forecaster.kube import JsonObj, KubeApi, KubeError

log = logging.getLogger(__name__)

GIVE_UP_S: Final = 3600.0
"""A request not met within this long is dropped without a sample."""
PATIENCE: Final = 2.0
"""A withdrawn request waits this many planned node lead times for a node already coming."""


@dataclass(frozen=True)
class NodeScaleUp:
    """Headroom the controller asked a pool for."""

    requested_at_s: float
    nodes: int
    """Extra nodes asked for beyond the previous request."""
    known: frozenset[str]
    """The pool's nodes (uid, else name) when the request was made; they are not new."""


def node_key(obj: JsonObj) -> str:
    meta = obj.get("metadata") or {}
    return str(meta.get("uid") or meta.get("name") or "")


def pool_selector(pool: NodePoolSpec) -> str:
    """Label selector of the pool's nodes; empty when unknown."""
    if pool.node_selector:
        return ",".join(f"{k}={v}" for k, v in sorted(pool.node_selector.items()))
    if pool.backend == "karpenter-nodepool" and pool.name:
        return f"karpenter.sh/nodepool={pool.name}"
    return ""


def new_nodes(nodes: list[JsonObj], up: NodeScaleUp) -> list[JsonObj]:
    """Nodes that were not in the pool when the request was made."""
    return [n for n in nodes if node_key(n) not in up.known]


def node_delay(new: list[JsonObj], up: NodeScaleUp) -> float | None:
    """Seconds from the request to the last of the ``new`` nodes Ready; None without any."""
    times = [t for t in (ready_since(n) for n in new) if t is not None]
    return max(0.0, max(times) - up.requested_at_s) if times else None


async def _pool_nodes(kube: KubeApi, pool: NodePoolSpec) -> list[JsonObj]:
    doc = await kube.get("/api/v1/nodes", {"labelSelector": pool_selector(pool)})
    return list(doc.get("items") or [])


async def _placeholders_bound(kube: KubeApi, namespace: str, owner: str, pool: NodePoolSpec) -> bool:
    pods = await kube.get(
        f"/api/v1/namespaces/{namespace}/pods",
        {"labelSelector": f"app.kubernetes.io/name={placeholder_name(owner, pool)}"},
    )
    live = [p for p in pods.get("items") or [] if not (p.get("metadata") or {}).get("deletionTimestamp")]
    return all((p.get("spec") or {}).get("nodeName") for p in live)


async def check(
    kube: KubeApi,
    namespace: str,
    owner: str,
    pool: NodePoolSpec,
    up: NodeScaleUp,
    *,
    asked_nodes: int,
    now_s: float,
    patience_s: float,
) -> tuple[bool, float | None]:
    """``(closed, delay)`` of a pending measurement; ``asked_nodes``: the pool's current ask.

    An ask withdrawn before any new node appeared stays open for ``patience_s`` after the
    request: the pool's autoscaler may already be bringing a node up for it, and that node's
    delay is still the answer to the request. Raises :class:`forecaster.kube.KubeError` when
    nodes or pods cannot be read."""
    if now_s - up.requested_at_s > GIVE_UP_S:
        return True, None
    fresh = new_nodes(await _pool_nodes(kube, pool), up)
    if asked_nodes == 0 and not fresh:
        return now_s - up.requested_at_s > patience_s, None
    ready = [n for n in fresh if ready_since(n) is not None]
    if len(ready) < len(fresh):
        return False, None  # a new node is still coming up
    if pool.backend == "placeholder-pods":
        met = await _placeholders_bound(kube, namespace, owner, pool)
    else:
        met = len(ready) >= up.nodes or asked_nodes == 0
    if not met:
        return False, None
    return True, node_delay(fresh, up)


@dataclass
class NodeLead:
    """One pool's measurements and the lead time to plan for."""

    estimator: LeadTimeEstimator
    pending: NodeScaleUp | None = None
    asked_nodes: int = 0
    """Extra nodes asked for at the last reconcile."""
    samples: int = 0

    def estimate_s(self) -> float:
        return self.estimator.estimate_s()

    async def follow(
        self,
        kube: KubeApi,
        namespace: str,
        owner: str,
        pool: NodePoolSpec,
        asked_nodes: int,
        *,
        now_s: float,
        measure: bool,
    ) -> None:
        """Close the pending measurement when it is met; start one when the ask grew."""
        up = self.pending
        if up is not None:
            try:
                closed, delay = await check(
                    kube,
                    namespace,
                    owner,
                    pool,
                    up,
                    asked_nodes=asked_nodes,
                    now_s=now_s,
                    patience_s=PATIENCE * self.estimate_s(),
                )
            except KubeError as e:
                log.warning(
                    "node lead time not measured",
                    extra={"fields": {"pa": f"{namespace}/{owner}", "error": str(e)}},
                )
                closed, delay = False, None
            if closed:
                self.pending = None
                if delay is not None:
                    self.estimator.observe(up.requested_at_s, up.requested_at_s + delay)
                    self.samples += 1
                    log.info(
                        "node lead time measured",
                        extra={
                            "fields": {
                                "pa": f"{namespace}/{owner}",
                                "seconds": round(delay, 1),
                                "planned_s": round(self.estimate_s(), 1),
                            }
                        },
                    )
        if measure and self.pending is None and asked_nodes > self.asked_nodes and pool_selector(pool):
            try:
                nodes = await _pool_nodes(kube, pool)
            except KubeError as e:
                log.warning(
                    "node lead time not measured",
                    extra={"fields": {"pa": f"{namespace}/{owner}", "error": str(e)}},
                )
            else:
                known = frozenset(node_key(n) for n in nodes)
                self.pending = NodeScaleUp(now_s, asked_nodes - self.asked_nodes, known)
        self.asked_nodes = asked_nodes
