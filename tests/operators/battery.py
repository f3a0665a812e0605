"""The property battery every operator must pass: one battery over every operator.

Call :func:`check_operator` from a parametrised test, once per operator x backend x dtype.
"""

from __future__ import annotations

import torch

from operators.base import LinearOperator

DOT_TOL = {torch.float64: 1e-5, torch.float32: 1e-4}


def _rand(shape, dtype, complex_: bool, gen: torch.Generator) -> torch.Tensor:
    if complex_:
        real = torch.randn(shape, generator=gen, dtype=dtype)
        imag = torch.randn(shape, generator=gen, dtype=dtype)
        return torch.complex(real, imag)
    return torch.randn(shape, generator=gen, dtype=dtype)


def _inner(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return (a.conj() * b).sum().real if a.is_complex() else (a * b).sum()


def dot_test_error(op: LinearOperator, dtype: torch.dtype, batch: int = 2, seed: int = 0) -> float:
    """Relative adjoint mismatch ``|<Ax,y> - <x,A^H y>| / (|Ax| |y|)``."""
    gen = torch.Generator().manual_seed(seed)
    x = _rand((batch, *op.domain_shape), dtype, op.domain_complex, gen)
    y = _rand((batch, *op.range_shape), dtype, op.range_complex, gen)
    ax = op(x)
    aty = op.adjoint(y)
    lhs = _inner(ax, y)
    rhs = _inner(x, aty)
    return float((lhs - rhs).abs() / (ax.norm() * y.norm()))


def check_operator(op: LinearOperator, dtype: torch.dtype, seed: int = 0) -> dict[str, float]:
    """Run the battery; assert each property and return the measured errors."""
    gen = torch.Generator().manual_seed(seed)
    tol = DOT_TOL[dtype]
    results: dict[str, float] = {}

    # dot test
    results["dot"] = dot_test_error(op, dtype, seed=seed)
    assert results["dot"] < tol, f"dot test {results['dot']:.2e} >= {tol:.0e}"

    # shapes and dtype
    x = _rand((3, *op.domain_shape), dtype, op.domain_complex, gen)
    ax = op(x)
    assert tuple(ax.shape) == (3, *op.range_shape)
    real_dtype = ax.real.dtype if ax.is_complex() else ax.dtype
    assert real_dtype == dtype, f"forward returned {ax.dtype} for {dtype} input"
    aty = op.adjoint(ax)
    assert tuple(aty.shape) == (3, *op.domain_shape)

    # linearity
    x2 = _rand((3, *op.domain_shape), dtype, op.domain_complex, gen)
    a, b = 0.7, -1.3
    lin = op(a * x + b * x2) - (a * op(x) + b * op(x2))
    results["linearity"] = float(lin.norm() / (abs(a) * ax.norm() + abs(b) * op(x2).norm()))
    assert results["linearity"] < 10 * tol

    # batch equals per item
    per_item = torch.cat([op(x[i : i + 1]) for i in range(x.shape[0])])
    results["batch"] = float((per_item - ax).norm() / ax.norm())
    assert results["batch"] < 10 * tol

    # autograd through forward equals the adjoint
    xg = x.clone().requires_grad_(True)
    y = _rand((3, *op.range_shape), dtype, op.range_complex, gen)
    loss = _inner(op(xg), y)
    (grad,) = torch.autograd.grad(loss, xg)
    expected = op.adjoint(y)
    results["autograd"] = float((grad - expected).norm() / expected.norm())
    assert results["autograd"] < 10 * tol, f"autograd differs from adjoint by {results['autograd']:.2e}"
    return results
