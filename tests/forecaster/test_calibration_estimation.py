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


def test_step_coverage_drives_the_level_from_step_hits_only() -> None:
    cal = PeakCalibrator(0.9, CalibratorConfig(step_coverage=True, min_scores=5))
    fixed = PeakCalibrator(0.9, CalibratorConfig(min_scores=5, aci_gamma=0.0))
    for k in range(20):
        cal.observe(100.0, 150.0, 100.0 + k)  # window outcomes: scores only, no coverage
        fixed.observe(100.0, None, 100.0 + k)
    assert cal.outcomes == 0
    for _ in range(30):
        cal.observe_step(200.0, 150.0)  # every step beyond the band
    assert cal.outcomes == 30
    assert cal.quality().coverage == 0.0
    wf, nominal = cal.window_forecast(100.0), fixed.window_forecast(100.0)
    assert wf is not None
    assert nominal is not None
    assert wf.at(0.9) > nominal.at(0.9)  # the misses pushed the working level up
    assert list(wf.peak_rps) == sorted(wf.peak_rps)
    cal.observe_step(math.nan, 150.0)
    assert cal.outcomes == 30  # NaN never counts


def test_window_mode_ignores_step_reports() -> None:
    cal = PeakCalibrator(0.9)
    cal.observe_step(200.0, 150.0)
    assert cal.outcomes == 0


def test_sqrt_transform_covers_counting_noise_at_every_level(rng: np.random.Generator) -> None:
    """Noise like counting noise (sd = sqrt(level)) at levels 5 and 500: one sqrt band fits
    both within two points, where a log band (proportional errors) cannot."""
    coverage = {}
    for transform in ("sqrt", "log"):
        cal = PeakCalibrator(0.9, CalibratorConfig(transform=transform, aci_gamma=0.0))
        hits: dict[bool, list[bool]] = {True: [], False: []}
        for _ in range(6000):
            point = float(rng.choice([5.0, 500.0]))
            actual = max(point + math.sqrt(point) * float(rng.normal()), 0.0)
            wf = cal.window_forecast(point, offset=1.0)
            if wf is not None:
                hits[point > 50].append(actual <= wf.at(0.9))
            cal.observe(point, None, actual, offset=1.0)
        coverage[transform] = [float(np.mean(h)) for h in hits.values()]
    assert all(abs(c - 0.9) < 0.02 for c in coverage["sqrt"])
    assert max(coverage["log"]) - min(coverage["log"]) > 0.05


def test_unknown_transform_is_refused() -> None:
    with pytest.raises(ValueError, match="transform must be one of log, sqrt"):
        PeakCalibrator(0.9, CalibratorConfig(transform="cube"))
