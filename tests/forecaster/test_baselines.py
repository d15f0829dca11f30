"""The upstream HPA and Knative KPA algorithms, case by case."""

from __future__ import annotations

import numpy as np
import pytest

from forecaster.backtest.hpa import HPA, HPAConfig, pods_metric_proposal
from forecaster.backtest.kpa import KPA, KPAConfig
from forecaster.backtest.replay import Cluster, ReplayConfig


@pytest.mark.parametrize(
    ("total", "ready", "unready", "cur", "expected"),
    [
        (100.0, 10, 0, 10, 10),  # ratio 1.0: within tolerance
        (105.0, 10, 0, 10, 10),  # 1.05: within 0.1
        (150.0, 10, 0, 10, 15),  # ceil(1.5 * 10)
        (50.0, 10, 2, 12, 5),  # ratio < 1 with unready pods: ceil(r * ready)
        (150.0, 10, 5, 15, 15),  # unready count as 0: 150/15 = 1.0 -> within tolerance -> cur
        (300.0, 10, 5, 15, 30),  # unready count as 0: 300/15/10 = 2.0 -> ceil(2.0 * 15)
        (0.0, 0, 3, 3, None),  # no pod has a metric: the cycle aborts
    ],
)
def test_pods_metric_proposal(total: float, ready: int, unready: int, cur: int, expected: int | None) -> None:
    assert pods_metric_proposal(total, ready, unready, cur, target=10.0, tol=0.1) == expected


def _hpa(lam: list[float]) -> HPA:
    return HPA(
        np.array(lam), capacity=10.0, step_s=15.0, config=HPAConfig(target_utilization=1.0, metric_delay_s=0)
    )


def test_hpa_scale_up_is_limited_to_4_pods_or_100_percent() -> None:
    hpa = _hpa([1000.0] * 3)
    c = Cluster.warm(ReplayConfig(pod_lead_s=0.0), 1)
    assert hpa.decide(1, c) == 5  # max(1 + 4, 2 * 1)
    c.step(1, 5)
    assert hpa.decide(2, c) == 10  # max(5 + 4, 2 * 5)


def test_hpa_holds_scale_down_for_the_stabilization_window() -> None:
    lam = [100.0] * 2 + [20.0] * 30
    hpa = _hpa(lam)
    c = Cluster.warm(ReplayConfig(pod_lead_s=0.0), 10)
    replicas = []
    for i in range(1, 32):
        n = hpa.decide(i, c)
        c.step(i, n)
        replicas.append(n)
    # The 10-replica recommendation at t=15 s stays in the 300 s window until t=315 s (step 21).
    assert replicas[:20] == [10] * 20
    assert replicas[-1] == 2


def test_kpa_panics_and_does_not_scale_down_while_panicking() -> None:
    lam = np.array([10.0] * 8 + [100.0] + [10.0] * 3)
    kpa = KPA(lam, capacity=10.0, step_s=15.0, config=KPAConfig(target_utilization=1.0))
    c = Cluster.warm(ReplayConfig(pod_lead_s=0.0), 1)
    out = []
    for i in range(1, 12):
        n = kpa.decide(i, c)
        c.step(i, n)
        out.append(n)
    assert out[7] == 1
    assert out[8] == 10  # the burst, seen at step 9: panic (dppc 10 / 1 ready >= 2)
    assert out[9:] == [10, 10]  # still panicking: never below the panic maximum


def test_kpa_scale_down_rate_halves_at_most() -> None:
    lam = np.array([100.0] * 5 + [0.0] * 20)
    kpa = KPA(lam, capacity=10.0, step_s=15.0, config=KPAConfig(target_utilization=1.0))
    c = Cluster.warm(ReplayConfig(pod_lead_s=0.0), 10)
    seen = []
    for i in range(5, 25):
        n = kpa.decide(i, c)
        c.step(i, n)
        seen.append(n)
    assert all(b >= a // 2 for a, b in zip([10, *seen], seen, strict=False))
    assert seen[-1] == 1
