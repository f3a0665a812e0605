"""3D TV, the volume mode of recon.classical.tv_pdhg / cs_tv, on small problems: dense matrices and
small parallel-beam and Fourier operators."""

from __future__ import annotations

import math

import pytest
import torch

from operators.base import LinearOperator, MatrixOperator
from recon import classical
from recon.classical.tv import div, grad, grad_norm_sq_bound, image_scale, tv_norm, tv_objective
from recon.metrics import psnr
from tests.recon.test_classical import ct_matrix_op, phantom

pytestmark = pytest.mark.usefixtures("one_thread")


def phantom_stack(n: int, n_slices: int, dtype=torch.float64) -> torch.Tensor:
    """Piecewise-constant volume ``[n_slices, 1, n, n]`` whose structures change slowly along z:
    a disc with an insert that grows and drifts from slice to slice."""
    c = (torch.arange(n, dtype=dtype) - (n - 1) / 2) / (n / 2)
    yy, xx = torch.meshgrid(c, c, indexing="ij")
    vol = torch.zeros(n_slices, 1, n, n, dtype=dtype)
    for b in range(n_slices):
        t = b / max(n_slices - 1, 1)
        img = vol[b, 0]
        img[xx**2 + yy**2 < 0.8**2] = 1.0
        img[(xx - 0.2 - 0.15 * t) ** 2 + (yy + 0.1) ** 2 < (0.15 + 0.1 * t) ** 2] = 2.0
        img[(xx + 0.35).abs().lt(0.15) & (yy - 0.25).abs().lt(0.1 + 0.05 * t)] = 0.5
    return vol


def _mean_psnr(x: torch.Tensor, ref: torch.Tensor) -> float:
    """Mean per-slice PSNR of magnitudes on the phantoms' range [0, 2]."""
    return float(psnr(x.abs(), ref.abs(), data_range=2.0).mean())


def _noisy(op: LinearOperator, x: torch.Tensor, rel_std: float, seed: int) -> torch.Tensor:
    """``op(x)`` plus Gaussian noise of ``rel_std`` times its largest value."""
    y = op(x)
    g = torch.Generator().manual_seed(seed)
    return y + rel_std * float(y.abs().max()) * torch.randn(y.shape, generator=g, dtype=y.dtype)


# --- finite differences ------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.float64, torch.complex128])
@pytest.mark.parametrize("z_ratio", [0.35, 2.5])
def test_3d_divergence_is_negative_adjoint_of_gradient(dtype, z_ratio):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(5, 1, 7, 9, generator=g, dtype=dtype)
    p = torch.randn(5, 3, 1, 7, 9, generator=g, dtype=dtype)
    lhs = torch.vdot(grad(x, z_ratio).flatten(), p.flatten())
    rhs = -torch.vdot(x.flatten(), div(p, z_ratio).flatten())
    assert abs(complex(lhs - rhs)) < 1e-10 * abs(complex(lhs))
    # ||grad||^2 <= 8 + 4 z_ratio^2, and the bound is nearly attained (checkerboard in x, y, z).
    v = torch.randn(6, 1, 12, 12, generator=g, dtype=dtype)
    for _ in range(200):
        v = -div(grad(v, z_ratio), z_ratio)
        v = v / torch.linalg.vector_norm(v)
    top = float(torch.linalg.vector_norm(-div(grad(v, z_ratio), z_ratio)))
    assert grad_norm_sq_bound(z_ratio) * 0.9 < top <= grad_norm_sq_bound(z_ratio) + 1e-9


def test_3d_gradient_layout_and_z_differences():
    x = torch.arange(3.0, dtype=torch.float64).reshape(3, 1, 1, 1).expand(3, 1, 2, 2).contiguous()
    g = grad(x, 0.5)
    assert g.shape == (3, 3, 1, 2, 2)
    assert torch.equal(g[:, :2], grad(x))  # in-plane parts are the 2D gradient
    assert torch.equal(g[:, 2, 0, 0, 0], torch.tensor([0.5, 0.5, 0.0], dtype=torch.float64))  # Neumann at the end
    # tv_norm per slice sums to the volume's TV: here 4 voxels x 0.5 in each of 2 slices
    assert torch.allclose(tv_norm(x, 0.5), torch.tensor([2.0, 2.0, 0.0], dtype=torch.float64))
    with pytest.raises(ValueError, match="shape"):
        div(g)  # a 3D field with the 2D divergence


