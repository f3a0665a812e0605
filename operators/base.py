"""The linear-operator contract every forward model implements.

An operator maps an image batch ``x`` of shape ``[B, *domain_shape]`` to a measurement batch
``y`` of shape ``[B, *range_shape]``. Concrete operators implement :meth:`forward` (A x) and
:meth:`adjoint` (A^H y) and usually a fast approximate inverse :meth:`pinv`; the normal operator
A^H A and the operator norm :meth:`~LinearOperator.norm` follow. Autograd through ``forward`` must
equal ``adjoint`` so gradient-based samplers work on any operator. An operator also says what it
models: :attr:`~LinearOperator.modality` and, for CT, its acquisition
:attr:`~LinearOperator.geometry`. Operators are immutable once built, which is what makes caching
their norm safe.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence

import torch
from torch import nn

from operators.geometry import Geometry

#: Power iterations of :meth:`LinearOperator.norm`. On the CT and MR operators of this project the
#: estimate has settled to well below 1 % by then; it approaches ``||A||`` from below.
NORM_ITERATIONS = 30
#: Seed of the fixed random start vector of :meth:`LinearOperator.norm`.
NORM_SEED = 0


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
    #: What the operator models: ``"ct"`` (Radon transforms), ``"mr"`` (Fourier operators) or
    #: ``None`` (a generic operator such as :class:`MatrixOperator`).
    modality: str | None = None
    #: The CT acquisition geometry (:mod:`operators.geometry`) of a Radon operator, else ``None``.
    geometry: Geometry | None = None

    def __init__(self) -> None:
        super().__init__()
        self._norm_cache: dict[tuple, float] = {}

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

    def norm(
        self,
        *,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str = "cpu",
        n_iter: int = NORM_ITERATIONS,
    ) -> float:
        """The operator norm ``||A||_2`` (largest singular value) by power iteration on ``A^H A``.

        Starts from a standard normal vector ``[1, *domain_shape]`` drawn from a CPU generator seeded
        with :data:`NORM_SEED` (real and imaginary parts drawn in turn for a complex domain), so the
        estimate is deterministic; each of the ``n_iter`` steps applies :meth:`normal` once and
        renormalises, and the estimate ``sqrt(||A^H A v||)`` for the last unit ``v`` approaches
        ``||A||`` from below (Golub & Van Loan, *Matrix Computations*, sec. 8.2.1). An operator
        whose output depends on the batch item (e.g. per-item noise weights broadcast against a
        batch of one) is treated as the block-diagonal operator of all its items: the result is the
        largest of their norms.

        Args:
            dtype: dtype of the iteration (promoted to complex for a complex domain).
            device: where to iterate.
            n_iter: power iterations (at least 1); default :data:`NORM_ITERATIONS`.

        Returns:
            The estimate as a float (0 for the zero operator), cached per instance for each
            ``(dtype, device, n_iter)``.
        """
        if self.domain_complex and not dtype.is_complex:
            dtype = torch.complex64 if dtype == torch.float32 else torch.complex128
        key = (dtype, str(torch.device(device)), int(n_iter))
        if key not in self._norm_cache:
            with torch.no_grad():
                self._norm_cache[key] = _power_iteration(self.normal, (1, *self.domain_shape), dtype, device, n_iter)
        return self._norm_cache[key]

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


def _power_iteration(
    apply_normal, shape: tuple[int, ...], dtype: torch.dtype, device: torch.device | str, n_iter: int
) -> float:
    """``sqrt`` of the largest eigenvalue of the PSD map ``apply_normal`` (see :meth:`LinearOperator.norm`)."""
    g = torch.Generator(device="cpu").manual_seed(NORM_SEED)
    real = torch.empty(0, dtype=dtype).real.dtype if dtype.is_complex else dtype
    v = torch.randn(shape, generator=g, dtype=real)
    if dtype.is_complex:
        v = torch.complex(v, torch.randn(shape, generator=g, dtype=real))
    v = v.to(device=device, dtype=dtype)
    v = v / torch.linalg.vector_norm(v)
    lam = 0.0
    for _ in range(max(1, n_iter)):
        w = apply_normal(v)
        n = float(torch.linalg.vector_norm(w))
        if n == 0.0:
            return 0.0
        lam = n
        v = w / n
    return lam**0.5


class WrappedOperator(LinearOperator):
    """Base of operators built around another one ``op``: same shapes, modality and geometry.

    Subclasses define how they change ``op``'s action (``forward``, ``adjoint``, ...).
    """

    def __init__(self, op: LinearOperator):
        super().__init__()
        self.op = op
        self.domain_shape = op.domain_shape
        self.range_shape = op.range_shape
        self.domain_complex = op.domain_complex
        self.range_complex = op.range_complex

    @property
    def modality(self) -> str | None:  # type: ignore[override]
        return self.op.modality

    @property
    def geometry(self) -> Geometry | None:  # type: ignore[override]
        return self.op.geometry


class ScaledOperator(WrappedOperator):
    """``scale * A``: used to compose an operator with an affine intensity normalisation."""

    def __init__(self, op: LinearOperator, scale: float):
        super().__init__(op)
        self.scale = float(scale)

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
