"""The cost frontier: interpolation at equal GPU-hours, the sweep, and ``--frontier``."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from fc_series import seasonal_series

from forecaster.backtest.cli import main
from forecaster.backtest.engine import BacktestError, BacktestParams, run_backtest
from forecaster.backtest.frontier import Frontier, FrontierPoint, settings, sweep
from forecaster.backtest.trace import load_trace


def _hpa(target: float, under: float, gpu: float) -> FrontierPoint:
    return FrontierPoint("hpa", target, under, gpu)


FRONT = Frontier(
    15.0,
    900.0,
    hpa=(_hpa(0.5, 0.0, 40.0), _hpa(0.7, 0.01, 30.0), _hpa(0.9, 0.05, 20.0)),
    predictive=(
        FrontierPoint("predictive", 10.0, 0.02, 22.5),
        FrontierPoint("predictive", 50.0, 0.004, 35.0),
        FrontierPoint("predictive", 200.0, 0.0, 45.0),
    ),
)


def test_the_hpa_is_interpolated_between_the_settings_that_bracket_the_gpu_hours() -> None:
    # 22.5 GPU-h lies a quarter of the way from 20 (5 %) to 30 (1 %).
    assert FRONT.hpa_under_at(22.5) == pytest.approx(0.04)
    assert FRONT.hpa_under_at(35.0) == pytest.approx(0.005)
    assert FRONT.hpa_under_at(20.0) == pytest.approx(0.05)
    assert FRONT.hpa_under_at(19.9) is None  # no extrapolation below the cheapest setting
    assert FRONT.hpa_under_at(45.0) is None


def test_the_summary_counts_only_points_inside_the_hpas_range() -> None:
    line = FRONT.summary()
    assert "at 2 of 2 miss costs" in line
    assert "miss cost 10: 2.00% vs 4.00%" in line
    assert "miss cost 200" not in line
    assert "outside its range" in FRONT.table()
    far = Frontier(15.0, 900.0, FRONT.hpa, (FrontierPoint("predictive", 500.0, 0.0, 60.0),))
    assert "no miss cost puts prescale inside the HPA's GPU-hour range (20.0 to 40.0)" in far.summary()
    doc = FRONT.document()
    assert [p["hpa_under_provisioned_share_at_same_gpu_hours"] for p in doc["predictive"]] == [
        pytest.approx(0.04),
        pytest.approx(0.005),
        None,
    ]


@pytest.mark.parametrize(
    ("targets", "costs", "message"),
    [
        ((0.7,), (10.0, 50.0), "--frontier-targets: the frontier needs at least 2 different settings"),
        ((0.7, 0.7), (10.0, 50.0), "at least 2 different settings, got 1"),
        ((0.5, 1.5), (10.0, 50.0), "--frontier-targets: 1.5 is not allowed; every setting must be in (0, 1]"),
        ((0.5, 0.7), (0.0, 50.0), "--frontier-costs: 0 is not allowed; every setting must be > 0"),
        ((0.5, 0.7), (float("nan"), 50.0), "--frontier-costs: nan is not allowed"),
    ],
)
def test_bad_settings_are_refused_with_the_option_named(
    targets: tuple[float, ...], costs: tuple[float, ...], message: str
) -> None:
    with pytest.raises(BacktestError, match=message.replace("(", r"\(").replace(")", r"\)")):
        settings(targets, costs)


@pytest.fixture
def trace_path(tmp_path: Path, rng: np.random.Generator) -> Path:
    counts = seasonal_series(rng, 120, 60, level=300.0)
    lines = ["timestamp_s,requests"] + [f"{i * 60},{int(c)}" for i, c in enumerate(counts)]
    path = tmp_path / "t.csv"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_each_frontier_point_is_the_run_it_names(trace_path: Path) -> None:
    trace = load_trace(trace_path)
    params = BacktestParams(peak_replicas=20)
    front = sweep(trace, params, targets=(0.5, 0.9), costs=(5.0, 200.0))
    assert [p.knob for p in front.hpa] == [0.5, 0.9]
    assert [p.knob for p in front.predictive] == [5.0, 200.0]
    direct = run_backtest(trace, BacktestParams(peak_replicas=20, miss_cost_ratio=200.0)).scores
    assert front.predictive[1].gpu_hours == pytest.approx(direct["predictive"].gpu_hours)
    assert front.predictive[1].under_provisioned_share == pytest.approx(
        direct["predictive"].under_provisioned_share
    )
    # The HPA's knob moves it along its curve: a lower target buys capacity.
    assert front.hpa[0].gpu_hours > front.hpa[1].gpu_hours
    assert front.scored_from_s == 1800.0  # every run scores the same window


def test_cli_frontier_table_and_json(
    trace_path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "r.json"
    rc = main(
        [
            str(trace_path),
            "--no-progress",
            "--peak-replicas",
            "20",
            "--policies",
            "hpa",
            "--frontier-targets",  # implies --frontier
            "0.6,0.8",
            "--frontier-costs",
            "10,50",
            "--json",
            str(out),
        ]
    )
    assert rc == 0
    text = capsys.readouterr().out
    assert "miss cost 10" in text
    assert "target 0.8" in text
    assert "frontier (replay, a decision every 15 s)" in text
    doc = json.loads(out.read_text())["frontier"]
    assert [p["target_utilization"] for p in doc["hpa"]] == [0.6, 0.8]
    assert [p["miss_cost_ratio"] for p in doc["predictive"]] == [10.0, 50.0]


@pytest.mark.parametrize(
    ("flag", "value", "message"),
    [
        ("--frontier-costs", "10,x", "--frontier-costs: 'x' is not a number"),
        ("--frontier-targets", "0.5", "--frontier-targets: the frontier needs at least 2"),
    ],
)
def test_cli_bad_frontier_settings_exit_2_before_replaying(
    trace_path: Path, capsys: pytest.CaptureFixture[str], flag: str, value: str, message: str
) -> None:
    out = trace_path.with_name("r.json")
    rc = main([str(trace_path), "--frontier", flag, value, "--json", str(out)])
    captured = capsys.readouterr()
    assert rc == 2
    assert captured.err.startswith(f"prescale backtest: {message}")
    assert "%" not in captured.err  # no replay progress: refused before any work
    assert captured.out == ""
    assert not out.exists()
