"""Online calibration of window peaks, and online capacity and lead-time estimation."""

from __future__ import annotations

import math

import numpy as np
import pytest

from forecaster.calibration import CalibratorConfig, PeakCalibrator
from forecaster.estimation import CapacityEstimator, LeadTimeEstimator


def _run(cal: PeakCalibrator, rng: np.random.Generator, n: int, sigma: float) -> list[bool]:
    hits = []
    for _ in range(n):
        point = float(rng.uniform(50, 150))
        actual = point * math.exp(rng.normal(0.1, sigma))
        wf = cal.window_forecast(point, offset=10.0)
        planned = wf.at(cal.target) if wf else None
        if planned is not None:
            hits.append(actual <= planned)
        cal.observe(point, planned, actual, offset=10.0)
    return hits


@pytest.mark.parametrize("target", [0.9, 0.95])
def test_coverage_is_within_two_points_of_nominal(target: float, rng: np.random.Generator) -> None:
    hits = _run(PeakCalibrator(target), rng, 4000, sigma=0.2)
    assert abs(float(np.mean(hits)) - target) < 0.02


def test_aci_recovers_coverage_after_the_noise_grows(rng: np.random.Generator) -> None:
    cal = PeakCalibrator(0.9, CalibratorConfig(window=500, aci_gamma=0.01))
    _run(cal, rng, 1000, sigma=0.1)
    hits = _run(cal, rng, 3000, sigma=0.4)
    assert abs(float(np.mean(hits[-1500:])) - 0.9) < 0.03


def test_no_band_until_enough_outcomes_and_short_groups_borrow_from_all() -> None:
    cal = PeakCalibrator(0.9, CalibratorConfig(min_scores=5))
    assert cal.window_forecast(10.0) is None
    for _ in range(10):
        cal.observe(10.0, None, 20.0, group=1)
    for _ in range(10):
        cal.observe(10.0, None, 10.0, group=2)
    own = cal.window_forecast(10.0, group=1)
    assert own is not None
    assert own.at(0.9) == pytest.approx(20.0)
    pooled = cal.window_forecast(10.0, group=0)  # no evidence of its own: uses every group's
    assert pooled is not None
    assert 10.0 < pooled.at(0.5) < 20.0


def test_quality_compares_with_persistence() -> None:
    cal = PeakCalibrator(0.9)
    for _ in range(50):
        cal.observe(forecast_peak=100.0, planned_peak=120.0, actual_peak=110.0, naive_peak=130.0)
    q = cal.quality()
    assert q.error_ratio == pytest.approx(0.5)
    assert q.coverage == 1.0
    assert q.samples == 50


def test_capacity_from_slo_met_samples_capped_by_violations() -> None:
    est = CapacityEstimator(min_samples=10, quantile=0.9)
    assert est.estimate() is None
    for rps in range(10, 30):
        est.observe(float(rps) * 4, 4, slo_met=True)  # 10..29 per replica
    assert est.estimate() == pytest.approx(np.quantile(np.arange(10, 30), 0.9))
    for _ in range(10):
        est.observe(4 * 20.0, 4, slo_met=False)
    assert est.estimate() == pytest.approx(20.0)
    assert CapacityEstimator(fixed_rps=7.5).estimate() == 7.5
    with pytest.raises(ValueError, match="fixed capacity"):
        CapacityEstimator(fixed_rps=0.0)


def test_lead_time_is_a_high_quantile_of_observed_delays() -> None:
    est = LeadTimeEstimator(prior_s=180.0, quantile=0.9)
    assert est.estimate_s() == 180.0
    for d in range(100, 200):
        est.observe(1000.0, 1000.0 + d)
    assert est.estimate_s() == pytest.approx(np.quantile(np.arange(100, 200), 0.9))
    est.observe(5.0, 1.0)  # ready before requested: ignored
    assert LeadTimeEstimator(prior_s=1.0, fixed_s=60.0).estimate_s() == 60.0
