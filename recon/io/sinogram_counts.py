"""Raw detector counts of a sinogram directory converted to line integrals.

The one log transform of the project, :func:`operators.noise.counts_to_line_integrals`:
``p = -log(max(counts - dark, min_counts) / (flat - dark))``. Without a flat field the air reading
is ``i0 + dark``; ``min_counts`` (photons, sidecar field) defaults to
:data:`operators.noise.COUNT_FLOOR`, so a ray with fewer photons than that above the dark level
(photon starvation) gets the large finite ``log((flat - dark) / min_counts)`` instead of inf.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from operators.noise import COUNT_FLOOR, counts_to_line_integrals
from recon.errors import InputError
from recon.io.arrays import load_array, real_float32
from recon.io.detector_defects import MAX_DEFECT_FRACTION, defect_mask, interpolate_defects
from recon.io.projection_images import Projections


def _line_integrals_from_counts(
    counts: np.ndarray, acq: Mapping[str, Any], flat: float | np.ndarray | None,
    dark: float | np.ndarray | None = None,
) -> np.ndarray:
    """Raw counts ``[n, A, D]`` -> float32 line integrals by :func:`operators.noise.counts_to_line_integrals`.

    Computed in float64; ``flat`` (a number or an array broadcastable to ``counts``) replaces
    ``i0``; ``dark`` (same forms) replaces the sidecar's number.
    """
    def as_tensor(v: float | np.ndarray | None) -> float | torch.Tensor | None:
        return torch.from_numpy(np.asarray(v, dtype=np.float64)) if isinstance(v, np.ndarray) else v

    p = counts_to_line_integrals(
        torch.from_numpy(np.asarray(counts, dtype=np.float64)),
        i0=acq.get("i0"),
        dark=as_tensor(dark if dark is not None else acq.get("dark", 0.0)),
        flat=as_tensor(flat),
        eps=acq.get("min_counts", COUNT_FLOOR),
    )
    return p.numpy().astype(np.float32)


def line_integrals_from_projections(
    proj: Projections, acq: Mapping[str, Any], gpath: Path
) -> tuple[np.ndarray, dict[str, Any] | None]:
    """Projection counts ``[A, rows, D]`` -> float32 sinograms of line integrals ``[rows, A, D]``.

    Detector row ``r`` becomes slice ``r``; each projection is corrected by the dark and flat
    field it saw (:class:`recon.io.projection_images.Projections`). Dead and hot pixels
    (:mod:`recon.io.detector_defects`) are interpolated along the detector afterwards.

    Returns:
        ``(line integrals, defects)``: ``defects`` is ``{"pixels": n, "first": [[row, col], ...]}``
        when any pixel was interpolated, else None.

    Raises:
        InputError: no flat field and no ``i0``, or a flat field not above the dark field at more
            than :data:`~recon.io.detector_defects.MAX_DEFECT_FRACTION` of the pixels, naming the
            flat-field file (or the sidecar) and how many readings are at fault.
    """
    counts = proj.counts.transpose(1, 0, 2)
    dark = None if proj.dark is None else proj.dark.transpose(1, 0, 2)
    flat = None if proj.flat is None else proj.flat.transpose(1, 0, 2)
    if flat is None and acq.get("i0") is None:
        raise InputError(gpath, "counts need a flat field: give 'flat' (or /exchange/data_white) or 'i0'")
    mask = defect_mask(proj.dark, proj.flat, proj.saturation)
    if mask is not None and mask.mean() > MAX_DEFECT_FRACTION:
        bad = int(((flat - (dark if dark is not None else 0.0)) <= 0).sum())
        raise InputError(proj.flat_path or gpath, f"flat field not above the dark field at {bad} readings "
                         f"({int(mask.sum())} of {mask.size} pixels dead or saturated; at most "
                         f"{MAX_DEFECT_FRACTION:.0%} are interpolated)")
    defects = None
    if mask is not None and mask.any():
        # any positive reference does: these columns are overwritten by interpolation below
        flat = np.where(mask[:, None], (dark if dark is not None else 0.0) + 1.0, flat)
        first = np.argwhere(mask)[:20]
        defects = {"pixels": int(mask.sum()), "first": [[int(r), int(c)] for r, c in first]}
    if flat is not None:
        ref = flat - (dark if dark is not None else 0.0)
        if np.any(ref <= 0):
            raise InputError(proj.flat_path or gpath, f"flat field not above the dark field at {int((ref <= 0).sum())} readings")
    p = _line_integrals_from_counts(counts, acq, flat, dark if dark is not None else 0.0)
    if defects is not None:
        p = interpolate_defects(p, mask)
    return p, defects


def line_integrals_from_sidecar_counts(
    counts: np.ndarray, acq: Mapping[str, Any], root: Path, gpath: Path
) -> np.ndarray:
    """Counts ``[n, A, D]`` (photons) -> float32 line integrals ``[n, A, D]`` (dimensionless).

    Args:
        counts: the directory's data, float32 ``[n_slices, n_angles, n_detectors]``.
        acq: the checked acquisition fields (``i0``, ``dark``, ``flat``, ``min_counts``).
        root: the directory; a ``flat`` given as a file name is loaded from it (``[D]`` or ``[A, D]``).
        gpath: the sidecar, named in errors about the acquisition fields.

    Raises:
        InputError: dark/flat frame files without ``projections``, a flat-field file that is
            unreadable, non-finite or of the wrong shape, or a
            reference intensity (``flat - dark``, or ``i0``) that is not positive.
    """
    n_angles, n_det = counts.shape[1:]
    dark = acq.get("dark", 0.0)
    flat: Any = acq.get("flat")
    # dark and flat frames given as image files belong to projection images (recon.io.projection_images)
    if not isinstance(dark, float) or isinstance(flat, list):
        raise InputError(gpath, "dark/flat frame files need 'projections'; for sinograms 'dark' is a number "
                         "and 'flat' a number or one .npy")
    if isinstance(flat, str):
        fpath = root / flat
        flat = real_float32(fpath, load_array(fpath, key="flat"))
        if flat.shape not in ((n_det,), (n_angles, n_det)):
            raise InputError(fpath, f"flat field has shape {flat.shape}, expected [{n_det}] or [{n_angles}, {n_det}]")
    # i0 counts photons above the dark level, so without a flat field the air reading is i0 + dark.
    if np.any((np.asarray(flat) - dark if flat is not None else np.asarray(acq["i0"])) <= 0):
        raise InputError(gpath, "flat (or i0) must exceed dark")
    return _line_integrals_from_counts(counts, acq, flat)