# --- the solver ---------------------------------------------------------------------------------------


def _max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max())


def test_z_constant_volume_gives_the_2d_result():
    # Only the step sizes differ (||K|| grows with z_ratio), so the two runs agree to within the
    # solver's own remaining error, taken as what doubling the 2D run still changes.
    op = ct_matrix_op(16, 12)
    y1 = _noisy(op, phantom(16), 0.02, seed=1)
    y = y1.expand(4, *y1.shape[1:]).contiguous()
    x2d = classical.tv_pdhg(op, y1, weight=3e-3, n_iter=500)
    x2d_long = classical.tv_pdhg(op, y1, weight=3e-3, n_iter=1000)
    x3d = classical.tv_pdhg(op, y, weight=3e-3, n_iter=500, volume=True, z_ratio=0.6)
    assert _max_diff(x3d, x3d[:1].expand_as(x3d)) == 0.0
    assert _max_diff(x3d[:1], x2d) < 0.5 * _max_diff(x2d_long, x2d)


def test_3d_objective_decreases_and_converges():
    op = ct_matrix_op(16, 10)
    x_true = phantom_stack(16, 5)
    y = _noisy(op, x_true, 0.02, seed=2)
    lam, zr = 2.0, 0.7
    objs: dict[int, float] = {}
    checkpoints = {0, 10, 50, 150, 399}

    def cb(k, x):
        if k in checkpoints:
            objs[k] = float(tv_objective(op, x, y, lam, z_ratio=zr).sum())

    kw = dict(weight=lam, absolute_weight=True, nonneg=True, volume=True, z_ratio=zr)
    classical.tv_pdhg(op, y, n_iter=400, callback=cb, **kw)
    seq = [objs[k] for k in sorted(objs)]
    assert all(b <= a * (1 + 1e-4) for a, b in zip(seq, seq[1:], strict=False)), seq
    x_long = classical.tv_pdhg(op, y, n_iter=1000, **kw)
    f_long = float(tv_objective(op, x_long, y, lam, z_ratio=zr).sum())
    assert seq[-1] <= f_long * 1.001


def test_3d_tv_beats_2d_tv_on_noisy_stack_at_sparse_views():
    # 8 parallel-beam views of a 32x32 stack whose structures drift slowly along z, noise of 3 % of
    # the largest line integral: the z term pools the noise of neighbouring slices (the view
    # streaks, the same in every slice, it cannot remove). Each method at its best weight of one grid.
    radon = pytest.importorskip("operators.radon")
    op = radon.ParallelBeam(32, [math.pi * k / 8 for k in range(8)])
    x_true = phantom_stack(32, 6, torch.float32)
    y = _noisy(op, x_true, 0.03, seed=3)

    def best_psnr(**kw) -> float:
        return max(_mean_psnr(classical.tv_pdhg(op, y, weight=w, n_iter=150, **kw), x_true) for w in (3e-3, 1e-2))

    p2 = best_psnr()
    p3 = best_psnr(volume=True, z_ratio=1.0)
    assert p3 > p2 + 0.5, (p3, p2)


