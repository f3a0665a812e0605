"""The data-fidelity term of the posterior samplers: noise whitening and its least-squares step.

With a noise standard deviation (scalar or per measurement, e.g. from a Poisson dose model) the
operator and data are whitened, so every least-squares step weights each measurement by its
inverse variance and the data term is the exact negative log-likelihood
``0.5 * ||(y - A x) / std||^2``. The step can also couple neighbouring slices of a volume.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from operators import LinearOperator, WrappedOperator
from recon.linalg import conjugate_gradient, z_laplacian

__all__ = ["DataTerm", "WhitenedOperator"]


class WhitenedOperator(WrappedOperator):
    """``W^{1/2} A`` with ``W = diag(1 / std^2)``: unit-variance noise in its range.

    ``inv_std`` broadcasts against ``[B, *range_shape]``.
    """

    def __init__(self, op: LinearOperator, inv_std: torch.Tensor):
        super().__init__(op)
        self.inv_std = inv_std

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.op(x) * self.inv_std

    def adjoint(self, y: torch.Tensor) -> torch.Tensor:
        return self.op.adjoint(y * self.inv_std)

    def normal(self, x: torch.Tensor) -> torch.Tensor:
        return self.op.adjoint(self.op(x) * self.inv_std**2)

    def pinv(self, y: torch.Tensor) -> torch.Tensor:
        return self.op.pinv(y / self.inv_std)


@dataclass
class DataTerm:
    """The data-fidelity term ``0.5 * ||W^{1/2} (y - A x)||^2`` of one batch of problems.

    Attributes:
        op: the (normalised) forward operator ``A``.
        y: measurements ``[B, *op.range_shape]`` (normalised).
        inv_std: ``None`` for noise-free data (unweighted least squares), else the inverse noise
            standard deviation per real component, broadcast against ``y``.
    """

    op: LinearOperator
    y: torch.Tensor
    inv_std: torch.Tensor | None = None

    @classmethod
    def build(cls, op: LinearOperator, y: torch.Tensor, noise_std: float | torch.Tensor | None) -> DataTerm:
        """``noise_std``: ``None`` / 0 (noise-free), a scalar, or a tensor broadcastable to ``y``
        (per-measurement standard deviation, e.g. ``sqrt(exp(p) / I0)`` for CT line integrals
        ``p`` at ``I0`` photons). Same units as ``y``. For complex data it is ``sqrt(E|n|^2)``
        (circular noise, ``operators.noise.complex_gaussian_noise``'s convention), so each of the
        real and imaginary parts has standard deviation ``noise_std / sqrt(2)``; :attr:`inv_std`
        holds the inverse per-component standard deviation, so whitened residuals have unit
        variance per real component."""
        if noise_std is None:
            return cls(op, y, None)
        std = torch.as_tensor(noise_std, device=y.device)
        std = std.to(y.real.dtype if y.is_complex() else y.dtype)
        if std.numel() == 1 and float(std) == 0.0:
            return cls(op, y, None)
        if not bool((std > 0).all()) or not bool(torch.isfinite(std).all()):
            raise ValueError("noise_std must be positive and finite (or None for noise-free data)")
        try:
            torch.broadcast_shapes(std.shape, y.shape)
        except RuntimeError as e:
            raise ValueError(f"noise_std of shape {tuple(std.shape)} does not broadcast to y {tuple(y.shape)}") from e
        comp = std / math.sqrt(2.0) if y.is_complex() else std
        return cls(op, y, 1.0 / comp)

    @property
    def noisy(self) -> bool:
        return self.inv_std is not None

    @property
    def weighted_op(self) -> LinearOperator:
        """``W^{1/2} A`` (``A`` itself for noise-free data)."""
        return self.op if self.inv_std is None else WhitenedOperator(self.op, self.inv_std)

    @property
    def weighted_y(self) -> torch.Tensor:
        return self.y if self.inv_std is None else self.y * self.inv_std

    def residual(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """``y - A x`` (unweighted)."""
        return (self.y if y is None else y) - self.op(x)

    def solve(
        self,
        x0: torch.Tensor,
        *,
        gamma: float | torch.Tensor = 0.0,
        n_iter: int = 5,
        y: torch.Tensor | None = None,
        tol: float | None = None,
        z_precision: float = 0.0,
        z_slices: int | None = None,
    ) -> torch.Tensor:
        """A few CG iterations on ``(A^H W A + gamma I + rho D_z^T D_z) x = A^H W y + gamma x0``,
        started at ``x0``.

        This minimises ``0.5 ||W^{1/2}(y - A x)||^2 + 0.5 gamma ||x - x0||^2 + 0.5 rho ||D_z x||^2``.
        With ``gamma = rho = 0`` it is CG on the normal equations from ``x0``: each iteration adds one
        Krylov direction of the data misfit to ``x0`` and, run to convergence, returns the
        data-consistent image closest to ``x0``. ``y`` replaces the stored data (e.g. a noised copy),
        in the same units.

        ``z_precision`` (``rho``) couples neighbouring slices: the batch is read as volumes of
        ``z_slices`` contiguous slices (default: the whole batch is one volume) and ``D_z`` is the
        slice-to-slice difference within each volume (:func:`recon.linalg.z_laplacian`); ``rho`` is
        the precision of a Gaussian prior on those differences (normalised units). CG then runs
        per volume, not per slice.
        """
        A = self.weighted_op
        yy = self.y if y is None else y
        yw = yy if self.inv_std is None else yy * self.inv_std
        rhs = A.adjoint(yw)
        g = gamma if isinstance(gamma, torch.Tensor) else float(gamma)
        no_gamma = isinstance(g, float) and g == 0.0
        if not no_gamma:
            rhs = rhs + g * x0
        if z_precision <= 0.0:
            return conjugate_gradient(A.normal if no_gamma else (lambda v: A.normal(v) + g * v), rhs, x0, n_iter, tol)
        n = x0.shape[0] if z_slices is None else int(z_slices)
        if n < 1 or x0.shape[0] % n:
            raise ValueError(f"z_slices={n} does not divide the batch of {x0.shape[0]} slices")
        stack = (x0.shape[0] // n, n, *x0.shape[1:])
        rho = float(z_precision)

        def normal(v: torch.Tensor) -> torch.Tensor:  # v: [V, n, ...]
            flat = v.reshape(x0.shape)
            out = A.normal(flat) if no_gamma else A.normal(flat) + g * flat
            return out.reshape(stack) + rho * z_laplacian(v)

        return conjugate_gradient(normal, rhs.reshape(stack), x0.reshape(stack), n_iter, tol).reshape(x0.shape)
