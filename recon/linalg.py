"""Batched linear algebra shared by the posterior samplers and the classical solvers.

Every routine works on a batch of independent problems stored along dimension 0: inner products,
step sizes and stopping tests are computed per item, so one item converging (or being exactly
zero) never changes the iterates of another.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

__all__ = ["batch_dot", "batch_norm", "conjugate_gradient", "z_laplacian"]


def batch_dot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-item real inner product ``Re <a, b> = Re sum(conj(a) * b)``.

    Args:
        a, b: tensors of the same shape ``[B, ...]``, real or complex.

    Returns:
        Real tensor ``[B]``. The real part is what CG needs for Hermitian systems: for a Hermitian
        PSD operator ``<p, A p>`` and ``<r, r>`` are real, and the real part of a complex inner
        product is the Euclidean inner product of the stacked (real, imag) vectors.
    """
    prod = a.conj() * b if a.is_complex() else a * b
    if prod.is_complex():
        prod = prod.real
    return prod.reshape(prod.shape[0], -1).sum(dim=1)


def batch_norm(a: torch.Tensor) -> torch.Tensor:
    """Per-item Euclidean norm, real tensor ``[B]``."""
    return batch_dot(a, a).clamp_min(0).sqrt()


def _bcast(v: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Reshape a per-item ``[B]`` vector to broadcast against ``like`` (``[B, ...]``)."""
    return v.view(-1, *([1] * (like.ndim - 1))).to(like.real.dtype if like.is_complex() else like.dtype)


def conjugate_gradient(
    apply_A: Callable[[torch.Tensor], torch.Tensor],
    b: torch.Tensor,
    x0: torch.Tensor | None = None,
    n_iter: int = 10,
    tol: float | None = None,
) -> torch.Tensor:
    """Solve ``A x = b`` for a batch of Hermitian positive (semi-)definite systems by CG.

    Hestenes-Stiefel conjugate gradients, one independent system per batch item. ``apply_A`` must
    act item-wise (item ``i`` of the output depends only on item ``i`` of the input), as every
    operator's ``normal`` and ``normal + gamma * I`` do.

    Args:
        apply_A: ``x -> A x`` on tensors of shape ``[B, ...]`` (real or complex), Hermitian PSD per item.
        b: right-hand side ``[B, ...]``, same shape/dtype as ``x``.
        x0: initial guess ``[B, ...]``; ``None`` starts from zero. Starting from a good estimate
            (a denoised image in DDS) and running few iterations is how CG acts as a regulariser:
            it moves ``x0`` only within the Krylov space of the data misfit.
        n_iter: maximum number of iterations (each costs one ``apply_A``). ``0`` returns ``x0``.
        tol: optional relative residual tolerance ``||b - A x_k|| <= tol * ||b||``, per item.
            Converged items are frozen (their step size is set to zero) and the loop ends early once
            every item has converged. ``None`` runs ``n_iter`` iterations unless an item reaches the
            round-off floor (residual below ``100 eps`` relative to its start or to ``||b||``).

    Returns:
        ``x`` of the same shape and dtype as ``b``.

    Items whose search direction has zero curvature (``<p, A p> = 0``, e.g. an exactly solved
    system, or a direction in the null space of a singular ``A``) take a zero step instead of
    dividing by zero, so singular normal equations (under-determined ``A^H A``) are safe: CG started
    from ``x0`` then converges to the solution closest to ``x0``.
    """
    if n_iter < 0:
        raise ValueError(f"conjugate_gradient: n_iter must be >= 0, got {n_iter}")
    x = torch.zeros_like(b) if x0 is None else x0.clone()
    if n_iter == 0:
        return x
    r = b - apply_A(x) if x0 is not None else b.clone()
    p = r.clone()
    rr = batch_dot(r, r)
    real_dtype = rr.dtype
    tiny = torch.finfo(real_dtype).tiny
    # Round-off floor: once the residual has fallen by ~1/(100 eps) of its start (or of ||b||), further
    # steps divide round-off by round-off; on singular systems (normal equations of an
    # under-determined A) that would blow the iterate up, so such items stop.
    floor = (100 * torch.finfo(real_dtype).eps) ** 2 * torch.maximum(rr, batch_dot(b, b))
    thresh = floor if tol is None else torch.maximum(floor, (tol**2) * batch_dot(b, b))
    active = rr > thresh
    for _ in range(n_iter):
        if not bool(active.any()):
            break
        Ap = apply_A(p)
        pAp = batch_dot(p, Ap)
        ok = active & (pAp > tiny) & (rr > 0)
        alpha = torch.where(ok, rr / torch.where(ok, pAp, torch.ones_like(pAp)), torch.zeros_like(rr))
        a = _bcast(alpha, x)
        x = x + a * p
        r = r - a * Ap
        rr_new = batch_dot(r, r)
        beta = torch.where(ok, rr_new / torch.where(ok, rr, torch.ones_like(rr)), torch.zeros_like(rr))
        p = r + _bcast(beta, p) * p
        # Items that took no step keep their residual; only stepped items update it.
        rr = torch.where(ok, rr_new, rr)
        active = ok & (rr > thresh)
    return x


def z_laplacian(x: torch.Tensor) -> torch.Tensor:
    """``D_z^T D_z x`` for stacks of slices ``x [V, n, ...]`` (``V`` volumes of ``n`` contiguous slices).

    ``D_z`` is the forward difference along dimension 1 with Neumann boundaries (``n - 1``
    differences), so ``<x, z_laplacian(x)> = ||D_z x||^2 >= 0`` and the operator is symmetric
    positive semi-definite with norm ``<= 4``; a stack that is constant along z is in its null space.
    """
    if x.shape[1] < 2:
        return torch.zeros_like(x)
    d = x[:, 1:] - x[:, :-1]  # [V, n - 1, ...]
    out = torch.zeros_like(x)
    out[:, :-1] -= d
    out[:, 1:] += d
    return out
