"""Reconstructions as float32 image stacks outside DICOM: one multi-page TIFF or one NIfTI-1 volume.

For values a CT DICOM series cannot carry faithfully (attenuation that is not HU-calibrated) and
for tools that read plain arrays (Fiji/ImageJ, napari, ITK-SNAP, nibabel). Both hold the images
``[n, H, W]`` unchanged as float32 (no rescaling, no rounding), in the units the caller states.

* TIFF (:func:`write_tiff_stack`): one page ``[H, W]`` per slice, slice 0 first, uncompressed.
  With a known pixel size the XResolution / YResolution tags hold ``10 / pixel_size_mm`` pixels
  per centimetre (ResolutionUnit CENTIMETER, TIFF 6.0 section 8); without one they are absent.
  ImageDescription (first page) is a JSON object: ``unit``, ``pixel_size_mm``,
  ``slice_spacing_mm`` and whatever the caller adds (method, slice names, provenance).
* NIfTI-1 (:func:`write_nifti`, ``.nii.gz``): the array ``[W, H, n]`` with voxel ``(i, j, k)`` =
  column ``i``, row ``H - 1 - j`` (counted from the bottom), slice ``k``; the qform/sform affine
  (code 1, scanner) is ``diag(px, px, dz)`` with the image centre at ``x = y = 0`` (the rotation
  axis of a CT reconstruction) and slice 0 at ``z = 0``: x along the columns, y up the rows, z
  along the slices, in mm (``xyzt_units``), or unitless when the pixel size is unknown. These are
  the image's own axes, not patient orientation. ``descrip`` carries the unit.
"""

from __future__ import annotations

import gzip
import io
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from recon.io.atomic import atomic_write_bytes, refuse_to_overwrite

__all__ = ["write_tiff_stack", "write_nifti"]


def _stack(images: Any) -> np.ndarray:
    """float32 ``[n, H, W]`` from ``[H, W]`` or ``[n, H, W]``; ValueError for other shapes or NaN/inf."""
    arr = np.asarray(images, dtype=np.float32)
    if arr.ndim == 2:
        arr = arr[None]
    if arr.ndim != 3 or 0 in arr.shape:
        raise ValueError(f"images must be [n, H, W] or [H, W], got shape {arr.shape}")
    if not np.isfinite(arr).all():
        raise ValueError("images contain NaN or inf")
    return np.ascontiguousarray(arr)


def _length(name: str, value: float | None) -> float | None:
    if value is None:
        return None
    v = float(value)
    if not (np.isfinite(v) and v > 0):
        raise ValueError(f"{name} is {value!r}, expected a finite number > 0 (mm) or None")
    return v


def write_tiff_stack(
    path: str | Path,
    images: Any,
    *,
    pixel_size_mm: float | None,
    slice_spacing_mm: float | None = None,
    unit: str = "",
    description: Mapping[str, Any] | None = None,
    overwrite: bool = False,
) -> Path:
    """Write ``images`` ``[n, H, W]`` (or ``[H, W]``) as one multi-page float32 TIFF, atomically.

    Args:
        path: the ``.tif`` file.
        pixel_size_mm: side of a square pixel (mm) for the resolution tags; None when unknown.
        slice_spacing_mm: step between slices (mm), recorded in the description; None when unknown.
        unit: the values' unit (``"HU"``, ``"1/mm"``, ``"1/pixel"``, ...).
        description: further JSON-serialisable fields for the ImageDescription.
        overwrite: replace an existing file (else :class:`recon.errors.InputError`).

    Returns:
        ``path``.
    """
    import tifffile

    path = Path(path)
    arr = _stack(images)
    px = _length("pixel_size_mm", pixel_size_mm)
    dz = _length("slice_spacing_mm", slice_spacing_mm)
    if not overwrite:
        refuse_to_overwrite([path])
    meta = {"unit": unit, "pixel_size_mm": px, "slice_spacing_mm": dz, "shape": list(arr.shape), **(description or {})}
    kwargs: dict[str, Any] = {}
    if px is not None:
        kwargs.update(resolution=(10.0 / px, 10.0 / px), resolutionunit="CENTIMETER")
    buf = io.BytesIO()
    tifffile.imwrite(buf, arr, photometric="minisblack", description=json.dumps(meta, allow_nan=False),
                     metadata=None, software="recon", **kwargs)
    return atomic_write_bytes(path, buf.getvalue())


def write_nifti(
    path: str | Path,
    images: Any,
    *,
    pixel_size_mm: float | None,
    slice_spacing_mm: float | None = None,
    unit: str = "",
    overwrite: bool = False,
) -> Path:
    """Write ``images`` ``[n, H, W]`` (or ``[H, W]``) as a gzipped float32 NIfTI-1 volume, atomically.

    Args:
        path: the ``.nii.gz`` (or ``.nii``, uncompressed) file.
        pixel_size_mm: side of a square pixel (mm); None when unknown (the affine then counts
            pixels and ``xyzt_units`` is unknown).
        slice_spacing_mm: step between slices (mm); None: the pixel size (isotropic voxels).
        unit: the values' unit, written to ``descrip``.
        overwrite: replace an existing file (else :class:`recon.errors.InputError`).

    Returns:
        ``path``. The layout and affine are in the module docstring.
    """
    import nibabel as nib

    path = Path(path)
    arr = _stack(images)
    px = _length("pixel_size_mm", pixel_size_mm)
    dz = _length("slice_spacing_mm", slice_spacing_mm)
    if not overwrite:
        refuse_to_overwrite([path])
    n, h, w = arr.shape
    step = 1.0 if px is None else px
    dz = step if dz is None else dz
    volume = np.ascontiguousarray(arr[:, ::-1, :].transpose(2, 1, 0))  # [W, H, n], j counted from the bottom
    affine = np.diag([step, step, dz, 1.0])
    affine[:3, 3] = [-0.5 * (w - 1) * step, -0.5 * (h - 1) * step, 0.0]
    image = nib.Nifti1Image(volume, affine)
    header = image.header
    header.set_data_dtype(np.float32)
    header.set_qform(affine, code=1)
    header.set_sform(affine, code=1)
    header.set_xyzt_units("mm" if px is not None else "unknown")
    header["descrip"] = f"recon unit={unit}"[:79].encode("ascii", "replace")
    data = image.to_bytes()
    if path.name.lower().endswith(".gz"):
        data = gzip.compress(data, mtime=0)
    return atomic_write_bytes(path, data)
