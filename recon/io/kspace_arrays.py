"""K-space, sampling masks and coil maps brought to the shapes the reconstruction uses, with their checks.

k-space complex64 ``[n_slices, n_coils, H, W]``; mask bool ``[n_slices, H, W]``; coil maps
complex64 ``[n_slices, n_coils, H, W]``. Shared by the k-space reader and writer; every refusal is
an :class:`InputError` naming the file.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from recon.errors import InputError
from recon.io.arrays import refuse_nonfinite


def complex_finite(path: Path, arr: np.ndarray, what: str) -> np.ndarray:
    """``arr`` as complex64 (same shape); refused if non-numeric, real-valued or holding NaN/inf."""
    if not np.issubdtype(arr.dtype, np.number):
        raise InputError(path, f"{what} has non-numeric type {arr.dtype}")
    if not np.iscomplexobj(arr):
        raise InputError(path, f"{what} is real ({arr.dtype}); k-space must be complex (store complex64, not real/imag pairs)")
    arr = arr.astype(np.complex64, copy=False)
    refuse_nonfinite(path, arr, what)
    return arr


def to_4d(path: Path, arr: np.ndarray, what: str) -> np.ndarray:
    """``[slices, coils, H, W]`` from 4-D as is, 3-D ``[slices, H, W]`` (single-coil) or 2-D ``[H, W]``."""
    if arr.ndim == 2:
        return arr[None, None]
    if arr.ndim == 3:
        return arr[:, None]  # [slices, H, W] single-coil, as fastMRI
    if arr.ndim == 4:
        return arr
    raise InputError(path, f"{what} has shape {arr.shape}; expected [slices, coils, H, W], [slices, H, W] or [H, W]")


def mask_to_stack(path: Path, mask: np.ndarray, n: int, h: int, w: int) -> np.ndarray:
    """Broadcast a mask of shape [W], [H, W], [n, H, W], [n, 1, H, W] or [n, W] to [n, H, W] bool."""
    m = np.asarray(mask)
    if np.iscomplexobj(m):
        m = np.abs(m)
    if not np.all(np.isfinite(m)):
        raise InputError(path, "mask contains NaN/inf")
    m = m != 0
    m = np.squeeze(m) if m.ndim > 2 and m.size in (w, h * w) else m
    if m.shape == (w,):
        m = np.broadcast_to(m[None, None, :], (n, h, w))
    elif m.shape == (h, w):
        m = np.broadcast_to(m[None], (n, h, w))
    elif m.shape == (n, w):
        m = np.broadcast_to(m[:, None, :], (n, h, w))
    elif m.shape == (n, 1, h, w):
        m = m[:, 0]
    elif m.shape != (n, h, w):
        raise InputError(path, f"mask has shape {np.asarray(mask).shape}; expected [{w}], [{h}, {w}] or [{n}, {h}, {w}] to match "
                               "k-space")
    if not m.any():
        raise InputError(path, "mask samples nothing")
    return np.ascontiguousarray(m)


def maps_to_stack(path: Path, maps: np.ndarray, n: int, c: int, h: int, w: int) -> np.ndarray:
    """Coil maps ``[n, C, H, W]`` or ``[C, H, W]`` (one set for every slice) as complex64 ``[n, C, H, W]``."""
    m = complex_finite(path, maps, "coil maps")
    if m.shape == (c, h, w):
        m = np.broadcast_to(m[None], (n, c, h, w))
    if m.shape != (n, c, h, w):
        raise InputError(path, f"coil maps have shape {maps.shape}; expected [{n}, {c}, {h}, {w}] or [{c}, {h}, {w}]")
    return np.ascontiguousarray(m)
