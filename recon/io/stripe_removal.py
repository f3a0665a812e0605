"""Stripe (ring-artefact) removal in sinograms by sorting, after Vo, Atwood, Drakopoulos, Opt. Express 26, 28396 (2018).

A detector pixel whose gain differs slightly from the flat field adds a constant offset to its
sinogram column (in line integrals), a stripe that FBP turns into a ring. The paper's sorting-based
approach (its Algorithm 3, ``remove_stripe_based_sorting`` of the authors' code): sort every
column along the angles, so that each row of the sorted sinogram holds the same rank of every
column and varies smoothly across the detector except at stripes; median filter the sorted
sinogram across the detector; put the values back in their original order.

The median also flattens features of the sorted sinogram narrower than its window (small,
high-contrast details that stay near the same detector pixels at every angle, close to the
rotation axis), so the window should be well below the width of such features: the paper uses 21
to 31 pixels on detectors of ~2,500.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

DEFAULT_SIZE = 21


def remove_stripes_sorting(sino: np.ndarray, size: int = DEFAULT_SIZE) -> np.ndarray:
    """Sinograms ``[..., A, D]`` (line integrals) with stripes removed; same shape and dtype.

    Args:
        sino: one ``[A, D]`` sinogram or a stack ``[n, A, D]``; each slice is treated on its own.
        size: width (detector pixels) of the median filter, wider than the widest stripe (odd keeps
            it centred).
    """
    if size < 3:
        raise ValueError(f"remove_stripes_sorting: size is {size}, expected >= 3")
    data = np.asarray(sino, dtype=np.float64)
    order = np.argsort(data, axis=-2, kind="stable")
    ranked = np.take_along_axis(data, order, axis=-2)
    filtered = ndimage.median_filter(ranked, size=(1,) * (data.ndim - 1) + (size,), mode="reflect")
    out = np.empty_like(data)
    np.put_along_axis(out, order, filtered, axis=-2)
    return out.astype(sino.dtype)
