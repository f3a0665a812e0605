"""The benchmark's inputs: DICOM series or NIfTI volumes, and the slices selected from each.

CT takes DICOM series directories (HU). MR takes DICOM series directories or NIfTI volumes (a
``.nii`` / ``.nii.gz`` file, or a directory whose image volumes are all used). NIfTI volumes are
read by the training-data loader: only slices with at least 1 % brain mask are kept (so slice
indices count those), and z-scored intensities (BraTS ``*_subtrMeanDivStd``) are shifted so the
darkest brain voxel is 0 and the background 0, a non-negative magnitude as the MR percentile
normalisation expects.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipelines.training_data import NIFTI_SUFFIXES, is_mask_name, nifti_slices
from recon.errors import InputError

__all__ = ["Volume", "load_volumes", "parse_slice_spec", "select_slices"]


@dataclass
class Volume:
    """The selected slices of one input volume.

    It offers the attributes :func:`pipelines.simulate.simulate_ct` / ``simulate_mr`` read from a
    DICOM :class:`~recon.io.dicom_read.Series` (``pixels``, ``pixel_spacing_mm``, ``n_slices``), so
    a NIfTI volume is simulated exactly like a DICOM series.

    Attributes:
        name: a short label (the file or directory name; no patient identifiers).
        path: where it was read from.
        kind: ``"dicom"`` or ``"nifti"``.
        pixels: float32 ``[n, H, W]`` selected slices (HU for CT, magnitude for MR).
        pixel_spacing_mm: ``(row, column)`` spacing.
        slice_indices: index of each selected slice in the volume's slice list.
        n_available: slices the volume offered before selection.
    """

    name: str
    path: Path
    kind: str
    pixels: np.ndarray
    pixel_spacing_mm: tuple[float, float]
    slice_indices: list[int]
    n_available: int

    @property
    def n_slices(self) -> int:
        return int(self.pixels.shape[0])


def parse_slice_spec(spec: str, n: int, where: Path | None = None) -> list[int]:
    """Slice indices of a volume with ``n`` slices selected by ``spec``.

    ``spec`` is ``"all"``; a Python-style range ``"start:stop[:step]"`` (stop exclusive, parts may
    be empty: ``"::4"`` is every 4th slice, ``"40:80"`` slices 40-79); or a comma-separated list
    of indices (``"10,20,30"``). Negative indices count from the end. Indices outside the volume
    are an error for lists and clipped for ranges.
    """
    text = spec.strip().lower()
    if text in ("", "all"):
        return list(range(n))
    try:
        if ":" in text:
            parts = text.split(":")
            if len(parts) > 3:
                raise ValueError
            vals = [int(p) if p.strip() else None for p in parts]
            if len(vals) == 3 and vals[2] == 0:
                raise ValueError
            return list(range(n))[slice(*vals)]
        idx = [int(p) for p in text.split(",") if p.strip()]
    except ValueError:
        raise InputError(where, f"--slices {spec!r}: expected 'all', 'start:stop[:step]' or a list like '10,20,30'") from None
    out = []
    for i in idx:
        j = i + n if i < 0 else i
        if not 0 <= j < n:
            raise InputError(where, f"--slices {spec!r}: slice {i} is outside the volume's {n} slices")
        out.append(j)
    return sorted(set(out))


def select_slices(indices: Sequence[int], max_slices: int) -> list[int]:
    """At most ``max_slices`` of ``indices``, evenly spread over them (all when ``max_slices <= 0``)."""
    idx = list(indices)
    if max_slices <= 0 or len(idx) <= max_slices:
        return idx
    picks = np.linspace(0, len(idx) - 1, max_slices).round().astype(int)
    return [idx[k] for k in sorted(set(picks.tolist()))]


def _is_nifti(p: Path) -> bool:
    return p.is_file() and p.name.lower().endswith(NIFTI_SUFFIXES)


def _nifti_files(path: Path) -> list[Path]:
    return sorted(p for p in path.iterdir() if _is_nifti(p) and not is_mask_name(p.name))


def _read_nifti(path: Path) -> tuple[np.ndarray, tuple[float, float]]:
    """Non-empty axial slices (shifted to non-negative magnitude) and in-plane spacing of a NIfTI file."""
    import nibabel as nib

    slices = nifti_slices(path)
    if not slices:
        raise InputError(path, "NIfTI volume has no non-empty slices")
    zooms = nib.load(str(path)).header.get_zooms()
    # the loader transposes (x, y) -> rows = y, columns = x
    spacing = (float(zooms[1]), float(zooms[0])) if len(zooms) >= 2 else (1.0, 1.0)
    return np.stack(slices).astype(np.float32), spacing


def load_volumes(inputs: Sequence[str | Path], modality: str, slices: str = "all", max_slices: int = 8) -> list[Volume]:
    """Read every input and keep the selected slices.

    Args:
        inputs: DICOM series directories; for MR also NIfTI files or directories of NIfTI volumes.
        modality: ``"ct"`` or ``"mr"``; a DICOM series of another modality is an error.
        slices: slice selection per volume (:func:`parse_slice_spec`).
        max_slices: at most this many slices per volume, evenly spread over the selection
            (``0``: no limit).

    Raises:
        InputError: a missing path, unreadable data, wrong modality, a bad selection.
    """
    from recon.io.dicom_read import read_series

    vols: list[Volume] = []
    for raw in inputs:
        path = Path(raw)
        if not path.exists():
            raise InputError(path, "no such file or directory")
        nifti = [path] if _is_nifti(path) else (_nifti_files(path) if path.is_dir() else [])
        if nifti:
            if modality != "mr":
                raise InputError(path, "NIfTI input is supported for --modality mr only (CT needs DICOM in HU)")
            for f in nifti:
                pixels, spacing = _read_nifti(f)
                # the parent folder names the subject (BraTS: one folder per case), the stem the contrast
                name = f"{f.parent.name}/{f.name.split('.')[0]}"
                vols.append(_select(name, f, "nifti", pixels, spacing, slices, max_slices))
            continue
        if not path.is_dir():
            raise InputError(path, "expected a DICOM series directory" + (" or a NIfTI volume" if modality == "mr" else ""))
        series = read_series(path)
        if series.modality != modality.upper():
            raise InputError(path, f"series modality is {series.modality}, but --modality {modality} was given")
        pixels = np.asarray(series.pixels, dtype=np.float32)
        if modality == "mr":
            pixels = np.abs(pixels)
        vols.append(_select(path.name, path, "dicom", pixels, tuple(series.pixel_spacing_mm), slices, max_slices))
    if not vols:
        raise InputError(None, "no input volumes")
    return vols


def _select(name: str, path: Path, kind: str, pixels: np.ndarray, spacing: tuple[float, float], spec: str,
            max_slices: int) -> Volume:
    idx = select_slices(parse_slice_spec(spec, pixels.shape[0], path), max_slices)
    if not idx:
        raise InputError(path, f"--slices {spec!r} selects no slice of its {pixels.shape[0]}")
    return Volume(name=name, path=path, kind=kind, pixels=np.ascontiguousarray(pixels[idx]),
                  pixel_spacing_mm=(float(spacing[0]), float(spacing[1])), slice_indices=idx,
                  n_available=int(pixels.shape[0]))