def test_cs_tv_volume_complex():
    fourier = pytest.importorskip("operators.fourier")
    n, nz = 32, 4
    cols = torch.zeros(n, dtype=torch.bool)
    cols[::4] = True
    cols[n // 2 - 3 : n // 2 + 3] = True
    op = fourier.CartesianFourier(cols, image_shape=(n, n))
    mag = phantom_stack(n, nz)
    x_true = mag * torch.exp(1j * 0.3 * mag)
    y = op(x_true)
    x3 = classical.cs_tv(op, y, n_iter=200, volume=True, z_ratio=0.5)
    assert x3.shape == x_true.shape and x3.is_complex()
    zf = classical.zero_filled(op, y)
    assert _mean_psnr(x3, mag) > _mean_psnr(zf, mag) + 3
    # a z-constant complex volume reproduces the slice-wise result (as in the CT test above)
    y1 = y[:1].expand(nz, *y.shape[1:]).contiguous()
    x2d = classical.cs_tv(op, y[:1], n_iter=200)
    x2d_long = classical.cs_tv(op, y[:1], n_iter=400)
    x3d = classical.cs_tv(op, y1, n_iter=200, volume=True, z_ratio=0.5)
    assert _max_diff(x3d[1:], x3d[:1].expand_as(x3d[1:])) == 0.0
    assert _max_diff(x3d[:1], x2d) < 0.5 * _max_diff(x2d_long, x2d)


def test_volume_shares_one_scale_and_data_weight_normalisation():
    y = torch.rand(3, 1, 4, 5, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    y[1] += 2.0  # a more attenuating slice
    w = classical.transmission_weights(y, volume=True)
    assert math.isclose(float(w.log().mean()), 0.0, abs_tol=1e-12)
    assert float(w[1].mean()) < float(w[0].mean())  # noisier rays count less, against one TV weight
    w_slices = classical.transmission_weights(y)
    assert torch.allclose(w_slices.log().mean(dim=(1, 2, 3)), torch.zeros(3, dtype=torch.float64), atol=1e-12)


def test_image_scale_is_the_quantile_and_takes_large_volumes():
    x = torch.randn(3, 1, 7, 9, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    ref = torch.quantile(x.abs().reshape(3, -1), 0.99, dim=1)
    assert torch.allclose(image_scale(x), ref, rtol=1e-6)
    # more voxels than torch.quantile accepts (2^24), e.g. 129 slices of 512x512
    big = torch.arange(2**24 + 1, dtype=torch.float32).reshape(1, 1, 1, -1)
    assert math.isclose(float(image_scale(big)), 0.99 * 2**24, rel_tol=1e-6)


def test_bad_volume_arguments_raise_value_error():
    op = ct_matrix_op(16, 8)
    y = op(phantom_stack(16, 3))
    for bad in (0.0, -1.0, float("nan"), float("inf"), "1", True):
        with pytest.raises(ValueError, match="z_ratio"):
            classical.tv_pdhg(op, y, n_iter=1, volume=True, z_ratio=bad)
    with pytest.raises(ValueError, match="volume=True"):
        classical.tv_pdhg(op, y, n_iter=1, z_ratio=0.5)
    with pytest.raises(ValueError, match="whole volume"):
        classical.tv_pdhg(op, y, weight=torch.tensor([1e-3, 2e-3, 3e-3]), n_iter=1, volume=True)
    with pytest.raises(ValueError, match="geometry"):
        classical.tv_pdhg(op, y, n_iter=1, volume=True, slice_spacing_mm=2.0)
    with pytest.raises(ValueError, match="z_ratio"):
        classical.cs_tv(MatrixOperator(torch.eye(16, dtype=torch.complex128), (1, 4, 4)),
                        torch.zeros(2, 16, dtype=torch.complex128), n_iter=1, volume=True, z_ratio=-2.0)


def test_volume_options_flow_through_the_api():
    # recon.api forwards a method's options to it as keywords (_classical_solution)
    radon = pytest.importorskip("operators.radon")
    from recon.api import _classical_solution, method_options

    assert {"volume", "z_ratio", "slice_spacing_mm"} <= set(method_options("tv"))
    assert {"volume", "z_ratio"} <= set(method_options("cs_tv"))
    op = radon.ParallelBeam(32, [math.pi * k / 8 for k in range(8)], pixel_size_mm=0.8)
    y = op(0.02 * phantom_stack(32, 3, torch.float32))
    u, kwargs = _classical_solution("tv", y, op, None, {"volume": True, "slice_spacing_mm": 2.0, "n_iter": 20})
    assert kwargs["volume"] and kwargs["slice_spacing_mm"] == 2.0
    assert torch.equal(u, classical.tv_pdhg(op, y, n_iter=20, volume=True, z_ratio=0.4))
    with pytest.raises(ValueError, match="slice_spacing_mm"):
        _classical_solution("tv", y, op, None, {"volume": True, "slice_spacing_mm": -1.0})
    with pytest.raises(ValueError, match="not both"):
        _classical_solution("tv", y, op, None, {"volume": True, "slice_spacing_mm": 2.0, "z_ratio": 0.4})
