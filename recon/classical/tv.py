"""Total-variation machinery shared by CT and MRI: finite differences and the Chambolle-Pock
primal-dual loop for TV-regularised least squares.

The problem solved by :func:`pdhg_tv` is

    min_x  1/2 || A x - y ||_W^2  +  lam * TV(x)  (+ indicator{x >= 0} if nonneg)

with isotropic TV ``TV(x) = sum_pixels sqrt(|D_h x|^2 + |D_v x|^2)`` (forward differences,
Neumann boundary) and an optional diagonal data weighting ``W`` (e.g. photon counts for CT).
It is Algorithm 1 of Chambolle & Pock, "A first-order primal-dual algorithm for convex problems
with applications to imaging", J. Math. Imaging Vis. 40 (2011), with theta = 1 and
``K = [A; grad]``, ``F(Kx) = 1/2 ||Ax - y||_W^2 + lam ||grad x||_{2,1}``, ``G = indicator{x >= 0}``
(or 0).

Slices or a volume. By default a batch ``[B, C, H, W]`` is ``B`` independent 2D problems. In volume
mode (``z_ratio`` given) the batch axis is a contiguous stack of slices ordered along z and the TV
is 3D, ``sum_voxels sqrt(|D_h x|^2 + |D_v x|^2 + z_ratio^2 |D_z x|^2)``, with
``z_ratio = pixel_size_mm / slice_spacing_mm`` so that every difference is per mm (times the
pixel size); the whole volume is one problem with one weight and one intensity scale.

Scale awareness. The solver runs on a normalised problem: ``A_hat = A / ||A||`` and
``x_hat = x / s`` with ``s`` an intensity scale of the image (the 99th percentile of
``|pinv(y)|`` per item, or over the volume, unless given). In those units the regularisation
weight ``weight`` is dimensionless: it corresponds to ``lam = weight * ||A||^2 * s`` in the original
problem, so the same ``weight`` means the same thing for images in HU or 1/mm, for pixel sizes of
0.5 or 2 mm, and for any number of views. It also makes ``||K||`` depend only on the
finite-difference part (``||K||^2 <= 1 + 8`` in 2D, ``1 + 8 + 4 z_ratio^2`` in 3D), so step sizes
are well balanced whatever the units.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from operators.base import LinearOperator

__all__ = [
    "grad",
    "div",
    "grad_norm_sq_bound",
    "volume_z_ratio",
    "tv_norm",
    "pdhg_tv",
    "tv_objective",
]


# --- finite differences ----------------------------------------------------------------------------


def volume_z_ratio(volume: bool, z_ratio: float | None) -> float | None:
    """The ``z_ratio`` argument of :func:`grad` / :func:`pdhg_tv` for a user's ``volume`` switch.

    Args:
        volume: treat the batch as a contiguous z-stack.
        z_ratio: ``pixel_size_mm / slice_spacing_mm``; ``None`` in volume mode means isotropic
            voxels (1.0).

    Returns:
        ``None`` for independent 2D slices, else the checked ratio.

    Raises:
        ValueError: ``z_ratio`` not finite and > 0, or given without ``volume``.
    """
    if not volume:
        if z_ratio is not None:
            raise ValueError("z_ratio applies to volume reconstruction only; pass volume=True")
        return None
    r = 1.0 if z_ratio is None else z_ratio
    if isinstance(r, bool) or not isinstance(r, (int, float)) or not (math.isfinite(r) and r > 0):
        raise ValueError(f"z_ratio (pixel size / slice spacing) must be a finite number > 0, got {z_ratio!r}")
    return float(r)


def grad_norm_sq_bound(z_ratio: float | None = None) -> float:
    """Upper bound on ``||grad||^2`` for :func:`grad` (2D: ``z_ratio=None``).

    ``grad^H grad`` is the sum of one ``D^H D`` per axis and a 1D forward difference with a Neumann
    boundary has ``||D||^2 < 4``, so ``||grad||^2 <= 8`` in 2D and ``8 + 4 z_ratio^2`` in 3D.
    """
    return 8.0 if z_ratio is None else 8.0 + 4.0 * z_ratio**2


def grad(x: torch.Tensor, z_ratio: float | None = None) -> torch.Tensor:
    """Forward differences with Neumann boundary (the last difference along each axis is 0).

    Args:
        x: ``[B, C, H, W]`` (real or complex): ``B`` slices, or with ``z_ratio`` a z-stack.
        z_ratio: ``None``: in-plane differences only. A number: also differences along the batch
            axis (z), scaled by ``z_ratio = pixel_size_mm / slice_spacing_mm``.

    Returns:
        ``[B, 2, C, H, W]`` (index 0 = vertical ``x[i+1, j] - x[i, j]``, 1 = horizontal), or
        ``[B, 3, C, H, W]`` with index 2 = ``z_ratio * (x[b+1] - x[b])``.
    """
    # Written into one preallocated tensor: the loop is memory-bound, and padding / stacking
    # would copy every component twice more.
    g = x.new_zeros((x.shape[0], 2 if z_ratio is None else 3, *x.shape[1:]))
    torch.sub(x[..., 1:, :], x[..., :-1, :], out=g[:, 0, ..., :-1, :])
    torch.sub(x[..., :, 1:], x[..., :, :-1], out=g[:, 1, ..., :, :-1])
    if z_ratio is not None:
        gz = g[:-1, 2]
        torch.sub(x[1:], x[:-1], out=gz)
        gz.mul_(z_ratio)
    return g


def _add_backward_difference(d: torch.Tensor, p: torch.Tensor, dim: int, alpha: float = 1.0) -> None:
    """``d += alpha (p[i] - p[i-1])`` along ``dim``, with ``p[-1] = 0`` and the last entry of ``p`` ignored.

    The last entry is 0 for any ``p = grad x`` (Neumann boundary); ignoring it is what makes the
    divergence exactly ``-grad^H`` for every ``p``.
    """
    n = p.shape[dim]
    inner = p.narrow(dim, 0, n - 1)
    d.narrow(dim, 0, n - 1).add_(inner, alpha=alpha)
    d.narrow(dim, 1, n - 1).sub_(inner, alpha=alpha)


def div(p: torch.Tensor, z_ratio: float | None = None) -> torch.Tensor:
    """Discrete divergence, the negative adjoint of :func:`grad`: ``<grad x, p> = -<x, div p>``.

    Args:
        p: ``[B, 2, C, H, W]`` (2D) or ``[B, 3, C, H, W]`` (3D, with the same ``z_ratio`` as the
            gradient it pairs with).
        z_ratio: as for :func:`grad`.

    Returns:
        ``[B, C, H, W]``.
    """
    n_dir = 2 if z_ratio is None else 3
    if p.ndim != 5 or p.shape[1] != n_dir:
        raise ValueError(f"div: expected p of shape [B, {n_dir}, C, H, W], got {tuple(p.shape)}")
    d = torch.zeros_like(p[:, 0])
    _add_backward_difference(d, p[:, 0], dim=-2)
    _add_backward_difference(d, p[:, 1], dim=-1)
    if z_ratio is not None:
        _add_backward_difference(d, p[:, 2], dim=0, alpha=z_ratio)
    return d


def _pixel_norm(g: torch.Tensor) -> torch.Tensor:
    """Isotropic magnitude ``sqrt(sum_dir |g_dir|^2)`` of ``[B, D, C, H, W]`` -> ``[B, 1, C, H, W]``."""
    a = g.abs() if g.is_complex() else g
    return torch.sqrt((a * a).sum(dim=1, keepdim=True))


def tv_norm(x: torch.Tensor, z_ratio: float | None = None) -> torch.Tensor:
    """Isotropic total variation per item: ``[B, C, H, W]`` -> real ``[B]``.

    With ``z_ratio`` (a z-stack) item ``b`` holds the 3D TV of the voxels of slice ``b`` (its
    differences to slice ``b + 1`` included), so the sum over the batch is the volume's TV.
    """
    return _pixel_norm(grad(x, z_ratio)).reshape(x.shape[0], -1).sum(dim=1)


# --- Chambolle-Pock --------------------------------------------------------------------------------


def _bshape(v: torch.Tensor, ndim: int) -> torch.Tensor:
    return v.reshape(-1, *([1] * (ndim - 1)))


def image_scale(x: torch.Tensor, q: float = 0.99) -> torch.Tensor:
    """Per-item intensity scale: the ``q``-quantile of ``|x|``, floored at a tiny fraction of the
    maximum so an almost-empty image still gets a positive scale. Returns real ``[B]``."""
    a = x.abs().reshape(x.shape[0], -1).float()
    # The linear-interpolation quantile from two order statistics: torch.quantile refuses more
    # than 2^24 elements, fewer than a volume of 129 slices of 512x512 holds.
    pos = q * (a.shape[1] - 1)
    lo = math.floor(pos)
    v_lo = torch.kthvalue(a, lo + 1, dim=1).values
    v_hi = torch.kthvalue(a, min(lo + 2, a.shape[1]), dim=1).values
    s = torch.lerp(v_lo, v_hi, pos - lo)
    mx = a.max(dim=1).values
    s = torch.where(s > 1e-6 * mx, s, mx)
    return torch.where(s > 0, s, torch.ones_like(s)).to(x.real.dtype if x.is_complex() else x.dtype)


def _problem_scale(pinv: torch.Tensor, volume: bool) -> torch.Tensor:
    """Default intensity scale ``[B]``: per slice, or one value over the whole volume."""
    if not volume:
        return image_scale(pinv)
    return image_scale(pinv.reshape(1, -1)).expand(pinv.shape[0]).clone()


def tv_objective(
    op: LinearOperator,
    x: torch.Tensor,
    y: torch.Tensor,
    lam: float | torch.Tensor,
    data_weights: torch.Tensor | None = None,
    z_ratio: float | None = None,
) -> torch.Tensor:
    """``1/2 ||A x - y||_W^2 + lam TV(x)`` per item (real ``[B]``), in the original units.

    With ``z_ratio`` (a z-stack, 3D TV as in :func:`tv_norm`) the volume's objective is the sum.
    """
    r = op(x) - y
    r2 = (r.abs() ** 2) if r.is_complex() else r * r
    if data_weights is not None:
        r2 = r2 * data_weights
    lam_t = torch.as_tensor(lam, dtype=r2.dtype, device=r2.device).reshape(-1)
    return 0.5 * r2.reshape(r.shape[0], -1).sum(dim=1) + lam_t * tv_norm(x, z_ratio)


def _check_weight(weight: float | torch.Tensor, batch: int, volume: bool) -> torch.Tensor:
    """``weight`` as float64 ``[1]`` or ``[B]`` on the CPU; one value only for a volume."""
    w_t = torch.as_tensor(weight).detach().reshape(-1).to("cpu", torch.float64)
    allowed = (1,) if volume else (1, batch)
    if w_t.numel() not in allowed or not torch.isfinite(w_t).all() or (w_t < 0).any():
        what = "one finite number >= 0 for the whole volume" if volume else "a finite number >= 0 or one per batch item"
        raise ValueError(f"weight must be {what}, got {weight}")
    return w_t


def pdhg_tv(
    op: LinearOperator,
    y: torch.Tensor,
    weight: float | torch.Tensor,
    n_iter: int,
    *,
    nonneg: bool = False,
    x0: torch.Tensor | None = None,
    scale: torch.Tensor | float | None = None,
    absolute_weight: bool = False,
    data_weights: torch.Tensor | None = None,
    op_norm: float | None = None,
    step_ratio: float = 0.05,
    z_ratio: float | None = None,
    callback: Callable[[int, torch.Tensor], None] | None = None,
) -> torch.Tensor:
    """TV-regularised (weighted) least squares by Chambolle-Pock (2011, Algorithm 1, theta = 1).

    Args:
        op: any :class:`LinearOperator` with domain ``[B, C, H, W]`` (real or complex).
        y: measurements ``[B, *op.range_shape]``.
        weight: regularisation weight, a float or a tensor ``[B]`` (one per item; a volume takes
            one float). Relative (default): dimensionless, ``lam = weight * ||A||^2 * s`` (see the
            module docstring). With ``absolute_weight=True`` it is ``lam`` itself, in the units of
            the original problem.
        n_iter: primal-dual iterations (each: one ``A`` and one ``A^H``).
        nonneg: constrain ``x >= 0`` (real domains only).
        x0: starting image; default ``op.pinv(y)`` (projected to ``x >= 0`` when ``nonneg``).
        scale: intensity scale ``s`` (float, or ``[B]`` for slices); default: the 99th percentile
            of ``|pinv(y)|`` per item, or over the whole volume in volume mode.
        absolute_weight: interpret ``weight`` as ``lam`` (see above).
        data_weights: optional non-negative weights ``W`` of shape ``y.shape`` (statistical
            weighting of the data term; 0 drops a measurement).
        op_norm: ``||A||`` if already known (default: :meth:`LinearOperator.norm`).
        step_ratio: ``sigma / tau``. The primal image is normalised to O(1) while the dual
            variables live on a different scale, so small ratios (larger primal steps) converge
            faster on CT; 0.03-0.1 work well from 16 to 60 views, hence the default 0.05.
        z_ratio: ``None`` (default): the ``B`` items are independent 2D problems. A number > 0:
            the batch is one volume, a contiguous stack of slices along z, regularised by 3D TV
            with z-differences weighted by ``z_ratio = pixel_size_mm / slice_spacing_mm``
            (:func:`grad`); one weight and one scale for the whole volume.
        callback: called as ``callback(k, x)`` after iteration ``k`` with the current image in
            original units (for monitoring objectives in tests and benchmarks).

    Returns:
        ``x`` of shape ``[B, *op.domain_shape]`` and the dtype of ``y``'s domain.

    Step sizes: ``tau = 0.99 / (L r)``, ``sigma = 0.99 r / L`` (``r = step_ratio``), with
    ``L = sqrt(1.02^2 + G) >= ||K||`` for ``K = [A_hat; grad]`` on the normalised problem:
    ``||A||`` is estimated by power iteration (:meth:`LinearOperator.norm`, padded by 2 % since
    power iteration approaches from below) and ``||grad||^2 <= G`` with ``G = 8`` in 2D and
    ``G = 8 + 4 z_ratio^2`` in 3D (:func:`grad_norm_sq_bound`). Hence ``tau sigma ||K||^2 < 1``,
    the convergence condition of Chambolle & Pock (2011, Theorem 1).
    """
    if n_iter < 0:
        raise ValueError(f"n_iter must be >= 0, got {n_iter}")
    volume = z_ratio is not None
    if volume:
        z_ratio = volume_z_ratio(True, z_ratio)
    w_t = _check_weight(weight, y.shape[0], volume)
    op.check_range(y)
    complex_domain = bool(op.domain_complex)
    if nonneg and complex_domain:
        raise ValueError("nonneg=True needs a real image domain; this operator's domain is complex")
    if data_weights is not None:
        if data_weights.shape != y.shape:
            raise ValueError(f"data_weights has shape {tuple(data_weights.shape)}, expected {tuple(y.shape)}")
        if not torch.isfinite(data_weights).all() or (data_weights < 0).any():
            raise ValueError("data_weights must be finite and non-negative")

    with torch.no_grad():
        pinv = op.pinv(y) if (x0 is None or scale is None) else None
        x = pinv.clone() if x0 is None else x0.clone()
        op.check_domain(x)
        if nonneg:
            x = x.clamp_min(0)
        B = y.shape[0]
        real_dtype = x.real.dtype if x.is_complex() else x.dtype
        if scale is None:
            s = _problem_scale(pinv, volume)
        else:
            s = torch.as_tensor(scale, dtype=real_dtype, device=x.device).reshape(-1)
            if volume and s.numel() != 1:
                raise ValueError("scale must be one number for a volume")
            s = s.expand(B).clone()
            if not (s > 0).all():
                raise ValueError("scale must be positive")
        s = s.to(real_dtype)
        a_norm = float(op_norm) if op_norm is not None else op.norm(dtype=x.dtype, device=x.device)
        if a_norm <= 0:
            raise ValueError("operator norm is zero; nothing to reconstruct")

        # Normalised problem: A_hat = A / ||A||, x_hat = x / s, y_hat = y / (||A|| s).
        sx = _bshape(s, x.ndim)
        sy = _bshape(s, y.ndim)
        yh = y / (a_norm * sy)
        xh = x / sx
        lam_hat = w_t.to(device=x.device, dtype=real_dtype).expand(B).clone()
        if absolute_weight:
            # lam TV(x) = lam s TV(x_hat); data term scales by (||A|| s)^2.
            lam_hat = lam_hat / (a_norm**2 * s)
        lam_b = _bshape(lam_hat, x.ndim + 1)

        def A_h(v: torch.Tensor) -> torch.Tensor:
            return op(v) / a_norm

        def AH_h(v: torch.Tensor) -> torch.Tensor:
            return op.adjoint(v) / a_norm

        # ||K||^2 <= ||A_hat||^2 + ||grad||^2 <= 1.02^2 + G: ||A|| comes from power iteration,
        # which approaches from below, hence the 2 % margin; a power iteration on K^H K itself
        # would give a slightly smaller bound but could undershoot and break tau sigma ||K||^2 < 1.
        L = math.sqrt(1.02**2 + grad_norm_sq_bound(z_ratio))
        tau = 0.99 / (L * step_ratio)
        sigma = 0.99 * step_ratio / L

        w = data_weights
        q = torch.zeros_like(yh)
        p = grad(xh, z_ratio).zero_()
        x_bar = xh.clone()
        inv_lam = 1.0 / lam_b.clamp_min(1e-30)
        for k in range(n_iter):
            # Dual ascent on the data term: prox of sigma F1^*, F1(z) = 1/2 ||z - y_hat||_W^2.
            q = q + sigma * (A_h(x_bar) - yh)
            q = q / (1.0 + sigma) if w is None else q * (w / (w + sigma))
            # Dual ascent on TV: project onto the pointwise (per voxel) ball |p| <= lam.
            # In place: p is the largest array of the loop.
            p.add_(grad(x_bar, z_ratio), alpha=sigma)
            p.div_(torch.clamp(_pixel_norm(p).mul_(inv_lam), min=1.0))
            # Primal descent: grad^H = -div.
            x_new = xh - tau * (AH_h(q) - div(p, z_ratio))
            if nonneg:
                x_new = x_new.clamp_min(0)
            x_bar = 2.0 * x_new - xh
            xh = x_new
            if callback is not None:
                callback(k, xh * sx)
        return xh * sx
