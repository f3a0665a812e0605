"""Projection images as a sinogram directory's data: a TIFF stack or data-exchange HDF5, with dark and flat frames.

A projection image is one detector reading ``[rows, n_detectors]`` per angle; stacked they are
``[n_angles, rows, n_detectors]`` and detector row ``r`` is the sinogram ``[n_angles, n_detectors]``
of slice ``r``. The sidecar's ``projections`` names the data:

- a directory of ``.tif``/``.tiff`` files, one per angle, taken in natural name order;
- a multi-page ``.tif`` file ``[n_angles, rows, n_detectors]``;
- an HDF5 file in the data-exchange layout (:mod:`recon.io.data_exchange`).

``dark`` and ``flat`` (counts) are each a number, a file or a list of files (``.tif``, ``.npy``,
``.npz``) holding one frame ``[rows, n_detectors]`` or several ``[frames, rows, n_detectors]``;
for HDF5 they default to ``/exchange/data_dark`` and ``/exchange/data_white``. Several frames are
averaged; with ``dark_at``/``flat_at`` (the projection index at which each frame was taken, e.g.
``[0, 0, 180, 180]`` for two frames before and two after a 180-projection scan) the field seen by
projection ``k`` is interpolated linearly in index between the frames around it, which follows a
beam that drifts during the scan. ``rows: [start, stop]`` keeps only those detector rows. Dead and
hot pixels are found and interpolated after the log transform (:mod:`recon.io.detector_defects`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from recon.errors import InputError
from recon.io.arrays import load_array, refuse_nonfinite
from recon.io.atomic import is_partial
from recon.io.data_exchange import DARK, DATA, HDF5_SUFFIXES, WHITE, read_dataset

TIFF_SUFFIXES = (".tif", ".tiff")


@dataclass
class Projections:
    """Raw projection data with the dark and flat field each projection saw.

    Attributes:
        counts: float32 ``[n_angles, rows, n_detectors]`` detector readings.
        dark, flat: float64 ``[1 | n_angles, rows, n_detectors]`` readings, or None (flat: use ``i0``;
            dark: 0). One frame when averaged, one per projection when interpolated.
        saturation: the largest value the data's integer type holds (readings at it are clipped),
            or None for float data.
        source, dark_path, flat_path: where they came from, for error messages.
    """

    counts: np.ndarray
    dark: np.ndarray | None
    flat: np.ndarray | None
    saturation: float | None
    source: Path
    dark_path: Path | None
    flat_path: Path | None


def _natural_key(name: str) -> list[Any]:
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", name)]


def _saturation(dtype: np.dtype) -> float | None:
    return float(np.iinfo(dtype).max) if np.issubdtype(dtype, np.integer) else None


def _load_stack(path: Path) -> np.ndarray:
    """Projection images ``[n_angles, rows, D]`` in their stored dtype from a directory, TIFF or HDF5."""
    if path.is_dir():
        files = sorted((p for p in path.iterdir() if p.is_file() and not is_partial(p)
                        and p.suffix.lower() in TIFF_SUFFIXES), key=lambda p: _natural_key(p.name))
        if not files:
            raise InputError(path, "projection directory holds no .tif/.tiff images")
        images = []
        for f in files:
            a = load_array(f)
            if a.ndim != 2:
                raise InputError(f, f"projection image has shape {a.shape}, expected [rows, n_detectors]")
            if images and a.shape != images[0].shape:
                raise InputError(f, f"projection image shape {a.shape} differs from {images[0].shape} in {files[0].name}")
            images.append(a)
        return np.stack(images)
    if path.suffix.lower() in HDF5_SUFFIXES:
        stack = read_dataset(path, DATA)
    elif not path.exists():
        raise InputError(path, "projection data named in geometry.json is missing")
    else:
        stack = load_array(path)
    if stack.ndim == 2:
        stack = stack[None]
    if stack.ndim != 3:
        raise InputError(path, f"projections have shape {stack.shape}, expected [n_angles, rows, n_detectors]")
    return stack


def _load_frames(root: Path, names: str | list[str], shape: tuple[int, int]) -> tuple[np.ndarray, Path]:
    """Dark or flat frames ``[frames, rows, D]`` (float64) from one file or several, checked against ``shape``."""
    frames = []
    paths = [root / n for n in ([names] if isinstance(names, str) else names)]
    for p in paths:
        if not p.is_file():
            raise InputError(p, "dark/flat file named in geometry.json is missing")
        a = np.asarray(load_array(p), dtype=np.float64)
        a = a[None] if a.ndim == 2 else a
        if a.ndim != 3 or a.shape[1:] != shape:
            raise InputError(p, f"frames have shape {a.shape}, expected [rows, n_detectors] = {list(shape)} (or [frames, ...])")
        refuse_nonfinite(p, a, "frames")
        frames.append(a)
    return np.concatenate(frames), paths[0]


def field_per_projection(frames: np.ndarray, at: list[float] | None, n_angles: int, where: Path) -> np.ndarray:
    """The dark or flat field seen by each projection, float64 ``[1 | n_angles, rows, D]``.

    Without ``at`` the frames are averaged (``[1, rows, D]``). With ``at`` (projection index of each
    frame) frames at the same index are averaged and the field of projection ``k`` is interpolated
    linearly between the indices around ``k`` (held constant beyond the first and last).
    """
    if at is None:
        return frames.mean(axis=0, keepdims=True)
    if len(at) != frames.shape[0]:
        raise InputError(where, f"{frames.shape[0]} frames but {len(at)} indices in the sidecar's *_at field")
    positions = np.unique(at)
    means = np.stack([frames[np.asarray(at) == x].mean(axis=0) for x in positions])
    if positions.size == 1:
        return means[:1]
    k = np.arange(n_angles, dtype=np.float64)
    hi = np.clip(np.searchsorted(positions, k, side="right"), 1, positions.size - 1)
    lo = hi - 1
    w = np.clip((k - positions[lo]) / (positions[hi] - positions[lo]), 0.0, 1.0)[:, None, None]
    return (1.0 - w) * means[lo] + w * means[hi]


def _field(root: Path, spec: Any, at: list[float] | None, hdf5: Path | None, name: str,
           n_angles: int, shape: tuple[int, int]) -> tuple[np.ndarray | None, Path | None]:
    if isinstance(spec, (str, list)):
        frames, path = _load_frames(root, spec, shape)
    elif spec is not None:
        return np.full((1, *shape), float(spec)), None
    elif hdf5 is not None and (data := read_dataset(hdf5, name, required=False)) is not None:
        frames, path = np.asarray(data, dtype=np.float64), hdf5
        frames = frames[None] if frames.ndim == 2 else frames
        if frames.ndim != 3 or frames.shape[1:] != shape:
            raise InputError(hdf5, f"{name} has shape {frames.shape}, expected [frames, {shape[0]}, {shape[1]}]")
        refuse_nonfinite(hdf5, frames, name)
    else:
        return None, None
    return field_per_projection(frames, at, n_angles, path), path


def read_projections(root: Path, sidecar: Mapping[str, Any], gpath: Path, n_angles: int, n_det: int) -> Projections:
    """Projection images and their dark/flat fields, checked against the geometry.

    Raises:
        InputError: naming the file: missing or unreadable data/dark/flat, a projection count that
            differs from the angles, a detector width that differs from ``n_detectors``, frames of
            another shape, NaN/inf, a malformed ``rows``.
    """
    if not isinstance(sidecar["projections"], str):
        raise InputError(gpath, "field 'projections' must be a file or directory name")
    source = root / sidecar["projections"]
    raw = _load_stack(source)
    if raw.shape[0] != n_angles:
        raise InputError(source, f"{raw.shape[0]} projections, but geometry.json gives {n_angles} angles")
    if raw.shape[2] != n_det:
        raise InputError(source, f"projections are {raw.shape[2]} detectors wide, but geometry.json says n_detectors {n_det}")
    rows = sidecar.get("rows")
    if rows is not None:
        if not (isinstance(rows, list) and len(rows) == 2 and all(isinstance(r, int) and not isinstance(r, bool) for r in rows)
                and 0 <= rows[0] < rows[1] <= raw.shape[1]):
            raise InputError(gpath, f"field 'rows' is {rows!r}, expected [start, stop] within 0..{raw.shape[1]}")
    counts = np.asarray(raw, dtype=np.float32)
    refuse_nonfinite(source, counts, "projections")
    hdf5 = source if source.suffix.lower() in HDF5_SUFFIXES else None
    shape = (raw.shape[1], raw.shape[2])
    dark, dark_path = _field(root, sidecar.get("dark"), sidecar.get("dark_at"), hdf5, DARK, n_angles, shape)
    flat, flat_path = _field(root, sidecar.get("flat"), sidecar.get("flat_at"), hdf5, WHITE, n_angles, shape)
    if rows is not None:
        r = slice(rows[0], rows[1])
        counts = counts[:, r]
        dark = None if dark is None else dark[:, r]
        flat = None if flat is None else flat[:, r]
    return Projections(counts, dark, flat, _saturation(raw.dtype), source, dark_path, flat_path)
