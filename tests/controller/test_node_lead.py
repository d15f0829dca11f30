"""Measured node lead time on the in-memory API: request to new nodes Ready, per backend."""

from __future__ import annotations

from typing import Any

import pytest
from controller_fakes import FakeKube

from forecaster.controller.nodelead import NodeLead, NodeScaleUp, pool_selector
from forecaster.controller.spec import NodePoolSpec
from forecaster.controller.status import rfc3339
from forecaster.estimation import LeadTimeEstimator
from forecaster.kube import Retryable

T0 = 1_700_000_000.0
POOL = NodePoolSpec("placeholder-pods", 8, 4, node_lead_time_s=300, node_selector={"pool": "gpu"})


def node(
    kube: FakeKube, name: str, created: float, ready: float | None, labels: dict[str, str] | None = None
) -> None:
    conds = (
        [] if ready is None else [{"type": "Ready", "status": "True", "lastTransitionTime": rfc3339(ready)}]
    )
    kube.put(
        f"/api/v1/nodes/{name}",
        {
            "metadata": {
                "name": name,
                "labels": labels or {"pool": "gpu"},
                "creationTimestamp": rfc3339(created),
            },
            "status": {"conditions": conds},
        },
    )


def placeholder(kube: FakeKube, name: str, node_name: str | None) -> None:
    kube.put(
        f"/api/v1/namespaces/a/pods/{name}",
        {
            "metadata": {"name": name, "labels": {"app.kubernetes.io/name": "p-headroom"}},
            "spec": {"nodeName": node_name} if node_name else {},
        },
    )


def pending(nl: NodeLead) -> NodeScaleUp | None:
    """What is pending (a call, so that asserts do not narrow the attribute for the type checker)."""
    return nl.pending


def lead() -> NodeLead:
    return NodeLead(LeadTimeEstimator(prior_s=300))


async def test_placeholder_headroom_measures_request_to_the_last_new_node_ready() -> None:
    kube, nl = FakeKube(), lead()
    node(kube, "old", T0 - 3600, T0 - 3600)
    node(kube, "other-pool", T0 + 1, T0 + 2, {"pool": "cpu"})
    await nl.follow(kube, "a", "p", POOL, 2, now_s=T0, measure=True)
    up = pending(nl)
    assert up is not None
    assert up.nodes == 2
    placeholder(kube, "h1", None)
    node(kube, "n1", T0 + 30, None)  # created, not Ready yet
    await nl.follow(kube, "a", "p", POOL, 2, now_s=T0 + 40, measure=True)
    assert pending(nl) is not None, "a new node is not Ready yet"
    node(kube, "n1", T0 + 30, T0 + 45)
    await nl.follow(kube, "a", "p", POOL, 2, now_s=T0 + 50, measure=True)
    assert pending(nl) is not None, "a placeholder is still unbound"
    node(kube, "n2", T0 + 50, T0 + 62)
    placeholder(kube, "h1", "n2")
    await nl.follow(kube, "a", "p", POOL, 2, now_s=T0 + 70, measure=True)
    assert pending(nl) is None
    assert nl.samples == 1
    assert nl.estimate_s() == pytest.approx(62)
    # The same ask again starts nothing; a larger one that fits existing nodes gives no sample.
    await nl.follow(kube, "a", "p", POOL, 2, now_s=T0 + 80, measure=True)
    assert pending(nl) is None
    await nl.follow(kube, "a", "p", POOL, 3, now_s=T0 + 90, measure=True)
    assert pending(nl) is not None
    await nl.follow(kube, "a", "p", POOL, 3, now_s=T0 + 100, measure=True)
    assert pending(nl) is None
    assert nl.samples == 1


