"""The in-process demo: window cutting, a short run end to end through the CLI, bad options."""

from __future__ import annotations

import html
import math
from pathlib import Path

import numpy as np
import pytest

from forecaster.backtest.trace import parse_rows
from prescale.demo import cli, offline


def synthetic_trace(path: Path, days: int, bucket_s: int = 300) -> Path:
    """Daily-seasonal demand with noise, ``days`` long."""
    rng = np.random.default_rng(7)
    lines = ["timestamp_s,requests"]
    for i in range(days * 86400 // bucket_s):
        t = i * bucket_s
        rate = 20 + 15 * math.sin(2 * math.pi * t / 86400)
        lines.append(f"{t},{max(0, rng.poisson(rate * bucket_s))}")
    path.write_text("\n".join(lines) + "\n")
    return path


def test_cut_window_keeps_history_then_the_day(tmp_path: Path) -> None:
    trace = parse_rows(synthetic_trace(tmp_path / "t.csv", 4).read_text().splitlines())
    w = offline.cut_window(trace, day=3, history_days=2)
    assert w.score_from_s == 2 * 86400
    assert w.day_s == 86400
    assert w.trace.timestamps_s[0] == 0
    assert w.trace.span_s == pytest.approx(3 * 86400)


@pytest.mark.parametrize(("day", "history"), [(1, 2.0), (4, 1.0), (-1, 0.0)])
def test_cut_window_rejects_what_does_not_fit(tmp_path: Path, day: int, history: float) -> None:
    trace = parse_rows(synthetic_trace(tmp_path / "t.csv", 4).read_text().splitlines())
    with pytest.raises(offline.DemoError):
        offline.cut_window(trace, day=day, history_days=history)


def test_no_cluster_demo_prints_the_comparison_and_writes_a_report(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    trace = synthetic_trace(tmp_path / "t.csv", 4)
    out = tmp_path / "out"
    rc = cli.main(["--no-cluster", "--trace", str(trace), "--day", "3", "--history-days", "2",
                   "--peak-replicas", "10", "--out", str(out)])
    assert rc == 0
    text = capsys.readouterr().out
    lines = {line.split()[0]: line.split() for line in text.splitlines() if line.strip()}
    assert {"oracle", "hpa", "predictive"} <= lines.keys()
    # The oracle never under-provisions and is the cheapest that does not.
    assert lines["oracle"][1] == "0.00%"
    page = (out / "report.html").read_text()
    assert "data:image/png;base64," in page
    assert "predictive" in page


def test_no_cluster_frontier_sweeps_both_knobs_on_the_same_day(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    trace = synthetic_trace(tmp_path / "t.csv", 4)
    out = tmp_path / "out"
    rc = cli.main(["--no-cluster", "--trace", str(trace), "--day", "3", "--history-days", "2",
                   "--peak-replicas", "10", "--step-s", "300", "--frontier", "--out", str(out)])
    assert rc == 0
    captured = capsys.readouterr()
    assert "frontier 10/10: predictive at miss cost 200" in captured.err
    rows = [line.split() for line in captured.out.splitlines() if line.startswith(("hpa ", "predictive "))]
    assert [r[2] for r in rows if r[0] == "hpa" and r[1] == "target"] == ["0.5", "0.6", "0.7", "0.8", "0.9"]
    summary = next(line for line in captured.out.splitlines() if line.startswith("frontier (replay"))
    assert "a decision every 300 s" in summary
    page = (out / "report.html").read_text()
    assert page.count("data:image/png;base64,") == 2
    assert "Frontier: under-provisioning against GPU-hours" in page
    assert html.escape(summary) in page


def test_bad_trace_is_one_line_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("timestamp_s,requests\n0,1\n60,-3\n")
    assert cli.main(["--no-cluster", "--trace", str(bad)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert "row 3" in err[0]
    assert "negative" in err[0]


def test_the_replay_decides_once_per_step(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # A cluster demo in compressed time decides once per compression x interval of trace
    # time; --step-s replays at such a cadence. Fewer decisions, fewer scale actions.
    trace = synthetic_trace(tmp_path / "t.csv", 4)
    actions = {}
    for step in ("15", "600"):
        rc = cli.main(["--no-cluster", "--trace", str(trace), "--day", "3", "--history-days", "2",
                       "--peak-replicas", "10", "--out", str(tmp_path / step), "--step-s", step])
        assert rc == 0
        captured = capsys.readouterr()
        assert f"a decision every {step} s" in captured.err
        hpa = next(line.split() for line in captured.out.splitlines() if line.startswith("hpa "))
        actions[step] = int(hpa[-1])
        assert "step_s" in (tmp_path / step / "report.html").read_text()
    assert 0 < actions["600"] < actions["15"]


@pytest.mark.parametrize("step", ["0", "-5", "nan", "inf"])
def test_a_bad_step_is_one_line_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str], step: str) -> None:
    trace = synthetic_trace(tmp_path / "t.csv", 4)
    assert cli.main(["--no-cluster", "--trace", str(trace), "--day", "3", "--history-days", "2",
                     "--out", str(tmp_path / "out"), "--step-s", step]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert "--step-s > 0" in err[0]
    assert not (tmp_path / "out").exists()


def test_a_day_too_short_for_the_cluster_to_decide_in_is_refused_before_anything_starts(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # The cluster decides once per wall second; 0.1 minutes is 6 decisions for the whole day,
    # and its replay at that cadence could not even be scored. Refused up front, not after the run.
    trace = synthetic_trace(tmp_path / "t.csv", 4)
    out = tmp_path / "out"
    assert cli.main(["--trace", str(trace), "--day", "3", "--history-days", "2", "--day-minutes", "0.1",
                     "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["prescale demo: --day-minutes=0.1 leaves 6.0 decisions (one per 1 s of wall time) for the "
                   "replayed day; use --day-minutes >= 0.17"]
    assert not out.exists()
