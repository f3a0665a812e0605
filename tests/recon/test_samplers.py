"""Posterior samplers against closed-form Gaussian posteriors, and on every operator kind.

Gaussian tests: an 8x8 image, a random under-determined matrix ``A`` (32 x 64), Gaussian noise of
known std; the exact posterior mean/covariance is closed form (``GaussianPrior.posterior``). Samples
are drawn as one batch of S = 512, so the Monte-Carlo error of a sample mean is ``pstd / sqrt(512)
= 0.044 pstd`` per pixel (up to ~0.15 over 64 pixels) and of a sample std about 3 % per pixel (up
to ~10 %).

What each sampler guarantees, and the tolerance checked:

* Isotropic prior ``N(m, s^2 I)``: then ``x0 | x_t`` is exactly ``N(D(x_t), r_t^2 I)``, so DDS's CG step
  (run to convergence) computes ``E[x0 | x_t, y]`` exactly, and DDS with ``eps_source="refined"``
  is a DDIM discretisation of the exact posterior diffusion; Song et al. 2022 with ``lambda = 1`` and
  a converged projection is exact too (null-space components follow the prior sampler, measured
  components are conditioned by projection / Matheron's rule). Both must match the posterior
  mean to 0.25 pstd per pixel (0.10 RMS) and the posterior std to [0.82, 1.2] per pixel and
  [0.92, 1.08] on average (MC error plus the discretisation bias of 50-100 steps, measured at
  -3 % (DDS) and +5 % (Song)).
* DDS with its defaults (5 CG iterations, network noise direction, 50 NFE): mean within 0.3 pstd per
  pixel (0.15 RMS), std within [0.8, 1.1] on average.
* DPS (not an exact sampler; gradient step heuristic): the sample mean must be 3x closer to the
  posterior mean than the prior mean is (RMS in posterior stds), and samples fit the data better than
  prior draws (mean residual below 0.8x). zeta' = 0.3 (see DPS_ZETA).
* Correlated (non-isotropic) prior: every sampler's Tweedie / projection step is an approximation
  there, so only: sample mean at least 1.4x closer to the posterior mean than the prior mean (RMS
  in pstd), residual at the right scale.
"""

from __future__ import annotations

import math

import pytest
import torch

from operators.base import MatrixOperator
from priors.gaussian import GaussianPrior, isotropic
from recon.samplers import SAMPLERS
from recon.samplers.common import (
    DenoiserView,
    counting_denoiser_calls,
    karras_sigmas,
    noise_residual,
    sampling_sigmas,
)
from recon.samplers.data_term import DataTerm

H = W = 8
N = H * W
M = 32
S = 512


