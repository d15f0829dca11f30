"""``prescale backtest`` end to end on small synthetic traces, and causality of predictive."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from fc_series import seasonal_series

from forecaster.backtest.cli import main
from forecaster.backtest.predictive import Predictive, PredictiveConfig
from forecaster.backtest.replay import ReplayConfig
from forecaster.backtest.run import run_policy
from forecaster.decider import ScalingPolicy


def _write_trace(path: Path, counts: np.ndarray, bucket_s: int) -> Path:
    lines = ["timestamp_s,requests"] + [f"{i * bucket_s},{int(c)}" for i, c in enumerate(counts)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.fixture
def trace(tmp_path: Path, rng: np.random.Generator) -> Path:
    return _write_trace(tmp_path / "t.csv", seasonal_series(rng, 120, 60, level=300.0), 60)


def test_table_json_decisions_and_plot(
    trace: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out_json, out_csv, out_png = tmp_path / "r.json", tmp_path / "d.csv", tmp_path / "p.png"
    rc = main(
        [
            str(trace),
            "--json",
            str(out_json),
            "--decisions",
            str(out_csv),
            "--plot",
            str(out_png),
            "--no-progress",
            "--peak-replicas",
            "20",
        ]
    )
    assert rc == 0
    table = capsys.readouterr().out
    for name in ("oracle", "hpa", "kpa", "predictive"):
        assert name in table
    doc = json.loads(out_json.read_text())
    assert set(doc["policies"]) == {"oracle", "hpa", "kpa", "predictive"}
    for figures in doc["policies"].values():
        assert set(figures) == {"under_provisioned_share", "gpu_hours", "violation_minutes", "scale_actions"}
    assert doc["parameters"]["scored_from_s"] == 1800.0  # a quarter of two hours
    assert doc["parameters"]["capacity_per_replica"] == pytest.approx(
        max(int(c) for c in _counts(trace)) / 60 / 20
    )
    assert doc["policies"]["oracle"]["under_provisioned_share"] == 0.0
    coverage = doc["predictive_coverage"]
    assert 0.0 <= coverage["measured"] <= 1.0
    assert 0 < coverage["steps"] <= 480 - 120
    assert "of steps (nominal 99.5%" in table
    with out_csv.open() as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["policy", "t", "demand_rps", "requested", "ready"]
    assert len(rows) == 4 * 480
    assert out_png.read_bytes()[:4] == b"\x89PNG"


def test_the_control_step_sets_how_often_every_policy_decides(trace: Path, tmp_path: Path) -> None:
    # A live run in compressed time decides once per compression x interval of trace time;
    # --step-s replays at that cadence. Every policy gets one decision per step.
    out_json, out_csv = tmp_path / "r.json", tmp_path / "d.csv"
    args = [str(trace), "--no-progress", "--peak-replicas", "20", "--policies", "hpa,predictive"]
    assert main([*args, "--step-s", "60", "--json", str(out_json), "--decisions", str(out_csv)]) == 0
    doc = json.loads(out_json.read_text())
    assert doc["parameters"]["step_s"] == 60.0
    assert doc["parameters"]["steps"] == 120
    with out_csv.open() as f:
        times = [float(r["t"]) for r in csv.DictReader(f) if r["policy"] == "hpa"]
    assert times == [60.0 * i for i in range(120)]


def _counts(trace: Path) -> list[str]:
    return [line.split(",")[1] for line in trace.read_text().splitlines()[1:]]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("timestamp_s,requests\n0,1\n0,2\n", "row 3: duplicated timestamp_s=0"),
        ("timestamp_s,count\n0,1\n60,2\n", "missing column 'requests'"),
        ("timestamp_s,requests\n0,0\n60,0\n", "all zeros"),
    ],
)
def test_bad_traces_exit_2_with_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str, message: str
) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(content)
    assert main([str(path), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err
    assert len(err.splitlines()) == 1
    assert "Traceback" not in err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--hpa-target-utilization", "1.5"], "--hpa-target-utilization=1.5 must be in (0, 1]"),
        (["--policies", "hpa,magic"], "--policies: unknown 'magic'"),
        (["--node-lead-s", "60"], "--node-lead-s needs --gpus-per-node"),
        (["--score-from-s", "99999"], "--score-from-s=99999 is outside the trace"),
        (["--seasonality", "weekly"], "--seasonality: seasonality 'weekly' needs 2 cycles"),
        (["--seasonality", "yearly"], "--seasonality: unknown seasonality 'yearly'"),
        (["--step-s", "0"], "--step-s=0 must be > 0"),
        (["--step-s", "nan"], "--step-s=nan must be > 0"),
        (["--step-s", "5000"], "--step-s=5000 is too long for t.csv (7200 s): at most 3600 s (2 steps)"),
    ],
)
def test_bad_options_exit_2(
    trace: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    assert main([str(trace), "--no-progress", *args]) == 2
    assert message in capsys.readouterr().err


def test_missing_file_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([str(tmp_path / "nope.csv")]) == 2
    assert "cannot read" in capsys.readouterr().err


def test_help_works(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["--help"])
    assert info.value.code == 0
    assert "--peak-replicas" in capsys.readouterr().out


def test_predictive_decisions_are_causal(rng: np.random.Generator) -> None:
    """Changing demand after step m must not change any decision before m."""
    lam = seasonal_series(rng, 600, 80, level=50.0) / 15.0
    future = lam.copy()
    m = 400
    future[m:] *= 3.0
    runs = []
    for series in (lam, future):
        policy = Predictive(
            series,
            15.0,
            60.0,
            ScalingPolicy(capacity_per_replica_rps=1.0),
            PredictiveConfig(model_step_s=15.0, refit_every_s=600.0),
        )
        runs.append(run_policy(policy, series, ReplayConfig(step_s=15.0, pod_lead_s=60.0)))
    assert np.array_equal(runs[0].requested[:m], runs[1].requested[:m])
    assert not np.array_equal(runs[0].requested[m:], runs[1].requested[m:])
