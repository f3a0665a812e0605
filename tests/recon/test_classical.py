"""recon.classical on small exact operators (dense matrices) and, where importable, the real ones."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from operators.base import MatrixOperator
from recon import classical
from recon.classical import ct as ct_mod
from recon.classical.tv import div, grad, tv_objective
from recon.metrics import psnr

# Small dense problems: one thread is faster, and much faster on a shared CPU.
pytestmark = pytest.mark.usefixtures("one_thread")

# --- small hand-made operators ----------------------------------------------------------------------


def projection_matrix(n: int, n_angles: int, n_det: int | None = None) -> torch.Tensor:
    """A pixel-driven parallel-beam projector for an ``n x n`` image (non-negative, dense).

    Each pixel centre is projected onto the detector at ``t = x cos(a) + y sin(a)`` and its unit
    mass split linearly between the two nearest detector bins.
    """
    n_det = n_det or int(math.ceil(n * math.sqrt(2))) + 1
    c = (np.arange(n) - (n - 1) / 2.0)
    yy, xx = np.meshgrid(c, c, indexing="ij")
    A = np.zeros((n_angles, n_det, n * n))
    cols = np.arange(n * n)
    for i, a in enumerate(np.arange(n_angles) * math.pi / n_angles):
        t = (xx * math.cos(a) + yy * math.sin(a)).ravel() + (n_det - 1) / 2.0
        lo = np.floor(t).astype(int)
        frac = t - lo
        np.add.at(A[i], (lo, cols), 1 - frac)
        np.add.at(A[i], (np.minimum(lo + 1, n_det - 1), cols), frac)
    return torch.from_numpy(A.reshape(n_angles * n_det, n * n))


def phantom(n: int = 32, dtype=torch.float64) -> torch.Tensor:
    """Piecewise-constant test image ``[1, 1, n, n]``: a disc with two inserts."""
    c = (torch.arange(n, dtype=dtype) - (n - 1) / 2) / (n / 2)
    yy, xx = torch.meshgrid(c, c, indexing="ij")
    img = torch.zeros(n, n, dtype=dtype)
    img[xx**2 + yy**2 < 0.8**2] = 1.0
    img[(xx - 0.3) ** 2 + (yy + 0.1) ** 2 < 0.2**2] = 2.0
    img[(xx + 0.35).abs().lt(0.15) & (yy - 0.25).abs().lt(0.1)] = 0.5
    return img[None, None]


def ct_matrix_op(n: int = 24, n_angles: int = 30) -> MatrixOperator:
    A = projection_matrix(n, n_angles)
    return MatrixOperator(A, (1, n, n), (1, n_angles, A.shape[0] // n_angles))


# --- finite differences ------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.float64, torch.complex128])
def test_divergence_is_negative_adjoint_of_gradient(dtype):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 1, 7, 9, generator=g, dtype=dtype)
    p = torch.randn(2, 2, 1, 7, 9, generator=g, dtype=dtype)
    lhs = torch.vdot(grad(x).flatten(), p.flatten())
    rhs = -torch.vdot(x.flatten(), div(p).flatten())
    assert abs(complex(lhs - rhs)) < 1e-10 * abs(complex(lhs))
    # ||grad||^2 <= 8
    v = torch.randn(1, 1, 16, 16, generator=g, dtype=dtype)
    for _ in range(100):
        v = -div(grad(v))
        v = v / torch.linalg.vector_norm(v)
    assert torch.linalg.vector_norm(-div(grad(v))) <= 8.0 + 1e-9


# --- least squares ------------------------------------------------------------------------------------


def test_cgls_converges_to_least_squares_solution():
    g = torch.Generator().manual_seed(1)
    A = torch.randn(60, 30, generator=g, dtype=torch.float64)
    op = MatrixOperator(A, (1, 5, 6))
    y = torch.randn(3, 60, generator=g, dtype=torch.float64)
    x = classical.cgls(op, y, n_iter=60)
    ref = torch.linalg.lstsq(A, y.T).solution.T.reshape(3, 1, 5, 6)
    assert torch.allclose(x, ref, atol=1e-8, rtol=1e-8)


def test_cg_sense_converges_to_least_squares_solution_complex_and_tikhonov():
    g = torch.Generator().manual_seed(2)
    A = torch.randn(80, 36, generator=g, dtype=torch.complex128)
    op = MatrixOperator(A, (1, 6, 6))
    y = torch.randn(2, 80, generator=g, dtype=torch.complex128)
    x = classical.cg_sense(op, y, n_iter=80)
    ref = torch.linalg.lstsq(A, y.T).solution.T.reshape(2, 1, 6, 6)
    assert torch.allclose(x, ref, atol=1e-8)
    # Tikhonov: gamma = l2 * ||A||^2 with the same deterministic norm estimate.
    l2 = 0.05
    gamma = l2 * op.norm(dtype=torch.complex128) ** 2
    M = A.conj().T @ A + gamma * torch.eye(36, dtype=A.dtype)
    ref = torch.linalg.solve(M, A.conj().T @ y.T).T.reshape(2, 1, 6, 6)
    x = classical.cg_sense(op, y, n_iter=80, l2=l2)
    assert torch.allclose(x, ref, atol=1e-8)


def test_sirt_decreases_weighted_residual_monotonically():
    op = ct_matrix_op(16, 12)
    x_true = phantom(16)
    y = op(x_true)
    R, _ = ct_mod._sirt_weights(op, y)
    res = []
    classical.sirt(op, y, n_iter=40, nonneg=False, callback=lambda k, x: res.append(float((R * (y - op(x)) ** 2).sum())))
    assert all(b <= a * (1 + 1e-12) for a, b in zip(res, res[1:], strict=False))
    assert res[-1] < 0.05 * res[0]
    # With the non-negativity projection the plain residual still falls steadily.
    plain = []
    classical.sirt(op, y, n_iter=40, nonneg=True, callback=lambda k, x: plain.append(float(torch.linalg.vector_norm(y - op(x)))))
    assert all(b <= a * (1 + 1e-9) for a, b in zip(plain[::5], plain[5::5], strict=False))


def test_sirt_rejects_operators_with_negative_entries():
    A = torch.randn(20, 16, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    op = MatrixOperator(A, (1, 4, 4))
    with pytest.raises(ValueError, match="non-negative"):
        classical.sirt(op, torch.zeros(1, 20, dtype=torch.float64), n_iter=2)


# --- TV by PDHG ---------------------------------------------------------------------------------------


def test_tv_pdhg_objective_decreases_and_approaches_optimum():
    op = ct_matrix_op(16, 20)
    x_true = phantom(16)
    y = op(x_true) + 0.5 * torch.randn(op(x_true).shape, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    lam = 2.0
    objs: dict[int, float] = {}
    checkpoints = {0, 10, 50, 150, 299}

    def cb(k, x):
        if k in checkpoints:
            objs[k] = float(tv_objective(op, x, y, lam))

    x = classical.tv_pdhg(op, y, weight=lam, absolute_weight=True, n_iter=300, nonneg=True, callback=cb)
    seq = [objs[k] for k in sorted(objs)]
    assert all(b <= a * (1 + 1e-4) for a, b in zip(seq, seq[1:], strict=False)), seq
    # Against a long run: the 300-iteration objective is within 0.1 % of the 1000-iteration one.
    x_long = classical.tv_pdhg(op, y, weight=lam, absolute_weight=True, n_iter=1000, nonneg=True)
    f_long = float(tv_objective(op, x_long, y, lam))
    assert seq[-1] <= f_long * 1.001
    assert (x >= 0).all()


def test_tv_pdhg_beats_least_squares_on_piecewise_constant_phantom_matrix():
    # 12 views of a 24x24 image: under-determined; the min-norm LS solution streaks, while
    # exact data and a small TV weight recover the piecewise-constant image (~48 dB vs ~26 dB).
    op = ct_matrix_op(24, 12)
    x_true = phantom(24)
    y = op(x_true)
    x_ls = op.pinv(y)
    x_tv = classical.tv_pdhg(op, y, weight=1e-4, n_iter=500, x0=x_ls)
    assert psnr(x_tv[0, 0], x_true[0, 0], data_range=2.0) > psnr(x_ls[0, 0], x_true[0, 0], data_range=2.0) + 15


def test_tv_pdhg_relative_weight_is_scale_invariant():
    op = ct_matrix_op(16, 10)
    x_true = phantom(16)
    y = op(x_true)
    x1 = classical.tv_pdhg(op, y, weight=0.01, n_iter=100)
    # Scaling the images by 1000 (e.g. 1/mm -> another unit) and the operator by 3 (pixel size).
    op3 = MatrixOperator(3.0 * op.matrix, op.domain_shape, op.range_shape)
    x2 = classical.tv_pdhg(op3, 3000.0 * y, weight=0.01, n_iter=100)
    assert torch.allclose(x2 / 1000.0, x1, atol=1e-9, rtol=1e-6)


def test_batches_are_independent_and_deterministic():
    op = ct_matrix_op(16, 8)
    x_true = torch.cat([phantom(16), 0.5 * phantom(16).flip(-1)])
    y = op(x_true)
    for fn in (
        lambda yy: classical.sirt(op, yy, n_iter=20),
        lambda yy: classical.cgls(op, yy, n_iter=10),
        lambda yy: classical.tv_pdhg(op, yy, n_iter=30),
    ):
        xb = fn(y)
        x0 = fn(y[:1])
        x1 = fn(y[1:])
        assert torch.allclose(xb, torch.cat([x0, x1]), atol=1e-10)
        assert torch.equal(fn(y), xb)


def test_bad_input_raises_value_error():
    op = ct_matrix_op(16, 8)
    with pytest.raises(ValueError):
        classical.sirt(op, torch.zeros(1, 3, 5, dtype=torch.float64))
    with pytest.raises(ValueError):
        classical.tv_pdhg(op, torch.full((1, *op.range_shape), float("nan"), dtype=torch.float64))
    with pytest.raises(ValueError):
        classical.tv_pdhg(op, torch.zeros((1, *op.range_shape), dtype=torch.float64), weight=-1.0)
    cop = MatrixOperator(torch.randn(10, 16, dtype=torch.complex128), (1, 4, 4))
    with pytest.raises(ValueError, match="complex"):
        classical.cgls(cop, torch.zeros(1, 10, dtype=torch.complex128))
    with pytest.raises(ValueError, match="complex"):
        classical.cg_sense(op, torch.zeros((1, *op.range_shape), dtype=torch.float64))


# --- real operators when importable -------------------------------------------------------------------


def _parallel_beam(n: int, n_views: int):
    radon = pytest.importorskip("operators.radon")
    angles = np.linspace(0, np.pi, n_views, endpoint=False)
    return radon.ParallelBeam(n, angles)


def test_tv_beats_fbp_on_piecewise_constant_phantom_30_views_parallel_beam():
    n = 64
    op = _parallel_beam(n, 30)
    x_true = phantom(n, torch.float32) * 0.02  # ~water attenuation in 1/mm
    y = op(x_true)
    x_fbp = classical.fbp(op, y)
    x_tv = classical.tv_pdhg(op, y, n_iter=300)
    p_fbp = psnr(x_fbp[0, 0], x_true[0, 0], data_range=0.04)
    p_tv = psnr(x_tv[0, 0], x_true[0, 0], data_range=0.04)
    assert p_tv > p_fbp + 3, (p_tv, p_fbp)
    # SIRT and CGLS also work on the real operator and reduce the residual.
    for x in (classical.sirt(op, y, n_iter=50), classical.cgls(op, y, n_iter=10)):
        assert torch.linalg.vector_norm(op(x) - y) < 0.2 * torch.linalg.vector_norm(y)


def _coil_maps(n_coils: int, n: int) -> torch.Tensor:
    c = torch.linspace(-1, 1, n, dtype=torch.float64)
    yy, xx = torch.meshgrid(c, c, indexing="ij")
    maps = []
    for k in range(n_coils):
        a = 2 * math.pi * k / n_coils
        mag = torch.exp(-((xx - 1.2 * math.cos(a)) ** 2 + (yy - 1.2 * math.sin(a)) ** 2))
        maps.append(mag * torch.exp(1j * (xx * math.cos(a) + yy * math.sin(a))))
    m = torch.stack(maps)
    return m / (m.abs() ** 2).sum(0, keepdim=True).sqrt()


def test_cg_sense_full_mask_reproduces_image():
    fourier = pytest.importorskip("operators.fourier")
    n = 32
    op = fourier.CartesianFourier(torch.ones(n, n, dtype=torch.bool), coil_maps=_coil_maps(4, n))
    x_true = phantom(n).to(torch.complex128) * torch.exp(1j * 0.3 * phantom(n))
    x = classical.cg_sense(op, op(x_true), n_iter=10)
    assert torch.allclose(x, x_true, atol=1e-8)
    assert torch.allclose(classical.zero_filled(op, op(x_true)), x_true, atol=1e-8)


def test_cs_tv_beats_zero_filled_on_phantom():
    fourier = pytest.importorskip("operators.fourier")
    n = 64
    cols = torch.zeros(n, dtype=torch.bool)
    cols[::4] = True
    cols[n // 2 - 4 : n // 2 + 4] = True
    op = fourier.CartesianFourier(cols, image_shape=(n, n))
    x_true = phantom(n).to(torch.complex128)
    y = op(x_true)
    zf = classical.zero_filled(op, y)
    cs = classical.cs_tv(op, y, n_iter=300)
    p_zf = psnr(zf.abs()[0, 0], x_true.abs()[0, 0], data_range=2.0)
    p_cs = psnr(cs.abs()[0, 0], x_true.abs()[0, 0], data_range=2.0)
    assert p_cs > p_zf + 3, (p_cs, p_zf)
