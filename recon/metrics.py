"""Image-quality metrics: the one place where PSNR, SSIM and RMSE and their conventions live.

Every figure the project reports (classical baselines, posterior samplers, benchmarks) is computed
here, so that numbers are comparable across the code base.

Conventions:

* PSNR and SSIM always take an explicit ``data_range``; nothing guesses it from the data, because a
  range estimated from each image makes two reconstructions of the same slice incomparable.
* CT (:func:`ct_metrics`): images in Hounsfield units, both clipped to a stated window (default
  ``[-1000, 1000]`` HU), ``data_range`` = window width (2000 HU). RMSE is reported in HU on the same
  clipped window, so that ``psnr == 20 * log10(width / rmse)`` holds exactly; the RMSE over the raw
  (unclipped) values is reported beside it as ``rmse_raw``.
* MRI (:func:`mr_metrics`): magnitude images, both divided by the reference's 99.9th percentile of
  magnitude (per slice), ``data_range`` 1. No clipping: a reconstruction brighter than the
  reference is penalised, not hidden.

Shapes: every function accepts a single slice ``[H, W]`` (returns Python floats) or a batch
``[B, 1, H, W]`` (returns numpy arrays of shape ``[B]``, one value per slice). Inputs may be torch
tensors (any device, any real dtype; gradients are ignored) or numpy arrays. Shape mismatch, NaN or
inf, or a bad ``data_range`` raise ``ValueError``.

SSIM is scikit-image's ``structural_similarity`` (Wang et al. 2004) with its defaults (7x7 uniform
window, K1 = 0.01, K2 = 0.03), computed per 2D slice.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from skimage.metrics import structural_similarity

__all__ = [
    "psnr", "ssim", "rmse", "ct_metrics", "mr_metrics", "body_mask", "z_variation",
    "CT_BODY_HU", "CT_WINDOW_HU", "MR_BODY_FRACTION",
]

ArrayLike = torch.Tensor | np.ndarray
Value = float | np.ndarray

#: Default CT evaluation window in HU: air to dense bone.
CT_WINDOW_HU: tuple[float, float] = (-1000.0, 1000.0)
#: CT pixels above this (HU) count as inside the body (air is -1000 HU).
CT_BODY_HU = -900.0
#: MR pixels above this fraction of their slice's 99.9th percentile of magnitude count as inside.
MR_BODY_FRACTION = 0.05


# --- input handling ------------------------------------------------------------------------------


def _to_numpy(a: ArrayLike, name: str, allow_complex: bool = False) -> np.ndarray:
    if isinstance(a, torch.Tensor):
        a = a.detach().cpu()
        if a.dtype == torch.bfloat16 or a.dtype == torch.float16:
            a = a.float()
        a = a.numpy()
    elif not isinstance(a, np.ndarray):
        raise ValueError(f"{name} must be a torch.Tensor or numpy.ndarray, got {type(a).__name__}")
    if np.iscomplexobj(a):
        if not allow_complex:
            raise ValueError(f"{name} is complex; take the magnitude first (or use mr_metrics)")
    elif not (np.issubdtype(a.dtype, np.floating) or np.issubdtype(a.dtype, np.integer)):
        raise ValueError(f"{name} has non-numeric dtype {a.dtype}")
    return a


def _slices(x: ArrayLike, ref: ArrayLike, allow_complex: bool = False) -> tuple[np.ndarray, np.ndarray, bool]:
    """Validate a pair and return float64 arrays ``[B, H, W]`` and whether the input was batched."""
    xa = _to_numpy(x, "x", allow_complex)
    ra = _to_numpy(ref, "ref", allow_complex)
    if xa.shape != ra.shape:
        raise ValueError(f"shape mismatch: x has shape {xa.shape}, ref has shape {ra.shape}")
    if xa.ndim == 2:
        batched = False
        xa, ra = xa[None], ra[None]
    elif xa.ndim == 4 and xa.shape[1] == 1:
        batched = True
        xa, ra = xa[:, 0], ra[:, 0]
    else:
        raise ValueError(f"expected an image [H, W] or a batch [B, 1, H, W], got shape {xa.shape}")
    if xa.shape[0] == 0 or xa.shape[1] < 1 or xa.shape[2] < 1:
        raise ValueError(f"empty image batch of shape {xa.shape}")
    if not np.isfinite(xa).all():
        raise ValueError("x contains NaN or inf")
    if not np.isfinite(ra).all():
        raise ValueError("ref contains NaN or inf")
    dt = np.complex128 if np.iscomplexobj(xa) or np.iscomplexobj(ra) else np.float64
    return xa.astype(dt, copy=False), ra.astype(dt, copy=False), batched


def _check_range(data_range: float) -> float:
    try:
        dr = float(data_range)
    except (TypeError, ValueError):
        raise ValueError(f"data_range must be a positive number, got {data_range!r}") from None
    if not math.isfinite(dr) or dr <= 0:
        raise ValueError(f"data_range must be a positive finite number, got {data_range!r}")
    return dr


def _out(values: np.ndarray, batched: bool) -> Value:
    return values if batched else float(values[0])


def _mse(x: np.ndarray, ref: np.ndarray) -> np.ndarray:
    return (np.abs(x - ref) ** 2).reshape(x.shape[0], -1).mean(axis=1)


def _psnr_from_mse(mse: np.ndarray, dr: float) -> np.ndarray:
    with np.errstate(divide="ignore"):
        return np.where(mse > 0, 10.0 * np.log10(dr**2 / np.where(mse > 0, mse, 1.0)), np.inf)


def _ssim_slices(x: np.ndarray, ref: np.ndarray, dr: float) -> np.ndarray:
    h, w = x.shape[1:]
    if min(h, w) < 7:
        raise ValueError(f"SSIM needs slices of at least 7x7 pixels, got {h}x{w}")
    return np.array([structural_similarity(xi, ri, data_range=dr) for xi, ri in zip(x, ref, strict=True)], dtype=np.float64)


# --- generic metrics -----------------------------------------------------------------------------


def rmse(x: ArrayLike, ref: ArrayLike) -> Value:
    """Root-mean-square error per slice, in the units of the images.

    Args:
        x, ref: ``[H, W]`` or ``[B, 1, H, W]``, real (complex allowed: ``|x - ref|`` is used).

    Returns:
        A float for ``[H, W]``; a numpy array ``[B]`` for a batch.
    """
    xa, ra, batched = _slices(x, ref, allow_complex=True)
    return _out(np.sqrt(_mse(xa, ra)), batched)


def psnr(x: ArrayLike, ref: ArrayLike, data_range: float) -> Value:
    """Peak signal-to-noise ratio ``10 log10(data_range^2 / MSE)`` in dB, per slice.

    Args:
        x: reconstruction ``[H, W]`` or ``[B, 1, H, W]``, real.
        ref: reference of the same shape.
        data_range: the peak-to-peak range of the intensity scale (required, > 0), e.g. 2000 for
            a [-1000, 1000] HU window or 1 for normalised magnitude.

    Returns:
        dB as a float (``[H, W]``) or numpy array ``[B]``; ``inf`` where ``x == ref`` exactly.
    """
    dr = _check_range(data_range)
    xa, ra, batched = _slices(x, ref)
    return _out(_psnr_from_mse(_mse(xa, ra), dr), batched)


def ssim(x: ArrayLike, ref: ArrayLike, data_range: float) -> Value:
    """Structural similarity (Wang et al. 2004, scikit-image implementation) per 2D slice.

    Args:
        x: reconstruction ``[H, W]`` or ``[B, 1, H, W]``, real, slices at least 7x7.
        ref: reference of the same shape.
        data_range: the intensity range (required, > 0); it sets SSIM's stabilising constants
            ``C1 = (0.01 L)^2``, ``C2 = (0.03 L)^2``.

    Returns:
        Mean SSIM as a float (``[H, W]``) or numpy array ``[B]``; 1 for identical images.
    """
    dr = _check_range(data_range)
    xa, ra, batched = _slices(x, ref)
    return _out(_ssim_slices(xa, ra, dr), batched)


# --- modality conventions ------------------------------------------------------------------------


def ct_metrics(
    x_hu: ArrayLike, ref_hu: ArrayLike, window: tuple[float, float] = CT_WINDOW_HU
) -> dict[str, Value]:
    """CT quality in Hounsfield units on a stated window (the module's convention).

    Both images are clipped to ``window`` and compared with ``data_range = window[1] - window[0]``.

    Args:
        x_hu: reconstruction in HU, ``[H, W]`` or ``[B, 1, H, W]``.
        ref_hu: reference in HU, same shape.
        window: ``(low, high)`` HU; default ``(-1000, 1000)``, data_range 2000.

    Returns:
        ``{"psnr": dB, "ssim": ..., "rmse": HU on the clipped window, "rmse_raw": HU unclipped}``;
        each a float for one slice or a numpy array ``[B]`` for a batch.
        ``psnr == 20 log10(width / rmse)``.
    """
    lo, hi = float(window[0]), float(window[1])
    if not (math.isfinite(lo) and math.isfinite(hi) and hi > lo):
        raise ValueError(f"window must be (low, high) with low < high, got {window!r}")
    xa, ra, batched = _slices(x_hu, ref_hu)
    xc, rc = np.clip(xa, lo, hi), np.clip(ra, lo, hi)
    dr = hi - lo
    mse = _mse(xc, rc)
    return {
        "psnr": _out(_psnr_from_mse(mse, dr), batched),
        "ssim": _out(_ssim_slices(xc, rc, dr), batched),
        "rmse": _out(np.sqrt(mse), batched),
        "rmse_raw": _out(np.sqrt(_mse(xa, ra)), batched),
    }


def mr_metrics(x_mag: ArrayLike, ref_mag: ArrayLike, percentile: float = 99.9) -> dict[str, Value]:
    """MRI quality on magnitude images normalised by the reference (the module's convention).

    Each slice pair is divided by the reference slice's ``percentile``-th percentile of magnitude
    (99.9 by default, robust to a few hot pixels), then compared with ``data_range = 1``. Complex
    inputs are reduced to magnitude first. No other scaling is applied: a reconstruction on a
    different intensity scale than the reference scores badly, by design.

    Args:
        x_mag: reconstruction ``[H, W]`` or ``[B, 1, H, W]``, magnitude (or complex).
        ref_mag: reference of the same shape, magnitude (or complex).
        percentile: normalisation percentile of the reference magnitude.

    Returns:
        ``{"psnr": dB, "ssim": ..., "rmse": in units of the normalised scale}``; floats for one
        slice, numpy arrays ``[B]`` for a batch.
    """
    xa, ra, batched = _slices(x_mag, ref_mag, allow_complex=True)
    xa, ra = np.abs(xa), np.abs(ra)
    scale = np.percentile(ra.reshape(ra.shape[0], -1), percentile, axis=1)
    if not (scale > 0).all():
        raise ValueError("ref has a slice whose magnitude percentile is zero; cannot normalise")
    xn, rn = xa / scale[:, None, None], ra / scale[:, None, None]
    mse = _mse(xn, rn)
    return {
        "psnr": _out(_psnr_from_mse(mse, 1.0), batched),
        "ssim": _out(_ssim_slices(xn, rn, 1.0), batched),
        "rmse": _out(np.sqrt(mse), batched),
    }


def body_mask(reference: np.ndarray, modality: str) -> np.ndarray:
    """``[B, H, W]`` bool: the pixels of reference slices ``[B, H, W]`` inside the body, where a
    reader looks (CT: above :data:`CT_BODY_HU`; MR: magnitude above :data:`MR_BODY_FRACTION` of
    each slice's 99.9th percentile). Statistics over whole slices would be dominated by air."""
    ref = np.asarray(reference)
    if modality == "ct":
        return ref > CT_BODY_HU
    mag = np.abs(ref)
    return mag > MR_BODY_FRACTION * np.percentile(mag, 99.9, axis=(-2, -1), keepdims=True)


# --- between slices ------------------------------------------------------------------------------


def z_variation(volume: ArrayLike, mask: np.ndarray | None = None) -> float:
    """Mean absolute difference between neighbouring slices of a stack ``[Z, H, W]`` (its units).

    Slice-wise reconstruction with a 2D prior adds slice-to-slice variation that the anatomy does
    not have (flicker in coronal and sagittal reformats); compare a result's value with its
    reference's. ``mask`` ``[Z, H, W]`` (bool) restricts it to pixels inside the mask on both
    slices of a pair (e.g. the body, where air would dilute it). Needs at least two slices.
    """
    v = _to_numpy(volume, "volume").astype(np.float64)
    if v.ndim == 4 and v.shape[1] == 1:
        v = v[:, 0]
    if v.ndim != 3 or v.shape[0] < 2:
        raise ValueError(f"z_variation needs a stack [Z, H, W] of at least 2 slices, got shape {v.shape}")
    diff = np.abs(np.diff(v, axis=0))
    if mask is None:
        return float(diff.mean())
    m = np.asarray(mask, dtype=bool).reshape(v.shape)
    pair = m[1:] & m[:-1]
    if not pair.any():
        raise ValueError("z_variation: the mask selects no pixel on two neighbouring slices")
    return float(diff[pair].mean())

