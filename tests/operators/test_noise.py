"""Noise and dose models: Poisson transmission statistics, safe log, HU <-> mu, complex k-space noise."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from operators.noise import (
    COUNT_FLOOR,
    MU_WATER_PER_MM,
    complex_gaussian_noise,
    counts_to_line_integrals,
    hu_to_mu,
    line_integral_noise_variance,
    mu_to_hu,
    simulate_counts,
    transmission_noise,
)

N = 200_000


@pytest.mark.parametrize("p,i0,sigma_e", [(0.5, 1e4, 0.0), (2.0, 1e4, 0.0), (4.0, 1e4, 0.0), (2.0, 1e4, 5.0)])
def test_transmission_noise_statistics(p, i0, sigma_e):
    """Mean ~ p + exp(p) / (2 I0) (second-order delta method), variance ~ line_integral_noise_variance."""
    gen = torch.Generator().manual_seed(1234)
    clean = torch.full((N,), p, dtype=torch.float64)
    noisy = transmission_noise(clean, i0, electronic_noise_std=sigma_e, generator=gen)
    var_theory = float(line_integral_noise_variance(clean[:1], i0, electronic_noise_std=sigma_e))
    mean_theory = p + 0.5 * var_theory
    se_mean = math.sqrt(var_theory / N)
    assert abs(float(noisy.mean()) - mean_theory) < 4 * se_mean
    # higher-order terms are O(1 / expected count) ~ 0.5 % at the lowest count used (183 photons)
    assert float(noisy.var()) == pytest.approx(var_theory, rel=0.03)


def test_noise_reproducible_and_seeded():
    clean = torch.rand(2, 1, 8, 10)
    a = transmission_noise(clean, 1e3, generator=torch.Generator().manual_seed(0))
    b = transmission_noise(clean, 1e3, generator=torch.Generator().manual_seed(0))
    c = transmission_noise(clean, 1e3, generator=torch.Generator().manual_seed(1))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert a.dtype == clean.dtype and a.shape == clean.shape
    with pytest.raises(ValueError, match="generator"):
        transmission_noise(clean, 1e3, generator=None)


def test_safe_log_clip():
    gen = torch.Generator().manual_seed(0)
    noisy = transmission_noise(torch.full((100,), 40.0), 100.0, generator=gen)  # ~0 photons arrive
    assert torch.isfinite(noisy).all()
    assert torch.allclose(noisy, torch.full_like(noisy, math.log(100.0 / COUNT_FLOOR)))


def test_counts_to_line_integrals_dark_flat():
    p = torch.tensor([0.0, 1.0, 2.5], dtype=torch.float64)
    flat = torch.tensor([1000.0, 2000.0, 1500.0], dtype=torch.float64)
    dark = 10.0
    counts = (flat - dark) * torch.exp(-p) + dark
    assert torch.allclose(counts_to_line_integrals(counts, dark=dark, flat=flat), p)
    assert torch.allclose(counts_to_line_integrals(1e4 * torch.exp(-p), 1e4), p)
    # i0 counts photons above the dark level: the air reading is i0 + dark
    assert torch.allclose(counts_to_line_integrals(1e4 * torch.exp(-p) + dark, 1e4, dark=dark), p)
    with pytest.raises(ValueError, match="must be > 0"):
        counts_to_line_integrals(counts, dark=10.0, flat=5.0)
    with pytest.raises(ValueError, match="i0"):
        counts_to_line_integrals(counts, dark=10.0)
    with pytest.raises(ValueError, match="NaN or inf"):
        counts_to_line_integrals(torch.tensor([float("nan")]), 1e4)


def test_count_floor_only_touches_starved_rays():
    """Below ``eps`` photons above the dark level the line integral saturates at log(I0 / eps)."""
    counts = torch.tensor([0.0, 5.0, 5.05, 5.1, 6.0, 1e3], dtype=torch.float64)
    p = counts_to_line_integrals(counts, 1e3, dark=5.0, eps=0.1)
    assert torch.allclose(p[:3], torch.full((3,), math.log(1e3 / 0.1), dtype=torch.float64))
    assert torch.allclose(p[3:], -torch.log((counts[3:] - 5.0) / 1e3))


def test_simulate_counts_mean():
    gen = torch.Generator().manual_seed(3)
    counts = simulate_counts(torch.full((N,), 1.0), 500.0, generator=gen)
    assert float(counts.mean()) == pytest.approx(500 * math.exp(-1), abs=4 * math.sqrt(500 * math.exp(-1) / N))
    assert float(counts.min()) >= 0 and torch.equal(counts, counts.round())


def test_hu_mu_round_trip_torch_and_numpy():
    hu = torch.linspace(-1000, 3000, 101, dtype=torch.float64)
    assert torch.allclose(mu_to_hu(hu_to_mu(hu)), hu)
    assert float(hu_to_mu(torch.tensor(0.0))) == pytest.approx(MU_WATER_PER_MM)
    assert float(hu_to_mu(torch.tensor(-1000.0))) == pytest.approx(0.0)
    arr = np.array([-1000.0, 0.0, 1000.0])
    out = hu_to_mu(arr, mu_water=0.02)
    assert isinstance(out, np.ndarray)
    np.testing.assert_allclose(out, [0.0, 0.02, 0.04])
    np.testing.assert_allclose(mu_to_hu(out, mu_water=0.02), arr)
    with pytest.raises(ValueError, match="mu_water"):
        hu_to_mu(arr, mu_water=0.0)


def test_complex_gaussian_noise():
    k = torch.zeros(4, 2, 64, 64, dtype=torch.complex64)
    a = complex_gaussian_noise(k, 0.5, torch.Generator().manual_seed(0))
    b = complex_gaussian_noise(k, 0.5, torch.Generator().manual_seed(0))
    assert torch.equal(a, b) and a.dtype == torch.complex64 and a.shape == k.shape
    power = float((a.abs() ** 2).mean())
    assert power == pytest.approx(0.25, rel=0.03)  # E|n|^2 = sigma^2, 32k samples
    assert float(a.real.var()) == pytest.approx(float(a.imag.var()), rel=0.05)
    with pytest.raises(ValueError, match="complex"):
        complex_gaussian_noise(torch.zeros(2, 2), 0.1, torch.Generator())
