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


def _line_integrals_from_counts(
    counts: np.ndarray, acq: Mapping[str, Any], flat: float | np.ndarray | None
) -> np.ndarray:
    """Raw counts ``[n, A, D]`` -> float32 line integrals by :func:`operators.noise.counts_to_line_integrals`.

    Computed in float64; ``flat`` (a number or a loaded ``[D]`` / ``[A, D]`` array) replaces ``i0``.
    """
    if isinstance(flat, np.ndarray):
        flat = torch.from_numpy(flat.astype(np.float64))
    p = counts_to_line_integrals(
        torch.from_numpy(np.asarray(counts, dtype=np.float64)),
        i0=acq.get("i0"),
        dark=acq.get("dark", 0.0),
        flat=flat,
        eps=acq.get("min_counts", COUNT_FLOOR),
    )
    return p.numpy().astype(np.float32)


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
        InputError: a flat-field file that is unreadable, non-finite or of the wrong shape, or a
            reference intensity (``flat - dark``, or ``i0``) that is not positive.
    """
    n_angles, n_det = counts.shape[1:]
    dark = acq.get("dark", 0.0)
    flat: Any = acq.get("flat")
    if isinstance(flat, str):
        fpath = root / flat
        flat = real_float32(fpath, load_array(fpath, key="flat"))
        if flat.shape not in ((n_det,), (n_angles, n_det)):
            raise InputError(fpath, f"flat field has shape {flat.shape}, expected [{n_det}] or [{n_angles}, {n_det}]")
    # i0 counts photons above the dark level, so without a flat field the air reading is i0 + dark.
    if np.any((np.asarray(flat) - dark if flat is not None else np.asarray(acq["i0"])) <= 0):
        raise InputError(gpath, "flat (or i0) must exceed dark")
    return _line_integrals_from_counts(counts, acq, flat)
