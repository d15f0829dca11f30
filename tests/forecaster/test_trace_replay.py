"""Trace validation (one-line errors naming the row), demand per step, the replay model."""

from __future__ import annotations

import numpy as np
import pytest

from forecaster.backtest.policies import Oracle
from forecaster.backtest.replay import Cluster, ReplayConfig
from forecaster.backtest.run import run_policy, score, step_coverage
from forecaster.backtest.trace import Trace, TraceError, demand_per_step, parse_rows


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        (["time,requests", "0,1"], "row 1: missing column 'timestamp_s'"),
        (["timestamp_s,requests", "0,1", "60,-3"], "row 3: requests=-3 is negative"),
        (["timestamp_s,requests", "0,1", "0,2"], "row 3: duplicated timestamp_s=0"),
        (["timestamp_s,requests", "60,1", "0,2"], "row 3: timestamp_s=0 is before the previous row"),
        (["timestamp_s,requests", "0,1", "60,abc"], "row 3: requests='abc' is not a number"),
        (["timestamp_s,requests", "0,1", "60,nan"], "row 3: requests='nan' must be a finite number"),
        (["timestamp_s,requests", "0,1"], "1 data rows; at least 2"),
    ],
)
def test_malformed_traces_get_one_line_errors(lines: list[str], message: str) -> None:
    with pytest.raises(TraceError, match=message) as info:
        parse_rows(lines)
    assert "\n" not in str(info.value)


def test_other_column_can_be_chosen() -> None:
    tr = parse_rows(["timestamp_s,requests,rate", "0,1,5", "60,2,7"], column="rate")
    assert list(tr.requests) == [5.0, 7.0]
    assert tr.bucket_s == 60.0
    with pytest.raises(TraceError, match="missing column 'tokens'"):
        parse_rows(["timestamp_s,requests", "0,1", "1,2"], column="tokens")


def test_long_buckets_are_held_and_short_ones_give_their_peak() -> None:
    minute = Trace(np.array([0.0, 60.0]), np.array([60.0, 120.0]), 60.0, "requests", "m")
    assert list(demand_per_step(minute, 15.0)) == [1.0] * 4 + [2.0] * 4
    seconds = Trace(np.arange(30.0), np.array([0.0] * 14 + [9.0] + [1.0] * 15), 1.0, "requests", "s")
    assert list(demand_per_step(seconds, 15.0)) == [9.0, 1.0]


def test_scale_up_takes_the_lead_time_and_scale_down_cancels_starting_first() -> None:
    c = Cluster.warm(ReplayConfig(step_s=15.0, pod_lead_s=30.0), 2)
    c.step(0, 5)
    assert (c.requested, c.ready) == (5, 2)
    c.step(1, 4)  # cancels one starting pod, ready untouched
    assert (c.requested, c.ready) == (4, 2)
    c.step(2, 4)
    assert c.ready == 4
    assert c.promoted == [(0, 2)]
    c.step(3, 1)  # immediate
    assert (c.requested, c.ready) == (1, 1)


def test_node_pool_delays_pods_and_counts_node_gpus() -> None:
    cfg = ReplayConfig(step_s=15.0, pod_lead_s=15.0, gpus_per_replica=1, node_lead_s=30.0, gpus_per_node=4)
    c = Cluster.warm(cfg, 4)
    assert (c.nodes, c.gpus_held()) == (1, 4)
    c.step(0, 5)  # needs a second node: 30 s, then the pod's 15 s
    assert (c.nodes, c.gpus_held(), c.unscheduled) == (2, 8, 1)
    for i in (1, 2):
        c.step(i, 5)
        assert c.ready == 4
    c.step(3, 5)
    assert c.ready == 5
    c.step(4, 3)
    assert (c.ready, c.nodes) == (3, 1)


def test_oracle_never_under_provisions(rng: np.random.Generator) -> None:
    lam = rng.gamma(2.0, 20.0, 400)
    cfg = ReplayConfig(step_s=15.0, pod_lead_s=45.0)
    run = run_policy(Oracle(lam, 10.0, 3), lam, cfg)
    s = score(run, lam, 10.0, 15.0, 0)
    assert s.under_provisioned_share == 0.0
    assert s.violation_minutes == 0.0
    assert s.gpu_hours == pytest.approx(run.requested.sum() * 15 / 3600)


def test_step_coverage_uses_the_lowest_band_of_the_windows_holding_each_step() -> None:
    lam = np.array([5.0, 5.0, 5.0, 9.0, 5.0, 5.0])
    planned = np.array([np.nan, 10.0, 10.0, 8.0, 10.0, 10.0])
    # lead 1: step s is held by the windows opened at s - 1 and s.
    cov, steps = step_coverage(planned, lam, lead_steps=1, from_step=1)
    assert steps == 5
    assert cov == pytest.approx(4 / 5)  # step 3 (demand 9) got 8
    cov, _ = step_coverage(planned, lam, lead_steps=1, from_step=4)
    assert cov == pytest.approx(1.0)  # step 4 is held by the 8 too, but its demand is 5
