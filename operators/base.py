"""The linear-operator contract every forward model implements.

An operator maps an image batch ``x`` of shape ``[B, *domain_shape]`` to a measurement batch
``y`` of shape ``[B, *range_shape]``. Concrete operators implement :meth:`forward` (A x) and
:meth:`adjoint` (A^H y) and usually a fast approximate inverse :meth:`pinv`; the normal operator
A^H A follows. Autograd through ``forward`` must equal ``adjoint`` so gradient-based samplers work
on any operator.
"""

from __future__ import annotations

import abc
from typing import Sequence

import torch
from torch import nn


class LinearOperator(nn.Module, abc.ABC):
    """Abstract linear forward model ``y = A x`` on batched torch tensors.

    Attributes:
        domain_shape: per-item image shape, e.g. ``(1, H, W)``.
        range_shape: per-item measurement shape, e.g. ``(1, n_angles, n_detectors)`` or
            ``(n_coils, H, W)``.
        domain_complex / range_complex: whether the spaces are complex-valued.
    """

    domain_shape: tuple[int, ...]
    range_shape: tuple[int, ...]
    domain_complex: bool = False
    range_complex: bool = False

    @abc.abstractmethod
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """A x for ``x`` of shape ``[B, *domain_shape]``; returns ``[B, *range_shape]``."""

    @abc.abstractmethod
    def adjoint(self, y: torch.Tensor) -> torch.Tensor:
        """A^H y for ``y`` of shape ``[B, *range_shape]``; returns ``[B, *domain_shape]``."""

    def pinv(self, y: torch.Tensor) -> torch.Tensor:
        """A fast approximate inverse (FBP, zero-filled, ...). Default: the adjoint."""
        return self.adjoint(y)

    def normal(self, x: torch.Tensor) -> torch.Tensor:
        """A^H A x."""
        return self.adjoint(self.forward(x))

    # --- input validation shared by every operator -------------------------------------
    def _check(self, t: torch.Tensor, shape: Sequence[int], what: str) -> None:
        """Raise ``ValueError`` naming ``what`` if ``t`` is not ``[B, *shape]`` or not finite."""
        if not isinstance(t, torch.Tensor):
            raise ValueError(f"{type(self).__name__}: {what} must be a torch.Tensor, got {type(t).__name__}")
        expected = tuple(int(s) for s in shape)
        if t.ndim != len(expected) + 1 or tuple(t.shape[1:]) != expected:
            raise ValueError(
                f"{type(self).__name__}: {what} has shape {tuple(t.shape)}, expected [B, {', '.join(map(str, expected))}]"
            )
        if not torch.isfinite(t).all():
            raise ValueError(f"{type(self).__name__}: {what} contains NaN or inf")

    def check_domain(self, x: torch.Tensor) -> None:
        self._check(x, self.domain_shape, "image")

    def check_range(self, y: torch.Tensor) -> None:
        self._check(y, self.range_shape, "measurement")


class ScaledOperator(LinearOperator):
    """``scale * A``: used to compose an operator with an affine intensity normalisation."""

    def __init__(self, op: LinearOperator, scale: float):
        super().__init__()
        self.op = op
        self.scale = float(scale)
        self.domain_shape = op.domain_shape
        self.range_shape = op.range_shape
        self.domain_complex = op.domain_complex
        self.range_complex = op.range_complex

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.op(x) * self.scale

    def adjoint(self, y: torch.Tensor) -> torch.Tensor:
        return self.op.adjoint(y) * self.scale

    def pinv(self, y: torch.Tensor) -> torch.Tensor:
        return self.op.pinv(y) / self.scale

    def normal(self, x: torch.Tensor) -> torch.Tensor:
        return self.op.normal(x) * self.scale**2


class MatrixOperator(LinearOperator):
    """A dense matrix acting on flattened images: small, exact, and used to test algorithms.

    ``matrix`` has shape ``[M, N]`` with ``N = prod(domain_shape)`` and ``M = prod(range_shape)``.
    """

    def __init__(self, matrix: torch.Tensor, domain_shape: Sequence[int], range_shape: Sequence[int] | None = None):
        super().__init__()
        self.domain_shape = tuple(domain_shape)
        n = 1
        for s in self.domain_shape:
            n *= s
        if matrix.ndim != 2 or matrix.shape[1] != n:
            raise ValueError(f"MatrixOperator: matrix has shape {tuple(matrix.shape)}, expected [M, {n}]")
        self.range_shape = tuple(range_shape) if range_shape is not None else (matrix.shape[0],)
        self.register_buffer("matrix", matrix)
        self.domain_complex = self.range_complex = matrix.is_complex()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        m = self.matrix.to(x.dtype) if not x.is_complex() else self.matrix.to(x.dtype)
        return (x.reshape(x.shape[0], -1) @ m.T).reshape(x.shape[0], *self.range_shape)

    def adjoint(self, y: torch.Tensor) -> torch.Tensor:
        m = self.matrix.to(y.dtype)
        return (y.reshape(y.shape[0], -1) @ m.conj()).reshape(y.shape[0], *self.domain_shape)

    def pinv(self, y: torch.Tensor) -> torch.Tensor:
        m = self.matrix.to(y.dtype)
        return (y.reshape(y.shape[0], -1) @ torch.linalg.pinv(m).T).reshape(y.shape[0], *self.domain_shape)
