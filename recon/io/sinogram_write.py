"""Write a sinogram directory (``geometry.json`` plus data) that :func:`recon.io.sinogram_read.read_sinogram_dir` reads.

Data files are written first and ``geometry.json`` last, each atomically, so a directory with a
sidecar is always complete. The format is described in :mod:`recon.io.sinogram_read`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from recon.io.arrays import as_slice_stack, to_numpy
from recon.io.atomic import atomic_path, atomic_save_npy, atomic_save_npz, atomic_write_json, refuse_to_overwrite
from recon.io.sidecar import reference_text
from recon.io.sinogram_sidecar import GEOMETRY_FILE, validate_geometry


def _as_stack(data: Any) -> np.ndarray:
    """float32 ``[n, A, D]`` from ``[A, D]``, ``[n, A, D]`` or ``[n, 1, A, D]`` (numpy or torch); ValueError otherwise."""
    arr = as_slice_stack(np.asarray(to_numpy(data), dtype=np.float32), "data", "A, D")
    if not np.all(np.isfinite(arr)):
        raise ValueError("data contains NaN or inf")
    return arr


def _save_array(target: Path, fmt: str, a: np.ndarray) -> None:
    """One array (the stack, or a slice) as .npy, .npz (key ``sinogram``) or float32 TIFF, atomically."""
    if fmt == "npy":
        atomic_save_npy(target, a)
    elif fmt == "npz":
        atomic_save_npz(target, sinogram=a)
    else:
        import tifffile

        with atomic_path(target) as tmp:
            tifffile.imwrite(tmp, a, photometric="minisblack")


def write_sinogram_dir(
    path: str | Path,
    data: np.ndarray,
    geometry: Mapping[str, Any],
    *,
    layout: str = "stacked",
    fmt: str = "npy",
    values: str = "line_integrals",
    i0: float | None = None,
    dark: float | None = None,
    flat: float | str | None = None,
    noise: Mapping[str, Any] | None = None,
    slice_names: Sequence[str] | None = None,
    identity: Mapping[str, str] | None = None,
    reference: str | Path | None = None,
    extra: Mapping[str, Any] | None = None,
    overwrite: bool = False,
) -> Path:
    """Write a sinogram directory readable by :func:`read_sinogram_dir`.

    Data files are written first and ``geometry.json`` last, each atomically, so a directory
    with a sidecar is always complete.

    Args:
        path: directory (created if needed).
        data: ``[n, A, D]`` or ``[n, 1, A, D]`` (numpy or torch), line integrals or counts.
        geometry: geometric keys (see :mod:`recon.io.sinogram_read`); ``angles`` a list or
            {start, stop, count}; an :mod:`operators.geometry` object's ``to_dict()`` fits as is.
        layout: ``"stacked"`` (one array) or ``"per_slice"`` (one file per slice).
        fmt: ``"npy"``, ``"npz"``, or ``"tif"`` (per-slice only; float32 TIFF).
        values, i0, dark, flat, noise: acquisition description (see :mod:`recon.io.sinogram_read`);
            ``flat`` may name a ``.npy`` file the caller has placed in the directory.
        slice_names: per-slice names; per-slice files are ``{name}.{fmt}`` and must start with
            ``slice_`` (default ``slice_0000`` ...).
        identity: patient/study identity to carry to the output DICOM.
        reference: path to a DICOM directory or identity JSON, stored relative to ``path`` when
            possible.
        extra: other JSON-serialisable sidecar fields (e.g. provenance of a simulation).
        overwrite: replace existing files.

    Returns:
        The directory.
    """
    root = Path(path)
    arr = _as_stack(data)
    geo = validate_geometry(geometry, None)
    if arr.shape[1:] != (len(geo["angles"]), int(geo["n_detectors"])):
        n_ang, n_det = len(geo["angles"]), geo["n_detectors"]
        raise ValueError(f"data shape {arr.shape} disagrees with geometry ({n_ang} angles x {n_det} detectors)")
    if layout not in ("stacked", "per_slice"):
        raise ValueError(f"layout must be 'stacked' or 'per_slice', got {layout!r}")
    if fmt not in ("npy", "npz", "tif"):
        raise ValueError(f"fmt must be 'npy', 'npz' or 'tif', got {fmt!r}")
    if layout == "stacked" and fmt == "tif":
        raise ValueError("TIFF is only supported for the per-slice layout")
    names = list(slice_names) if slice_names is not None else [f"slice_{i:04d}" for i in range(arr.shape[0])]
    if len(names) != arr.shape[0]:
        raise ValueError(f"{len(names)} slice names for {arr.shape[0]} slices")

    root.mkdir(parents=True, exist_ok=True)
    sidecar: dict[str, Any] = {"format": "recon-sinogram", "version": 1, **geo, "values": values}
    for key, val in (("i0", i0), ("dark", dark), ("flat", flat), ("noise", noise)):
        if val is not None:
            sidecar[key] = val
    targets: list[Path]
    if layout == "stacked":
        targets = [root / f"sinogram.{fmt}"]
        sidecar["data"] = targets[0].name
        if slice_names is not None:
            sidecar["slices"] = names
    else:
        bad = [n for n in names if not n.startswith("slice_") or "/" in n]
        if bad:
            raise ValueError(f"per-slice names must start with 'slice_' and be plain names, got {bad[:3]}")
        targets = [root / f"{n}.{fmt}" for n in names]
        sidecar["slices"] = [t.name for t in targets]
    if identity is not None:
        sidecar["identity"] = dict(identity)
    if reference is not None:
        sidecar["reference"] = reference_text(reference, root)
    if extra:
        for k, v in extra.items():
            sidecar.setdefault(k, v)
    if not overwrite:
        refuse_to_overwrite([*targets, root / GEOMETRY_FILE])

    for t, a in zip(targets, [arr] if layout == "stacked" else list(arr), strict=True):
        _save_array(t, fmt, a)
    atomic_write_json(root / GEOMETRY_FILE, sidecar)
    return root
