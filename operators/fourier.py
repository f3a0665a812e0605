"""Undersampled Cartesian Fourier operator, single-coil and multi-coil SENSE.

Conventions
-----------
* Centred, orthonormal 2D DFT: ``F x = fftshift(fft2(ifftshift(x), norm="ortho"))`` over the last two
  axes, so the zero frequency (DC) sits at index ``(H // 2, W // 2)`` of k-space and the image centre
  at ``(H // 2, W // 2)`` of the image. ``F`` is unitary: ``F^H F = I``.
* Images are ``[B, 1, H, W]`` complex; k-space is ``[B, n_coils, H, W]`` complex. Real inputs are
  promoted to complex (float32 -> complex64, float64 -> complex128); the output precision always
  follows the input's.
* The sampling mask is ``[H, W]`` or a 1D column mask ``[W]`` (fastMRI convention: phase encoding
  along the last axis, each sampled column is a fully acquired line of ``H`` samples).
* Multi-coil SENSE (Pruessmann et al., MRM 1999): ``A x = M F (S_c x)`` for every coil ``c``, with coil
  sensitivities ``S`` of shape ``[n_coils, H, W]`` (shared by the batch) or ``[B, n_coils, H, W]``
  (one set per batch item).

The operator is ``A = M F S``; its adjoint is ``A^H y = sum_c conj(S_c) F^H (M y_c)``. Because ``M`` is
0/1 the adjoint also zero-fills, and the normal operator is ``S^H F^H M F S``. Every step is a torch
operation with a complex autograd rule, so the gradient of ``Re <A x, y>`` with respect to ``x`` is
exactly ``A^H y``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from operators.base import LinearOperator

__all__ = ["CartesianFourier", "fft2c", "ifft2c"]

_COMPLEX_OF = {
    torch.float32: torch.complex64,
    torch.float64: torch.complex128,
    torch.complex64: torch.complex64,
    torch.complex128: torch.complex128,
}


def fft2c(x: torch.Tensor) -> torch.Tensor:
    """Centred orthonormal 2D DFT over the last two axes (DC at index ``(H // 2, W // 2)``)."""
    dims = (-2, -1)
    return torch.fft.fftshift(torch.fft.fft2(torch.fft.ifftshift(x, dim=dims), norm="ortho"), dim=dims)


def ifft2c(k: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`fft2c` (also its adjoint, the transform being unitary)."""
    dims = (-2, -1)
    return torch.fft.fftshift(torch.fft.ifft2(torch.fft.ifftshift(k, dim=dims), norm="ortho"), dim=dims)


def _as_tensor(a: torch.Tensor | np.ndarray | Sequence, what: str) -> torch.Tensor:
    if isinstance(a, torch.Tensor):
        return a.detach()
    try:
        return torch.as_tensor(np.asarray(a))
    except (TypeError, ValueError) as exc:
        raise ValueError(f"CartesianFourier: {what} must be an array or torch.Tensor, got {type(a).__name__}") from exc


def _validate_mask(mask: torch.Tensor) -> torch.Tensor:
    """Return ``mask`` as bool after checking it is 1D/2D, finite and 0/1 valued."""
    if mask.ndim not in (1, 2):
        raise ValueError(
            f"CartesianFourier: mask has shape {tuple(mask.shape)}, expected [H, W] or a column mask [W]"
        )
    if mask.numel() == 0:
        raise ValueError("CartesianFourier: mask is empty, expected [H, W] or [W] with H, W >= 1")
    if mask.dtype == torch.bool:
        return mask
    if mask.is_complex():
        if bool((mask.imag != 0).any()):
            raise ValueError("CartesianFourier: mask has complex values, expected values in {0, 1}")
        mask = mask.real
    if not bool(torch.isfinite(mask).all()):
        raise ValueError("CartesianFourier: mask contains NaN or inf, expected values in {0, 1}")
    if not bool(((mask == 0) | (mask == 1)).all()):
        bad = mask[(mask != 0) & (mask != 1)].flatten()[:3].tolist()
        raise ValueError(f"CartesianFourier: mask has values outside {{0, 1}} (e.g. {bad}), expected a 0/1 or bool mask")
    return mask != 0


class CartesianFourier(LinearOperator):
    """Undersampled centred orthonormal 2D Fourier transform, optionally with SENSE coil sensitivities.

    ``forward(x) = M * F(S x)`` maps images ``[B, 1, H, W]`` to k-space ``[B, n_coils, H, W]``;
    ``adjoint(y) = sum_c conj(S_c) F^H(M * y_c)``; ``pinv(y)`` is the zero-filled, coil-combined
    reconstruction ``adjoint(y) / sum_c |S_c|^2`` (0 where no coil is sensitive), which for a single
    coil is the plain zero-filled inverse FFT. Unsampled k-space positions are exactly zero in the
    output of ``forward``.

    Args:
        mask: sampling pattern, bool or 0/1, ``[H, W]`` or a column mask ``[W]`` broadcast along
            rows (fastMRI convention: phase encoding along the last axis).
        coil_maps: complex sensitivities ``[n_coils, H, W]`` shared by the batch, or
            ``[B, n_coils, H, W]`` with one set per batch item (inputs must then have the same ``B``
            or ``B = 1``). ``None`` means a single coil with unit sensitivity.
        image_shape: ``(H, W)``; needed only when ``mask`` is 1D and no coil maps give ``H``.

    Raises:
        ValueError: on a mask that is not 0/1 or does not match the image or coil-map size, coil
            maps of the wrong rank, NaN or inf, and (at call time) inputs of the wrong shape or dtype.
    """

    domain_complex = True
    range_complex = True
    modality = "mr"

    def __init__(
        self,
        mask: torch.Tensor | np.ndarray,
        coil_maps: torch.Tensor | np.ndarray | None = None,
        *,
        image_shape: tuple[int, int] | None = None,
    ) -> None:
        super().__init__()
        m = _validate_mask(_as_tensor(mask, "mask"))

        maps: torch.Tensor | None = None
        if coil_maps is not None:
            maps = _as_tensor(coil_maps, "coil_maps")
            if maps.ndim not in (3, 4):
                raise ValueError(
                    f"CartesianFourier: coil_maps has shape {tuple(maps.shape)}, "
                    "expected [n_coils, H, W] or [B, n_coils, H, W]"
                )
            if maps.dtype not in _COMPLEX_OF:
                raise ValueError(
                    f"CartesianFourier: coil_maps has dtype {maps.dtype}, expected a float or complex dtype"
                )
            if not bool(torch.isfinite(maps).all()):
                raise ValueError("CartesianFourier: coil_maps contain NaN or inf, expected finite sensitivities")
            if maps.shape[-3] < 1:
                raise ValueError("CartesianFourier: coil_maps has 0 coils, expected n_coils >= 1")

        # Resolve the image grid from whichever of mask / coil maps / image_shape knows it.
        if m.ndim == 2:
            hw = (int(m.shape[0]), int(m.shape[1]))
        elif maps is not None:
            hw = (int(maps.shape[-2]), int(maps.shape[-1]))
        elif image_shape is not None:
            hw = (int(image_shape[0]), int(image_shape[1]))
        else:
            raise ValueError(
                f"CartesianFourier: a 1D column mask [W]={tuple(m.shape)} needs image_shape=(H, W) "
                "or coil_maps to know the number of rows H"
            )
        if image_shape is not None and tuple(int(s) for s in image_shape) != hw:
            raise ValueError(
                f"CartesianFourier: image_shape {tuple(image_shape)} does not match the mask/coil-map grid {hw}"
            )
        if m.ndim == 1:
            if int(m.shape[0]) != hw[1]:
                raise ValueError(
                    f"CartesianFourier: column mask has {m.shape[0]} entries, expected W = {hw[1]} "
                    f"(image grid {hw})"
                )
            m = m[None, :].expand(hw[0], hw[1])
        if maps is not None and tuple(maps.shape[-2:]) != hw:
            raise ValueError(
                f"CartesianFourier: coil_maps grid {tuple(maps.shape[-2:])} does not match the mask grid {hw}; "
                f"expected coil_maps [n_coils, {hw[0]}, {hw[1]}]"
            )

        self.image_hw = hw
        self.n_coils = 1 if maps is None else int(maps.shape[-3])
        self.domain_shape = (1, hw[0], hw[1])
        self.range_shape = (self.n_coils, hw[0], hw[1])
        self.register_buffer("mask", m.contiguous().clone())
        if maps is None:
            self.register_buffer("coil_maps", None)
        else:
            # Kept in double precision; cast to the input's precision at call time so one operator
            # serves complex64 and complex128 data alike.
            maps = maps.to(torch.complex128)
            if maps.ndim == 3:
                maps = maps[None]
            self.register_buffer("coil_maps", maps.contiguous().clone())

    # --- helpers ----------------------------------------------------------------------
    @property
    def sampling_fraction(self) -> float:
        """Fraction of k-space positions sampled (``1 / acceleration``)."""
        return float(self.mask.float().mean())

    def _promote(self, t: torch.Tensor, what: str) -> torch.Tensor:
        if not isinstance(t, torch.Tensor):
            raise ValueError(f"CartesianFourier: {what} must be a torch.Tensor, got {type(t).__name__}")
        if t.dtype not in _COMPLEX_OF:
            raise ValueError(
                f"CartesianFourier: {what} has dtype {t.dtype}, expected float32/float64/complex64/complex128"
            )
        return t.to(_COMPLEX_OF[t.dtype])

    def _maps_for(self, t: torch.Tensor) -> torch.Tensor | None:
        """Coil maps cast to ``t``'s dtype/device, batch-checked against ``t``."""
        if self.coil_maps is None:
            return None
        maps = self.coil_maps.to(dtype=t.dtype, device=t.device)
        if maps.shape[0] != 1 and maps.shape[0] != t.shape[0]:
            raise ValueError(
                f"CartesianFourier: batch of {t.shape[0]} items, but coil_maps hold {maps.shape[0]} sets; "
                f"expected a batch of {maps.shape[0]} (or coil_maps [n_coils, H, W] shared by any batch)"
            )
        return maps

    def _mask_for(self, t: torch.Tensor) -> torch.Tensor:
        real = t.real.dtype if t.is_complex() else t.dtype
        return self.mask.to(device=t.device, dtype=real)

    # --- operator -----------------------------------------------------------------------
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``M F (S x)``: images ``[B, 1, H, W]`` -> k-space ``[B, n_coils, H, W]``."""
        self.check_domain(x)
        x = self._promote(x, "image")
        maps = self._maps_for(x)
        coil_images = x if maps is None else x * maps
        return fft2c(coil_images) * self._mask_for(x)

    def adjoint(self, y: torch.Tensor) -> torch.Tensor:
        """``sum_c conj(S_c) F^H (M y_c)``: k-space ``[B, n_coils, H, W]`` -> images ``[B, 1, H, W]``."""
        self.check_range(y)
        y = self._promote(y, "k-space")
        coil_images = ifft2c(y * self._mask_for(y))
        maps = self._maps_for(y)
        if maps is None:
            return coil_images
        return (maps.conj() * coil_images).sum(dim=1, keepdim=True)

    def pinv(self, y: torch.Tensor) -> torch.Tensor:
        """Zero-filled, coil-combined reconstruction ``[B, 1, H, W]``.

        Single coil: ``F^H (M y)``, the exact inverse when the mask is full. SENSE:
        ``sum_c conj(S_c) F^H(M y_c) / sum_c |S_c|^2`` where the denominator is positive and 0
        elsewhere, the exact inverse for a full mask wherever some coil is sensitive.
        """
        x = self.adjoint(y)
        maps = self._maps_for(x)
        if maps is None:
            return x
        weight = (maps.abs() ** 2).sum(dim=1, keepdim=True)
        safe = torch.where(weight > 0, weight, torch.ones_like(weight))
        return torch.where(weight > 0, x / safe, torch.zeros_like(x))

    def normal(self, x: torch.Tensor) -> torch.Tensor:
        """``A^H A x`` (one FFT pair per coil; the 0/1 mask is idempotent)."""
        return self.adjoint(self.forward(x))

    def extra_repr(self) -> str:
        return (
            f"image_hw={self.image_hw}, n_coils={self.n_coils}, "
            f"sampling_fraction={self.sampling_fraction:.4f}"
        )
