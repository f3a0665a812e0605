"""Dead and hot detector pixels of projection images: found in the dark and flat frames, interpolated along the detector.

A pixel is defective where its flat reading is zero or not above its dark reading (dead), or its
flat or dark reading sits at the largest value of the data's integer type (saturated, hot). Such
a pixel carries no usable transmission, and its sinogram column would be a stripe of arbitrary
height; its line integrals are replaced by linear interpolation between the nearest good pixels
of the same detector row, at every angle.
"""

from __future__ import annotations

import numpy as np

#: Above this share of defective pixels the dark/flat fields are taken to be wrong, not the detector.
MAX_DEFECT_FRACTION = 0.05


def defect_mask(dark: np.ndarray | None, flat: np.ndarray | None, saturation: float | None) -> np.ndarray | None:
    """Bool ``[rows, D]`` of defective pixels from fields ``[frames, rows, D]``; None without a flat field."""
    if flat is None:
        return None
    d = np.zeros_like(flat) if dark is None else np.broadcast_to(dark, flat.shape)
    bad = ((flat <= 0) | (flat <= d)).any(axis=0)
    if saturation is not None:
        bad |= (flat >= saturation).any(axis=0) | (d >= saturation).any(axis=0)
    return bad


def interpolate_defects(sino: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Sinograms ``[rows, A, D]`` with the columns ``mask`` ``[rows, D]`` marks replaced along the detector.

    Linear interpolation between the nearest good pixels of each row (constant beyond the first
    and last); a row with no good pixel is left as it is. Returns a new array of ``sino``'s dtype.
    """
    out = np.array(sino, copy=True)
    cols = np.arange(sino.shape[-1])
    for r in np.flatnonzero(mask.any(axis=1)):
        good = ~mask[r]
        if not good.any():
            continue
        for a in range(sino.shape[1]):
            out[r, a, ~good] = np.interp(cols[~good], cols[good], sino[r, a, good])
    return out
