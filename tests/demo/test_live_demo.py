"""``prescale demo`` on the local cluster in a short configuration, as a user runs it: a
real subprocess that builds its own network namespace, control plane and programs, and
leaves nothing running when it ends, also after Ctrl-C."""

from __future__ import annotations

import html
import math
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

pytestmark = [pytest.mark.cluster, pytest.mark.slow]


def seasonal_trace(path: Path, days: int = 4, bucket_s: int = 300) -> Path:
    rng = np.random.default_rng(11)
    rows = ["timestamp_s,requests"]
    for i in range(days * 86400 // bucket_s):
        t = i * bucket_s
        rate = 10 + 8 * math.sin(2 * math.pi * (t / 86400 - 0.25))
        rows.append(f"{t},{rng.poisson(max(rate, 0.5) * bucket_s)}")
    path.write_text("\n".join(rows) + "\n")
    return path


def leftovers(marker: str) -> list[str]:
    """Command lines of live processes that mention ``marker`` (the demo's work folder)."""
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if marker in cmd:
            found.append(cmd[:200])
    return found


def demo_argv(trace: Path, out: Path, day_minutes: float) -> list[str]:
    return [sys.executable, "-m", "prescale.cli", "--log-format", "json", "demo", "--trace", str(trace),
            "--day", "3", "--history-days", "2", "--day-minutes", str(day_minutes),
            "--peak-replicas", "8", "--out", str(out)]


def test_demo_runs_end_to_end_and_cleans_up(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    done = subprocess.run(demo_argv(seasonal_trace(tmp_path / "t.csv"), out, 1.5),
                          capture_output=True, text=True, timeout=420, check=False)
    assert done.returncode == 0, f"{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    rows = {" ".join(line.split()[:2]): line.split() for line in done.stdout.splitlines() if "%" in line}
    assert {"hpa (live)", "prescale (live)"} <= rows.keys(), done.stdout
    assert re.search(r"^\[\d\d:\d\d\] demand ", done.stdout, re.MULTILINE), "no live progress lines"
    for name in ("hpa (live)", "prescale (live)"):
        share = float(rows[name][2].rstrip("%"))
        gpu_hours = float(rows[name][3])
        assert 0.0 <= share <= 100.0
        assert gpu_hours > 0
    # Replayed at the live cadence (x960: a decision every 960 s of trace time) and at 15 s.
    assert {"hpa (replay", "predictive (replay"} <= rows.keys(), done.stdout
    lines = done.stdout.splitlines()
    replayed = {f"{line.split()[0]} {line.split()[2]}" for line in lines
                if "(replay" in line and not line.startswith("frontier")}
    assert replayed == {"hpa 960s)", "predictive 960s)", "hpa 15s)", "predictive 15s)"}, done.stdout
    agreement = next(line for line in lines if line.startswith("live against the replay"))
    assert "at the live cadence (960 s): hpa: under-provisioned" in agreement
    assert "prescale: under-provisioned" in agreement
    frontier = next(line for line in lines if line.startswith("frontier (replay"))
    assert frontier.startswith("frontier (replay, a decision every 960 s): at equal GPU-hours prescale")
    page = (out / "report.html").read_text()
    assert page.count("data:image/png;base64,") == 2  # the live run, and the frontier with the live points
    assert "live against the replay at the live cadence" in page
    assert "Frontier at the live cadence" in page
    assert html.escape(frontier) in page
    samples = (out / "samples.csv").read_text().splitlines()
    assert samples[0] == "deployment,trace_s,demand_rps,ready,held,desired"
    assert {line.split(",")[0] for line in samples[1:]} == {"model-hpa", "model-prescale"}
    assert leftovers(str(out)) == []


def test_ctrl_c_stops_everything_it_started(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    proc = subprocess.Popen(demo_argv(seasonal_trace(tmp_path / "t.csv"), out, 10),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert proc.stdout is not None
    deadline = time.monotonic() + 240
    seen = []
    for line in proc.stdout:
        seen.append(line)
        if "replaying day" in line:
            break
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail("the demo did not start replaying:\n" + "".join(seen[-40:]))
    assert leftovers(str(out)), "expected the demo's components to be running"
    proc.send_signal(signal.SIGINT)
    rest, _ = proc.communicate(timeout=120)
    assert proc.returncode == 130, "".join(seen[-20:]) + rest[-2000:]
    assert "interrupted" in rest
    assert leftovers(str(out)) == []
