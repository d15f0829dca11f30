"""Live-demo scoring and the compressed-time traffic source."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from aiohttp.test_utils import TestClient, TestServer

from prescale.demo.clock import CompressedClock
from prescale.demo.score import Sample, Track, write_samples
from prescale.demo.traffic import DemandSource, Target, TrafficCollector, make_app


def test_track_scores_shortfall_and_gpu_hours() -> None:
    track = Track("t")
    # 100 s at demand 10 with 1 ready replica of capacity 5 (short 5), then 100 s fully served.
    track.add(Sample(0, 10.0, ready=1, held=2, desired=2))
    track.add(Sample(100, 10.0, ready=2, held=2, desired=2))
    track.add(Sample(200, 10.0, ready=2, held=2, desired=3))
    s = track.score(capacity_rps=5.0, gpus_per_replica=1)
    assert s.under_provisioned_share == pytest.approx(500 / 2000)
    assert s.gpu_hours == pytest.approx(2 * 200 / 3600)
    assert s.violation_minutes == pytest.approx(100 / 60)
    assert s.scale_actions == 0


def test_samples_csv_holds_every_sample_of_every_track(tmp_path: Path) -> None:
    a, b = Track("hpa"), Track("prescale")
    a.add(Sample(0, 10.0, ready=1, held=2, desired=2))
    b.add(Sample(0, 10.0, ready=3, held=3, desired=3))
    b.add(Sample(60, 12.5, ready=3, held=4, desired=4))
    out = tmp_path / "run" / "samples.csv"
    write_samples(out, [a, b])
    rows = list(csv.DictReader(out.read_text().splitlines()))
    assert [(r["deployment"], float(r["trace_s"]), int(r["held"])) for r in rows] == [
        ("hpa", 0.0, 2), ("prescale", 0.0, 3), ("prescale", 60.0, 4)]
    assert float(rows[-1]["demand_rps"]) == 12.5


def test_track_rejects_samples_out_of_order() -> None:
    track = Track("t")
    track.add(Sample(10, 1, 1, 1, 1))
    with pytest.raises(ValueError, match="time order"):
        track.add(Sample(5, 1, 1, 1, 1))


class FakeWall:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_compressed_clock_maps_wall_to_trace_time() -> None:
    wall = FakeWall()
    clock = CompressedClock(factor=144, start_sim_s=3600, wall=wall)
    wall.now += 10
    assert clock.sim_s() == pytest.approx(3600 + 1440)
    assert clock.wall_s_for(180) == pytest.approx(1.25)
    with pytest.raises(ValueError, match="compression"):
        CompressedClock(factor=0)


async def test_traffic_counter_integrates_the_trace_rate_over_wall_time() -> None:
    wall = FakeWall()
    clock = CompressedClock(factor=60, wall=wall)
    source = DemandSource(np.array([2.0, 8.0]), step_s=60)  # trace: 2 rps for a minute, then 8 rps
    collector = TrafficCollector(source, clock, [Target("demo", "a"), Target("demo", "b")])
    async with TestClient(TestServer(make_app(collector))) as client:
        wall.now += 0.5  # trace second 30: still the first step
        await client.get("/metrics")
        wall.now += 1.0  # trace second 90: second step
        text = await (await client.get("/metrics")).text()
    assert collector.total == pytest.approx(2.0 * 0.5 + 8.0 * 1.0)
    assert 'inference_requests_total{code="200",deployment="a",model="demo",namespace="demo"} 9.0' in text
    assert 'prescale_demo_demand_requests_per_second{deployment="b",namespace="demo"} 8.0' in text


def test_demand_source_rejects_bad_arrays() -> None:
    with pytest.raises(ValueError, match="non-negative"):
        DemandSource(np.array([1.0, -1.0]), 60)
    with pytest.raises(ValueError, match="non-empty"):
        DemandSource(np.array([]), 60)
