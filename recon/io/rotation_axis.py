"""Rotation-axis offset of parallel-beam sinograms: estimation and correction.

The offset is where the rotation axis projects onto the detector, in detector pixels from the
detector centre (index ``(n_detectors - 1) / 2``, where the reconstruction operators put the
axis); positive means towards higher detector indices.

Estimation follows N. T. Vo, M. Drakopoulos, R. C. Atwood, C. Reinhard, "Reliable method for
calculating the center of rotation in parallel-beam tomography", Opt. Express 22, 19078 (2014),
in the coarse-to-fine variant of its reference implementation (Vo's ``find_center_vo``, also in
tomopy): the 0-180 degree sinogram mirrored along the detector is the 180-360 degree sinogram of
an object rotating about the true axis; stacked under the original after a trial shift, the two
halves join into one sinogram of 360 degrees only at the right shift, and then the 2-D Fourier
transform of the stack has (almost) no energy inside a double wedge around the angular-frequency
axis. The metric is the mean Fourier magnitude in that wedge: searched over half-pixel steps, then
refined around the minimum by sub-pixel (cubic-spline) shifts.

Correction (:func:`recentre`) shifts every sinogram row by sub-pixel interpolation so the axis
lies at the detector centre; the geometry stays the one the operators already take (see
``docs/file-formats.md`` for why the data, not the geometry, are moved).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

__all__ = ["AxisEstimate", "estimate_axis_offset", "half_turn", "recentre", "vo_metric"]


@dataclass(frozen=True)
class AxisEstimate:
    """The estimated offset (detector pixels) and the Vo metric at it and at zero offset."""

    offset: float
    metric: float
    metric_at_zero: float


def half_turn(sino: np.ndarray, angles: np.ndarray) -> np.ndarray:
    """The rows of ``sino`` ``[A, D]`` whose angles (radians) fall in ``[a0, a0 + pi)``, in angle order.

    Raises:
        ValueError: the angles do not cover (nearly) half a turn.
    """
    order = np.argsort(angles)
    a = angles[order] - angles[order][0]
    step = float(np.median(np.diff(a))) if a.size > 1 else 0.0
    keep = a < math.pi - 0.5 * step
    if a.size < 8 or a[keep][-1] < math.pi - 1.5 * step:
        raise ValueError(f"the angles cover {math.degrees(a[-1]):.1f} degrees; the axis estimate needs a 180-degree scan")
    return sino[order][keep]


def _wedge_mask(n_rows: int, n_cols: int, radius: float, drop: int) -> np.ndarray:
    """The double-wedge region ``[n_rows, n_cols]`` of the centred 2-D spectrum (Vo et al. 2014, Fig. 3).

    ``radius`` (detector pixels) sets the wedge's opening: an object of that radius puts no
    energy outside it at the right shift. Rows within ``drop`` of the zero angular frequency are
    left out because low frequencies carry the object itself.
    """
    du = 1.0 / n_cols
    dv = (n_rows - 1.0) / (n_rows * 2.0 * math.pi)
    cen_row, cen_col = int(math.ceil(n_rows / 2.0) - 1), int(math.ceil(n_cols / 2.0) - 1)
    drop = min(drop, int(math.ceil(0.05 * n_rows)))
    mask = np.zeros((n_rows, n_cols), dtype=np.float64)
    for i in range(n_rows):
        pos = int(math.ceil(((i - cen_row) * dv / radius) / du))
        lo, hi = np.clip(sorted((-pos + cen_col, pos + cen_col)), 0, n_cols - 1)
        mask[i, lo:hi + 1] = 1.0
    mask[max(cen_row - drop, 0):cen_row + drop + 1] = 0.0
    mask[:, max(cen_col - 1, 0):cen_col + 2] = 0.0
    return mask


def vo_metric(sino: np.ndarray, centre: float, mask: np.ndarray) -> float:
    """Mean Fourier magnitude in ``mask`` of ``sino`` stacked on its mirror, for axis index ``centre``.

    ``sino`` is ``[A, D]`` over half a turn; the mirrored half is shifted by ``2 (centre - (D-1)/2)``
    and the columns it leaves empty are filled from the sinogram flipped in angle, as in the
    reference implementation, so that no artificial edge enters the spectrum.
    """
    n_cols = sino.shape[1]
    shift = 2.0 * (centre - (n_cols - 1) / 2.0)
    flipped = ndimage.shift(sino[:, ::-1], (0, shift), order=3, mode="nearest")
    fill = sino[::-1]
    if shift >= 0:
        k = int(math.ceil(shift))
        flipped[:, :k] = fill[:, :k]
    else:
        k = int(math.floor(shift))
        flipped[:, k:] = fill[:, k:]
    spectrum = np.abs(np.fft.fftshift(np.fft.fft2(np.vstack([sino, flipped]))))
    return float(np.mean(spectrum * mask))


def estimate_axis_offset(
    sino: np.ndarray, angles: np.ndarray, search: float | None = None, step: float = 0.1,
    ratio: float = 0.5, drop: int = 20,
) -> AxisEstimate:
    """Rotation-axis offset of a parallel-beam sinogram by Vo et al. (2014), in detector pixels.

    Args:
        sino: line integrals ``[A, D]`` (or ``[n, A, D]``, averaged over slices first: the axis is
            the same for every detector row).
        angles: ``[A]`` radians; the rows within the first half turn are used.
        search: largest offset tried, pixels (default a quarter of the detector).
        step: final resolution of the fine search, pixels.
        ratio: object diameter as a fraction of the detector width (sets the wedge's opening).
        drop: rows around zero angular frequency left out of the wedge.
    """
    sino = np.asarray(sino, dtype=np.float64)
    if sino.ndim == 3:
        sino = sino.mean(axis=0)
    half = half_turn(sino, np.asarray(angles, dtype=np.float64))
    # The coarse search runs on data smoothed along the angles, as Vo's implementation does, so
    # noise cannot make a false minimum; the fine search does not, because smoothing across the
    # ends of the half turn (where it joins its mirror) biases the minimum by up to a pixel.
    smooth = ndimage.gaussian_filter(half, (3, 1), mode="reflect")
    n_cols = half.shape[1]
    mid = (n_cols - 1) / 2.0
    search = n_cols / 4.0 if search is None else float(search)
    mask = _wedge_mask(2 * half.shape[0], n_cols, 0.5 * ratio * n_cols, drop)
    coarse = mid + np.arange(-search, search + 0.25, 0.5)
    best = coarse[int(np.argmin([vo_metric(smooth, c, mask) for c in coarse]))]
    fine = best + np.arange(-1.0, 1.0 + step / 2, step)
    metrics = [vo_metric(half, c, mask) for c in fine]
    i = int(np.argmin(metrics))
    return AxisEstimate(offset=float(fine[i] - mid), metric=float(metrics[i]), metric_at_zero=vo_metric(half, mid, mask))


def recentre(sino: np.ndarray, offset: float) -> np.ndarray:
    """Shift sinograms ``[..., D]`` by ``-offset`` pixels along the detector so the axis is at the centre.

    Cubic-spline interpolation; detector pixels shifted in from beyond the edge repeat the edge
    reading (the object is assumed inside the field of view). Same shape and dtype.
    """
    shifts = (0.0,) * (sino.ndim - 1) + (-float(offset),)
    return ndimage.shift(np.asarray(sino, dtype=np.float64), shifts, order=3, mode="nearest").astype(sino.dtype)
