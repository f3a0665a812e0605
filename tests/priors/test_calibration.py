"""Std calibration: a known miscalibration is found and removed."""

from __future__ import annotations

import numpy as np
import pytest

from priors.calibration import NOMINAL_COVERAGE, coverage, fit_std_calibration, load_std_calibration, save_std_calibration


def test_gaussian_errors_with_halved_std_give_scale_two(tmp_path):
    rng = np.random.default_rng(0)
    sigma = rng.uniform(5.0, 50.0, size=200_000)  # per-pixel true posterior std (HU)
    errors = rng.normal(0.0, sigma)
    cal = fit_std_calibration(errors, sigma / 2, samples=4, data={"what": "synthetic"})
    assert cal.scale == pytest.approx(2.0, rel=0.02)
    assert cal.coverage_raw["1"] == pytest.approx(coverage(errors, sigma / 2, 1), abs=1e-12)
    assert cal.coverage_raw["1"] < 0.45  # half the std: about 38 % of the errors within it
    for k, nominal in NOMINAL_COVERAGE.items():
        assert cal.coverage_calibrated[str(k)] == pytest.approx(nominal, abs=0.01)
    save_std_calibration(cal, tmp_path)
    assert load_std_calibration(tmp_path) == cal
    assert load_std_calibration(tmp_path / "missing") is None


def test_too_few_pixels_or_zero_std_is_refused():
    with pytest.raises(ValueError, match="at least 100 pixels"):
        fit_std_calibration(np.ones(1000), np.zeros(1000), samples=2, data={})