async def test_scaled_pools_close_when_the_nodes_asked_for_are_ready() -> None:
    kube, nl = FakeKube(), lead()
    pool = NodePoolSpec("karpenter-nodepool", 8, 1, name="gpu-a")
    assert pool_selector(pool) == "karpenter.sh/nodepool=gpu-a"
    await nl.follow(kube, "a", "p", pool, 2, now_s=T0, measure=True)
    node(kube, "k1", T0 + 20, T0 + 25, {"karpenter.sh/nodepool": "gpu-a"})
    await nl.follow(kube, "a", "p", pool, 2, now_s=T0 + 30, measure=True)
    assert pending(nl) is not None, "one of two nodes is Ready"
    kube.fail = lambda method, path: Retryable("down", 503) if path == "/api/v1/nodes" else None
    await nl.follow(kube, "a", "p", pool, 2, now_s=T0 + 35, measure=True)  # logged, kept
    assert pending(nl) is not None
    kube.fail = lambda method, path: None
    node(kube, "k2", T0 + 21, T0 + 33, {"karpenter.sh/nodepool": "gpu-a"})
    await nl.follow(kube, "a", "p", pool, 2, now_s=T0 + 40, measure=True)
    assert pending(nl) is None
    assert nl.estimate_s() == pytest.approx(33)


async def test_a_node_made_in_the_same_second_before_the_request_is_not_new() -> None:
    # Creation timestamps are whole seconds: a node made 0.4 s before the request looks as
    # new as one made after it. It was in the pool when the request was made, so the
    # placeholder it takes at once gives no sample (a 0 s sample would make the controller
    # plan the pool with no node lead at all).
    kube, nl = FakeKube(), lead()
    node(kube, "n0", T0 - 0.4, T0 - 0.3)
    await nl.follow(kube, "a", "p", POOL, 1, now_s=T0, measure=True)
    assert pending(nl) is not None
    placeholder(kube, "h1", "n0")
    await nl.follow(kube, "a", "p", POOL, 1, now_s=T0 + 2, measure=True)
    assert pending(nl) is None
    assert nl.samples == 0
    assert nl.estimate_s() == 300


async def test_a_node_that_comes_after_the_ask_was_withdrawn_is_still_its_answer() -> None:
    # The forecast asked for a node, then withdrew the ask (the serving pods took the GPUs)
    # before the node appeared; the pool's autoscaler brought it up anyway.
    kube, nl = FakeKube(), lead()
    await nl.follow(kube, "a", "p", POOL, 1, now_s=T0, measure=True)
    await nl.follow(kube, "a", "p", POOL, 0, now_s=T0 + 3, measure=True)
    assert pending(nl) is not None, "withdrawn, but a node may be on its way"
    node(kube, "n1", T0 + 4, T0 + 5)
    await nl.follow(kube, "a", "p", POOL, 0, now_s=T0 + 6, measure=True)
    assert pending(nl) is None
    assert nl.samples == 1
    assert nl.estimate_s() == pytest.approx(5)


async def test_a_withdrawn_ask_gives_up_after_twice_the_planned_node_lead() -> None:
    kube, nl = FakeKube(), lead()
    await nl.follow(kube, "a", "p", POOL, 1, now_s=T0, measure=True)
    await nl.follow(kube, "a", "p", POOL, 0, now_s=T0 + 599, measure=True)
    assert pending(nl) is not None
    await nl.follow(kube, "a", "p", POOL, 0, now_s=T0 + 601, measure=True)
    assert pending(nl) is None, "no node within 2 x 300 s: not attributed to this ask"
    node(kube, "late", T0 + 650, T0 + 700)
    await nl.follow(kube, "a", "p", POOL, 0, now_s=T0 + 710, measure=True)
    assert nl.samples == 0


async def test_no_measurement_starts_when_the_pool_cannot_be_listed() -> None:
    kube, nl = FakeKube(), lead()
    kube.fail = lambda method, path: Retryable("down", 503) if path == "/api/v1/nodes" else None
    await nl.follow(kube, "a", "p", POOL, 1, now_s=T0, measure=True)
    assert pending(nl) is None
    kube.fail = lambda method, path: None
    await nl.follow(kube, "a", "p", POOL, 2, now_s=T0 + 10, measure=True)
    up = pending(nl)
    assert up is not None
    assert up.nodes == 1, "the ask grew by one since the last reconcile"


async def test_nothing_is_measured_without_a_selector_or_when_measuring_is_off() -> None:
    kube = FakeKube()
    unknown: Any = NodePoolSpec("capacity-buffer", 8, 1, name="buf")
    nl = lead()
    await nl.follow(kube, "a", "p", unknown, 2, now_s=T0, measure=True)
    assert pending(nl) is None
    await nl.follow(kube, "a", "p", POOL, 4, now_s=T0, measure=False)
    assert pending(nl) is None
    assert nl.estimate_s() == 300
