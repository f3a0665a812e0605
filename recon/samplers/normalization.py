"""Physical measurements expressed in a prior's normalised image domain, and back.

A sampler works on normalised images (CT: the prior's HU window mapped to [0, 1]; MR: magnitude over
a per-slice percentile); :func:`normalize_problem` turns the physical operator, data and noise level
into that domain without changing the operator, and :class:`NormalizedProblem` maps results back.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from operators import MU_WATER_PER_MM, LinearOperator
from priors.base import Prior

__all__ = ["NormalizedProblem", "normalize_problem"]


@dataclass
class NormalizedProblem:
    """A measurement expressed for a sampler working in the prior's normalised domain.

    For an operator image ``u`` (operator units: attenuation in 1/mm for CT, complex image for MR,
    the prior's physical unit otherwise) and a normalised image ``x``:
    ``u = offset + scale_b * x``. Then ``A u = y`` iff ``A x = (y - A(offset * 1)) / scale_b =: y_norm``,
    so the sampler uses the operator unchanged and the normalised data ``y``; the noise standard
    deviation is divided by ``scale_b`` too. Dividing the data instead of scaling the operator allows
    a different scale per slice (percentile-normalised MR) with one operator.

    Attributes:
        op: the operator (unchanged).
        y: ``[B, *range]`` normalised measurements.
        noise_std: noise std in normalised measurement units (``None``: noise-free).
        scale: ``[B]`` per-item scale (operator units per normalised unit).
        offset: operator-domain offset (float).
        phys_scale, phys_offset: prior physical unit from the normalised image:
            ``physical = phys_offset + phys_scale_b * x`` (HU for CT, magnitude units for MR).
        unit: the physical unit's name.
    """

    op: LinearOperator
    y: torch.Tensor
    noise_std: torch.Tensor | float | None
    scale: torch.Tensor
    offset: float
    phys_scale: torch.Tensor
    phys_offset: float
    unit: str

    def _b(self, v: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        return v.to(device=like.device, dtype=like.real.dtype if like.is_complex() else like.dtype).view(
            -1, *([1] * (like.ndim - 1)))

    def to_operator_units(self, x: torch.Tensor) -> torch.Tensor:
        """Normalised image ``[B, ...]`` -> operator units (``mu`` in 1/mm for CT)."""
        return self.offset + self._b(self.scale, x) * x

    def from_operator_units(self, u: torch.Tensor) -> torch.Tensor:
        """Operator-unit image ``[B, ...]`` -> normalised image (inverse of :meth:`to_operator_units`)."""
        return (u - self.offset) / self._b(self.scale, u)

    def to_physical(self, x: torch.Tensor) -> torch.Tensor:
        """Normalised image ``[B, ...]`` -> the prior's physical unit; complex images -> magnitude."""
        if x.is_complex():
            x = x.abs()
        return self.phys_offset + self._b(self.phys_scale, x) * x


def normalize_problem(
    prior: Prior,
    op: LinearOperator,
    y: torch.Tensor,
    noise_std: float | torch.Tensor | None = None,
    *,
    modality: str | None = None,
    scale: float | torch.Tensor | None = None,
) -> NormalizedProblem:
    """Compose the prior's intensity normalisation (``physical = offset + scale * normalised``)
    with the operator.

    * CT (``modality == "ct"``, window normalisation in HU): the operator acts on attenuation
      ``mu = mu_w (1 + HU / 1000)`` in 1/mm, HU = ``low + (high - low) x``, so
      ``mu = mu_w (1 + low/1000) + mu_w (high - low) / 1000 * x``.
    * Window normalisation otherwise: the operator acts on the prior's physical unit directly.
    * Percentile normalisation (MR): the scale of each slice is the prior's percentile of
      ``|op.pinv(y)|`` (the zero-filled, coil-combined image), or ``scale`` when given; offset 0.

    Args:
        y: ``[B, *op.range_shape]`` physical measurements.
        noise_std: scalar or tensor broadcastable to ``y`` (physical measurement units).
    """
    norm = prior.normalization
    b = y.shape[0]
    real_dtype = y.real.dtype if y.is_complex() else y.dtype
    if norm.kind == "window":
        p_scale, p_offset = norm.affine()
        if modality == "ct":
            mu_w = MU_WATER_PER_MM
            s = mu_w * p_scale / 1000.0
            off = mu_w * (1.0 + p_offset / 1000.0)
        else:
            s, off = p_scale, p_offset
        scale_b = torch.full((b,), float(s), dtype=torch.float64)
        phys_b = torch.full((b,), float(p_scale), dtype=torch.float64)
        phys_off = float(p_offset)
        offset = float(off)
    else:
        if scale is not None:
            scale_b = torch.as_tensor(scale, dtype=torch.float64).reshape(-1).expand(b).clone()
        else:
            with torch.no_grad():
                ref = op.pinv(y)
            scale_b = torch.tensor([norm.affine(ref[i])[0] for i in range(b)], dtype=torch.float64)
        phys_b = scale_b.clone()
        phys_off = 0.0
        offset = 0.0
    y_n = y
    if offset != 0.0:
        shape = (1, *op.domain_shape)
        const = torch.full(shape, offset, dtype=real_dtype, device=y.device)
        if op.domain_complex:
            const = const.to(torch.complex64 if real_dtype == torch.float32 else torch.complex128)
        with torch.no_grad():
            y_n = y_n - op(const)
    sb = scale_b.to(device=y.device, dtype=real_dtype).view(-1, *([1] * (y.ndim - 1)))
    y_n = y_n / sb
    ns = None
    if noise_std is not None:
        ns_t = torch.as_tensor(noise_std, device=y.device).to(real_dtype)
        if ns_t.numel() == 1 and float(ns_t) == 0.0:
            ns = None
        else:
            ns = ns_t / sb
    return NormalizedProblem(op, y_n, ns, scale_b, offset, phys_b, phys_off, norm.unit)