def _problem(prior: GaussianPrior, noise_std: float, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    A = torch.randn(M, N, generator=g, dtype=torch.float64) / 4
    op = MatrixOperator(A, (1, H, W))
    x_true = prior.sample(1, g)
    y = op(x_true)
    if noise_std > 0:
        y = y + noise_std * torch.randn(y.shape, generator=g, dtype=torch.float64)
    mean, cov = prior.posterior(A, y, noise_std**2)
    pstd = cov.diagonal().clamp_min(0).sqrt().reshape(1, 1, H, W)
    return op, y, mean, pstd


#: DPS step scale for these 64-pixel images: the paper's zeta' = 1 moves the image by up to 2 (in
#: norm) per step, half the norm of the whole 8x8 image, and oscillates around the data; 0.3 does not.
DPS_ZETA = 0.3


def _run(name, prior, op, y, noise_std, seed=1, **opts):
    yy = y.expand(S, *y.shape[1:]).contiguous()
    x = SAMPLERS[name](prior, op, yy, generator=torch.Generator().manual_seed(seed),
                       noise_std=noise_std if noise_std > 0 else None, **opts)
    return x


def _stats(x, mean, pstd):
    m, sd = x.mean(0, keepdim=True), x.std(0, keepdim=True)
    z = (m - mean) / pstd
    ratio = sd / pstd
    return float(z.abs().max()), float(z.pow(2).mean().sqrt()), ratio


@pytest.fixture(scope="module")
def iso_prior():
    return isotropic((1, H, W), variance=0.09, mean=0.5)


@pytest.fixture(scope="module")
def corr_prior():
    idx = torch.stack(torch.meshgrid(torch.arange(H), torch.arange(W), indexing="ij"), -1).reshape(-1, 2).double()
    d2 = ((idx[:, None] - idx[None]) ** 2).sum(-1)
    cov = 0.09 * torch.exp(-d2 / 8.0) + 1e-3 * torch.eye(N, dtype=torch.float64)
    return GaussianPrior(torch.full((1, H, W), 0.5, dtype=torch.float64), cov)


# --- the Gaussian prior itself ------------------------------------------------------------------
def test_gaussian_denoiser_is_posterior_mean(corr_prior):
    """D(x, sigma) equals the closed-form posterior of x0 given x = x0 + sigma n (identity operator)."""
    g = torch.Generator().manual_seed(0)
    x = corr_prior.sample(3, g) + 0.3 * torch.randn(3, 1, H, W, generator=g, dtype=torch.float64)
    mean, _ = corr_prior.posterior(torch.eye(N, dtype=torch.float64), x.reshape(3, N), 0.09)
    assert torch.allclose(corr_prior.denoise(x, 0.3), mean, atol=1e-10)
    # per-item sigma and the eigen-decomposition / diagonal forms agree with the dense one
    diag = GaussianPrior(corr_prior.mean.clone(), corr_prior.covariance().diagonal().clone())
    dense_diag = GaussianPrior(corr_prior.mean.clone(), torch.diag(corr_prior.covariance().diagonal()))
    s = torch.tensor([0.1, 1.0, 3.0], dtype=torch.float64)
    assert torch.allclose(diag.denoise(x, s), dense_diag.denoise(x, s), atol=1e-10)
    assert torch.allclose(corr_prior.score(x, 0.5), (corr_prior.denoise(x, 0.5) - x) / 0.25)


def test_schedule_matches_karras():
    s = karras_sigmas(10, 0.005, 20.0, 7.0)
    assert s.shape == (10,) and float(s[0]) == pytest.approx(20.0) and float(s[-1]) == pytest.approx(0.005)
    assert bool((s[1:] < s[:-1]).all())
    with_zero = sampling_sigmas(isotropic((1, 2, 2), 1.0), 10)
    assert with_zero.shape == (11,) and float(with_zero[-1]) == 0.0


def test_complex_split_denoises_real_and_imaginary_parts_separately(iso_prior):
    view = DenoiserView(iso_prior, complex_=True)
    g = torch.Generator().manual_seed(0)
    xr, xi = (torch.randn(2, 1, H, W, generator=g, dtype=torch.float64) for _ in range(2))
    with counting_denoiser_calls(iso_prior) as calls:
        out = view(torch.complex(xr, xi), 0.7)
    assert calls == [1]  # both parts in one network evaluation
    assert "denoise" not in vars(iso_prior)  # the prior is left as it was
    assert torch.allclose(out.real, iso_prior.denoise(xr, 0.7)) and torch.allclose(out.imag, iso_prior.denoise(xi, 0.7))


def test_data_term_solve_converges_to_tikhonov_solution():
    g = torch.Generator().manual_seed(0)
    A = torch.randn(6, 10, generator=g, dtype=torch.float64)
    op = MatrixOperator(A, (1, 2, 5))
    y = torch.randn(2, 6, generator=g, dtype=torch.float64)
    x0 = torch.randn(2, 1, 2, 5, generator=g, dtype=torch.float64)
    std = torch.rand(6, generator=g, dtype=torch.float64) + 0.5
    data = DataTerm.build(op, y, std)
    x = data.solve(x0, gamma=0.7, n_iter=50)
    Wm = torch.diag(1 / std**2)
    lhs = A.T @ Wm @ A + 0.7 * torch.eye(10, dtype=torch.float64)
    rhs = (y @ Wm @ A) + 0.7 * x0.reshape(2, 10)
    expected = torch.linalg.solve(lhs, rhs.T).T
    assert torch.allclose(x.reshape(2, 10), expected, atol=1e-8)


def test_data_term_solve_with_z_coupling_matches_direct_solve():
    """Two volumes of three slices: CG per volume solves (A^T W A + g I + rho D_z^T D_z) x = rhs."""
    g = torch.Generator().manual_seed(1)
    A = torch.randn(6, 10, generator=g, dtype=torch.float64)
    op = MatrixOperator(A, (1, 2, 5))
    V, n, rho, gam = 2, 3, 2.5, 0.7
    y = torch.randn(V * n, 6, generator=g, dtype=torch.float64)
    x0 = torch.randn(V * n, 1, 2, 5, generator=g, dtype=torch.float64)
    std = torch.rand(6, generator=g, dtype=torch.float64) + 0.5
    x = DataTerm.build(op, y, std).solve(x0, gamma=gam, n_iter=200, z_precision=rho, z_slices=n, tol=1e-12)
    D = torch.zeros(n - 1, n, dtype=torch.float64)
    D[torch.arange(n - 1), torch.arange(n - 1)] = -1.0
    D[torch.arange(n - 1), torch.arange(1, n)] = 1.0
    Wm = torch.diag(1 / std**2)
    eye = torch.eye(10, dtype=torch.float64)
    lhs = torch.kron(torch.eye(n, dtype=torch.float64), A.T @ Wm @ A + gam * eye) + rho * torch.kron(D.T @ D, eye)
    for v in range(V):
        sl = slice(v * n, (v + 1) * n)
        rhs = ((y[sl] @ Wm @ A) + gam * x0[sl].reshape(n, 10)).reshape(-1)
        expected = torch.linalg.solve(lhs, rhs).reshape(n, 10)
        assert torch.allclose(x[sl].reshape(n, 10), expected, atol=1e-8)
    # no coupling: slice by slice, as before
    assert torch.allclose(DataTerm.build(op, y, std).solve(x0, gamma=gam, n_iter=50, z_precision=0.0),
                          DataTerm.build(op, y, std).solve(x0, gamma=gam, n_iter=50))
    with pytest.raises(ValueError, match="z_slices"):
        DataTerm.build(op, y, std).solve(x0, gamma=gam, z_precision=rho, z_slices=4)


# --- exact posterior (isotropic prior) --------------------------------------------------------------
# Noisy data: the proximal systems are well conditioned and CG converges in ~15 iterations (fast).
# Noise-free data: CG must resolve a singular system to round-off (40 iterations; marked slow).
EXACT = {
    ("dds", 0.05): dict(nfe=80, cg_iters=20, eps_source="refined", cg_tol=1e-10),
    ("song22", 0.05): dict(nfe=100, cg_iters=15),
    ("dds", 0.0): dict(nfe=80, cg_iters=40, eps_source="refined"),
    ("song22", 0.0): dict(nfe=100, cg_iters=40),
}


@pytest.mark.parametrize(
    "name,noise_std",
    [("dds", 0.05), ("song22", 0.05),
     pytest.param("dds", 0.0, marks=pytest.mark.slow), pytest.param("song22", 0.0, marks=pytest.mark.slow)],
)
def test_exact_posterior_mean_and_std_isotropic(name, noise_std, iso_prior):
    op, y, mean, pstd = _problem(iso_prior, noise_std)
    x = _run(name, iso_prior, op, y, noise_std, **EXACT[(name, noise_std)])
    zmax, zrms, ratio = _stats(x, mean, pstd)
    assert zmax < 0.25 and zrms < 0.10, f"{name}: mean error {zmax:.3f} max / {zrms:.3f} RMS posterior stds"
    assert 0.82 < float(ratio.min()) and float(ratio.max()) < 1.2, f"{name}: std ratio {ratio.min():.3f}..{ratio.max():.3f}"
    assert 0.92 < float(ratio.mean()) < 1.08, f"{name}: mean std ratio {ratio.mean():.3f}"
    # the problem is informative: the prior alone would fail the same checks
    prior_z = float(((iso_prior.mean - mean) / pstd).pow(2).mean().sqrt())
    assert prior_z > 0.5 and float((math.sqrt(0.09) / pstd).mean()) > 1.15


def test_dds_defaults_isotropic(iso_prior):
    op, y, mean, pstd = _problem(iso_prior, 0.05)
    x = _run("dds", iso_prior, op, y, 0.05, nfe=50)
    zmax, zrms, ratio = _stats(x, mean, pstd)
    assert zmax < 0.3 and zrms < 0.15, (zmax, zrms)
    assert 0.8 < float(ratio.mean()) < 1.1, float(ratio.mean())


def test_dps_moves_to_posterior_isotropic(iso_prior):
    op, y, mean, pstd = _problem(iso_prior, 0.05)
    x = _run("dps", iso_prior, op, y, 0.05, nfe=100, zeta=DPS_ZETA)
    _, zrms, _ = _stats(x, mean, pstd)
    prior_z = float(((iso_prior.mean - mean) / pstd).pow(2).mean().sqrt())
    assert zrms < prior_z / 3, (zrms, prior_z)
    yy = y.expand(S, M)
    res = (op(x) - yy).norm(dim=1).mean()
    res_prior = (op(iso_prior.sample(S, torch.Generator().manual_seed(5))) - yy).norm(dim=1).mean()
    assert res < 0.8 * res_prior, (float(res), float(res_prior))


@pytest.mark.parametrize("name", sorted(SAMPLERS))
def test_correlated_prior_moves_to_posterior(name, corr_prior):
    op, y, mean, pstd = _problem(corr_prior, 0.05)
    x = _run(name, corr_prior, op, y, 0.05, nfe=60, **({"zeta": DPS_ZETA} if name == "dps" else {}))
    _, zrms, _ = _stats(x, mean, pstd)
    prior_z = float(((corr_prior.mean - mean) / pstd).pow(2).mean().sqrt())
    assert zrms < prior_z / 1.4, (zrms, prior_z)
    rel = float(((op(x) - y).norm(dim=1) / y.norm()).mean())
    assert rel < 0.5, rel


def test_noise_aware_dds_does_not_fit_noise(iso_prior):
    """Noise-blind CG (noise_std=None) fits the noise exactly (32 equations, 64 unknowns). Noise-aware
    DDS keeps a residual at the scale of exact posterior samples: with its defaults (network noise
    direction) measured at 0.4x the expected residual, so > 0.25x is required; with the exact
    conditional step (``eps_source="refined"``) within [0.8, 1.2]x."""
    op, y, mean, _ = _problem(iso_prior, 0.2)
    A = op.matrix
    _, cov = iso_prior.posterior(A, y, 0.04)
    expected = float(((op(mean) - y).norm() ** 2 + torch.trace(A @ cov @ A.T)).sqrt())
    yy = y.expand(S, M)

    def rms_residual(x):
        return float((op(x) - yy).norm(dim=1).pow(2).mean().sqrt())

    blind = rms_residual(_run("dds", iso_prior, op, y, 0.0, nfe=30, cg_iters=40))
    aware = rms_residual(_run("dds", iso_prior, op, y, 0.2, nfe=30, cg_iters=20))
    exact = rms_residual(_run("dds", iso_prior, op, y, 0.2, nfe=30, cg_iters=20, eps_source="refined", cg_tol=1e-10))
    assert blind < 0.05 * expected
    assert 0.25 * expected < aware < 1.4 * expected, (aware, expected)
    assert 0.8 * expected < exact < 1.2 * expected, (exact, expected)


@pytest.mark.parametrize("name", sorted(SAMPLERS))
def test_samplers_deterministic_and_callback(name, iso_prior):
    op, y, _, _ = _problem(iso_prior, 0.05)
    calls = []

    def cb(step, sigma, x, x0):
        calls.append((step, sigma, tuple(x.shape), tuple(x0.shape)))

    a = SAMPLERS[name](iso_prior, op, y, nfe=6, generator=torch.Generator().manual_seed(3), callback=cb)
    b = SAMPLERS[name](iso_prior, op, y, nfe=6, generator=torch.Generator().manual_seed(3))
    c = SAMPLERS[name](iso_prior, op, y, nfe=6, generator=torch.Generator().manual_seed(4))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert calls and calls[0][0] == 0 and calls[0][2] == (1, 1, H, W) and calls[0][3] == (1, 1, H, W)
    assert [c[1] for c in calls] == sorted([c[1] for c in calls], reverse=True)


def test_unknown_options_rejected(iso_prior):
    op, y, _, _ = _problem(iso_prior, 0.0)
    with pytest.raises(TypeError):
        SAMPLERS["dds"](iso_prior, op, y, nfe=3, generator=torch.Generator(), not_an_option=1)
    with pytest.raises(ValueError):
        SAMPLERS["dds"](iso_prior, op, y, nfe=3, generator=torch.Generator(), eps_source="bogus")


def test_dds_weighs_the_denoiser_by_the_priors_error_ratio():
    """gamma_scale=None is 1 / denoiser_error_ratio: a prior claiming a 10x smaller error is the same
    as gamma_scale=10, and differs from gamma_scale=1."""
    from operators.base import MatrixOperator
    from priors.gaussian import isotropic
    from recon.samplers import dds

    g = torch.Generator().manual_seed(0)
    op = MatrixOperator(torch.randn(20, 36, generator=g, dtype=torch.float64) / 6, (1, 6, 6))
    prior = isotropic((1, 6, 6), 0.09, 0.5)
    y = op(prior.sample(1, g)) + 0.05 * torch.randn(1, 20, generator=g, dtype=torch.float64)

    def run(p, **kw):
        return dds.sample(p, op, y, nfe=6, generator=torch.Generator().manual_seed(1), noise_std=0.05, **kw)

    sharp = isotropic((1, 6, 6), 0.09, 0.5)
    sharp.denoiser_error_ratio = 0.1
    assert torch.allclose(run(sharp), run(prior, gamma_scale=10.0))
    assert not torch.allclose(run(sharp), run(prior))
    assert torch.allclose(run(prior), run(prior, gamma_scale=1.0))


def test_noise_residual_is_one_for_the_truth_and_none_without_noise_model():
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(400, 50, generator=gen, dtype=torch.float64)
    op = MatrixOperator(a, (50,))
    x = torch.randn(3, 50, generator=gen, dtype=torch.float64)
    std = torch.tensor([0.5, 2.0, 0.1], dtype=torch.float64).view(3, 1)
    y = op(x) + std * torch.randn(3, 400, generator=gen, dtype=torch.float64)
    r = noise_residual(op, x, y, std)
    assert r.shape == (3,) and torch.allclose(r, torch.ones(3, dtype=torch.float64), atol=0.1)
    # an estimate the data contradict scores far above 1; a misfit at twice the noise reads 2
    assert bool((noise_residual(op, torch.zeros_like(x), y, std) > 3).all())
    assert torch.allclose(noise_residual(op, x, y, std / 2), 2 * r)
    assert noise_residual(op, x, y, None) is None and noise_residual(op, x, y, 0.0) is None
    # complex data: noise_std is sqrt(E|n|^2), so circular noise of that size reads 1 as well
    yc = op(x).to(torch.complex128) + 0.3 * torch.complex(torch.randn(3, 400, generator=gen, dtype=torch.float64),
                                                          torch.randn(3, 400, generator=gen, dtype=torch.float64)) / 2**0.5
    opc = MatrixOperator(a.to(torch.complex128), (50,))
    assert torch.allclose(noise_residual(opc, x.to(torch.complex128), yc, 0.3), torch.ones(3, dtype=torch.float64),
                          atol=0.1)
