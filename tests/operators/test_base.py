"""LinearOperator: the operator norm by power iteration, and what an operator says it models."""

from __future__ import annotations

import math

import pytest
import torch

from operators import (
    CartesianFourier,
    FanBeam,
    MatrixOperator,
    ParallelBeam,
    ParallelGeometry,
    ScaledOperator,
    uniform_angles,
)
from operators.base import NORM_ITERATIONS


def _with_spectrum(s: torch.Tensor, m: int, n: int, dtype: torch.dtype, seed: int) -> torch.Tensor:
    """An ``[m, n]`` matrix with singular values ``s`` and random singular vectors."""
    g = torch.Generator().manual_seed(seed)
    u, _ = torch.linalg.qr(torch.randn(m, len(s), generator=g, dtype=dtype))
    v, _ = torch.linalg.qr(torch.randn(n, len(s), generator=g, dtype=dtype))
    return u @ torch.diag(s.to(dtype)) @ v.mH


@pytest.mark.parametrize("dtype", [torch.float64, torch.complex128])
def test_norm_is_largest_singular_value_of_a_matrix(dtype):
    g = torch.Generator().manual_seed(0)
    a = torch.randn(40, 30, generator=g, dtype=dtype)
    op = MatrixOperator(a, (1, 5, 6))
    sigma_max = float(torch.linalg.matrix_norm(a, ord=2))
    est = op.norm(dtype=dtype)
    assert est == pytest.approx(sigma_max, rel=1e-3)
    assert est <= sigma_max * (1 + 1e-12)  # power iteration approaches from below


def test_norm_converges_at_the_power_iteration_rate():
    """With singular values 2, 1.6, ...: the error of ``sqrt(||A^H A v||)`` falls like (1.6/2)^(2k)."""
    s = torch.tensor([2.0, 1.6, 1.0, 0.5, 0.1])
    op = MatrixOperator(_with_spectrum(s, 12, 9, torch.float64, seed=1), (1, 3, 3))
    assert op.norm(dtype=torch.float64) == pytest.approx(2.0, rel=1e-5)
    assert op.norm(dtype=torch.float64, n_iter=1) < 2.0 - 1e-3


def test_norm_of_zero_and_scaled_operators():
    zero = MatrixOperator(torch.zeros(6, 4, dtype=torch.float64), (1, 2, 2))
    assert zero.norm(dtype=torch.float64) == 0.0
    op = MatrixOperator(torch.randn(8, 6, generator=torch.Generator().manual_seed(2), dtype=torch.float64), (1, 2, 3))
    assert ScaledOperator(op, -3.0).norm(dtype=torch.float64) == pytest.approx(3.0 * op.norm(dtype=torch.float64), rel=1e-9)


def test_parallel_beam_norm_is_deterministic_and_cached():
    op = ParallelBeam(48, uniform_angles(20), pixel_size_mm=1.5)
    first = op.norm()
    assert op.norm() == first
    assert ParallelBeam(48, uniform_angles(20), pixel_size_mm=1.5).norm() == first  # fixed-seed start
    # More iterations change the converged estimate by far less than the 2 % PDHG step-size margin.
    assert op.norm(n_iter=3 * NORM_ITERATIONS) == pytest.approx(first, rel=1e-4)
    # ||A||^2 bounds the Rayleigh quotient of any image
    x = torch.rand(1, *op.domain_shape)
    assert float((op(x) ** 2).sum() / (x**2).sum()) <= first**2 * (1 + 1e-5)


def test_fourier_norm_is_one_for_orthonormal_sampling():
    mask = torch.zeros(16, 16, dtype=torch.bool)
    mask[:, ::2] = True
    assert CartesianFourier(mask).norm() == pytest.approx(1.0, rel=1e-5)


def test_modality_and_geometry_belong_to_the_operator():
    par = ParallelBeam(16, uniform_angles(7))
    fan = FanBeam(16, uniform_angles(9, 2 * math.pi), source_origin_mm=60.0, origin_detector_mm=30.0)
    mr = CartesianFourier(torch.ones(16, 16, dtype=torch.bool))
    mat = MatrixOperator(torch.eye(4), (1, 2, 2))
    assert (par.modality, fan.modality, mr.modality, mat.modality) == ("ct", "ct", "mr", None)
    assert isinstance(par.geometry, ParallelGeometry) and par.geometry.n_angles == 7
    assert fan.geometry.n_angles == 9
    assert mr.geometry is None and mat.geometry is None
    wrapped = ScaledOperator(par, 2.0)
    assert wrapped.modality == "ct" and wrapped.geometry is par.geometry
