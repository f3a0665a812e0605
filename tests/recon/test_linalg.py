"""Batched conjugate gradient against a direct solve."""

from __future__ import annotations

import pytest
import torch

from recon.linalg import batch_dot, conjugate_gradient


def _spd_batch(b: int, n: int, dtype: torch.dtype, gen: torch.Generator) -> torch.Tensor:
    """``[B, n, n]`` Hermitian positive-definite matrices with condition number ~ 10-100."""
    if dtype.is_complex:
        m = torch.complex(torch.randn(b, n, n, generator=gen, dtype=torch.float64),
                          torch.randn(b, n, n, generator=gen, dtype=torch.float64)).to(dtype)
    else:
        m = torch.randn(b, n, n, generator=gen, dtype=dtype)
    return m @ m.mH / n + 0.1 * torch.eye(n, dtype=dtype)


def _rand(shape, dtype, gen):
    if dtype.is_complex:
        return torch.complex(torch.randn(shape, generator=gen, dtype=torch.float64),
                             torch.randn(shape, generator=gen, dtype=torch.float64)).to(dtype)
    return torch.randn(shape, generator=gen, dtype=dtype)


@pytest.mark.parametrize("dtype", [torch.float64, torch.complex128])
def test_cg_matches_direct_solve(dtype):
    gen = torch.Generator().manual_seed(0)
    B, n = 4, 12
    mats = _spd_batch(B, n, dtype, gen)
    b = _rand((B, 1, 3, 4), dtype, gen)  # image-shaped items: n = 1*3*4

    def apply_A(x):
        return (mats @ x.reshape(B, n, 1)).reshape(x.shape)

    x = conjugate_gradient(apply_A, b, None, n_iter=n * 4)
    direct = torch.linalg.solve(mats, b.reshape(B, n, 1)).reshape(b.shape)
    assert torch.allclose(x, direct, rtol=1e-8, atol=1e-8)


def test_cg_float32_and_x0():
    gen = torch.Generator().manual_seed(1)
    B, n = 3, 10
    mats = _spd_batch(B, n, torch.float64, gen)
    b = _rand((B, n), torch.float64, gen)
    x0 = _rand((B, n), torch.float64, gen)
    direct = torch.linalg.solve(mats, b.unsqueeze(-1)).squeeze(-1)
    m32 = mats.float()
    x = conjugate_gradient(lambda v: (m32 @ v.unsqueeze(-1)).squeeze(-1), b.float(), x0.float(), n_iter=60)
    assert x.dtype == torch.float32
    assert torch.allclose(x.double(), direct, rtol=1e-3, atol=1e-3)


def test_cg_items_are_independent_and_tol_stops():
    gen = torch.Generator().manual_seed(2)
    B, n = 3, 8
    mats = _spd_batch(B, n, torch.float64, gen)
    b = _rand((B, n), torch.float64, gen)
    b[1] = 0.0  # an exactly solved item must not produce NaN or disturb the others
    calls = []

    def apply_A(v):
        calls.append(1)
        return (mats @ v.unsqueeze(-1)).squeeze(-1)

    x = conjugate_gradient(apply_A, b, None, n_iter=200, tol=1e-10)
    assert torch.isfinite(x).all()
    assert torch.equal(x[1], torch.zeros(n, dtype=torch.float64))
    res = (b - apply_A(x)).norm(dim=1) / b.norm(dim=1).clamp_min(1e-300)
    assert (res[[0, 2]] < 1e-9).all()
    assert len(calls) < 200  # stopped early once every item converged
    # Batched result equals each item solved alone.
    x_single = conjugate_gradient(lambda v: (mats[2:3] @ v.unsqueeze(-1)).squeeze(-1), b[2:3], None, n_iter=200, tol=1e-10)
    assert torch.allclose(x[2:3], x_single, atol=1e-10)


def test_cg_singular_normal_equations_min_distance_to_x0():
    """Under-determined A: CG on A^T A x = A^T y from x0 converges to the solution closest to x0."""
    gen = torch.Generator().manual_seed(3)
    m, n = 5, 12
    A = torch.randn(m, n, generator=gen, dtype=torch.float64)
    y = torch.randn(2, m, generator=gen, dtype=torch.float64)
    x0 = torch.randn(2, n, generator=gen, dtype=torch.float64)
    x = conjugate_gradient(lambda v: v @ A.T @ A, y @ A, x0, n_iter=50, tol=1e-12)
    expected = x0 + (y - x0 @ A.T) @ torch.linalg.pinv(A).T
    assert torch.allclose(x, expected, atol=1e-8)


def test_batch_dot_complex_is_real_euclidean():
    a = torch.tensor([[1 + 2j, 3 - 1j]], dtype=torch.complex128)
    b = torch.tensor([[2 - 1j, 1j]], dtype=torch.complex128)
    # Re sum(conj(a) b) = sum(Re a Re b + Im a Im b)
    assert batch_dot(a, b).item() == pytest.approx(1 * 2 + 2 * -1 + 3 * 0 + -1 * 1)


def test_cg_zero_iterations_returns_x0():
    x0 = torch.ones(2, 3)
    assert torch.equal(conjugate_gradient(lambda v: v, torch.zeros(2, 3), x0, n_iter=0), x0)


def test_z_laplacian_is_dz_transpose_dz_and_psd():
    from recon.linalg import z_laplacian

    g = torch.Generator().manual_seed(3)
    x = torch.randn(2, 5, 1, 3, 4, generator=g, dtype=torch.float64)  # 2 volumes of 5 slices
    n = 5
    D = torch.zeros(n - 1, n, dtype=torch.float64)
    D[torch.arange(n - 1), torch.arange(n - 1)] = -1.0
    D[torch.arange(n - 1), torch.arange(1, n)] = 1.0
    expected = torch.einsum("ij,vj...->vi...", D.T @ D, x)
    assert torch.allclose(z_laplacian(x), expected)
    assert float((x * z_laplacian(x)).sum()) >= 0
    constant = x[:, :1].expand_as(x).clone()
    assert torch.allclose(z_laplacian(constant), torch.zeros_like(x))
    assert torch.equal(z_laplacian(x[:, :1]), torch.zeros_like(x[:, :1]))
