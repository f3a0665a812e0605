"""Write reconstructions as new derived DICOM series (CT Image Storage or MR Image Storage).

Each call writes one complete series: one single-frame file per slice, Explicit VR Little Endian,
new Series and SOP Instance UIDs, ImageType ``DERIVED\\SECONDARY``. Geometry and the
patient/study/frame-of-reference identity come from a reference :class:`Series` when given, so
the result overlays the original in any viewer and files into the same study; without one a
synthetic anonymous identity (new study, new frame of reference) is written and said so in
PatientComments/StudyDescription.

Stored values are 16-bit integers with Rescale Slope/Intercept chosen so the float range is kept
without clipping (:mod:`recon.io.dicom_rescale`). Every file is written to a temporary name and
renamed when complete. The datasets are built by :mod:`recon.io.dicom_dataset`, the descriptions
by :mod:`recon.io.dicom_provenance`.
"""

from __future__ import annotations

import datetime as _dt
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid

from recon.io.arrays import as_slice_stack, to_numpy
from recon.io.atomic import atomic_path, refuse_to_overwrite, remove_stale_partials
from recon.io.dicom_dataset import series_dataset, set_image_format, set_stored_values, slice_dataset
from recon.io.dicom_geometry import default_geometry, resampled_geometry
from recon.io.dicom_identity import clean_identity, synthetic_identity
from recon.io.dicom_provenance import ascii_text, provenance_description, software_version
from recon.io.dicom_read import Series
from recon.io.dicom_rescale import choose_rescale, percentile_window, quantise

_STD_SUFFIX = " posterior std"


def _as_volume(images: Any) -> np.ndarray:
    """``[n, H, W]`` floating array from numpy/torch ``[H, W]``, ``[n, H, W]`` or ``[n, 1, H, W]``."""
    arr = to_numpy(images)
    if np.iscomplexobj(arr):
        raise ValueError("images must be real-valued (take the magnitude of complex reconstructions first)")
    arr = as_slice_stack(arr, "images", "H, W")
    if not np.issubdtype(arr.dtype, np.floating):
        arr = arr.astype(np.float64)
    # Kept in its float precision: quantisation converts slice by slice to float64.
    if not np.all(np.isfinite(arr)):
        raise ValueError("images contain NaN or inf")
    return arr


@dataclass
class _Placement:
    """Where the new slices go and whose they are.

    ``positions`` ``[n, 3]`` and ``orientation`` ``(6,)`` in mm (LPS), ``spacing`` (row, column)
    mm, ``thickness``/``step`` mm or None; ``ref_ds`` the reference header of the first slice and
    ``sources`` (SOP class, SOP instance, frame) per slice; both None without a reference.
    """

    positions: np.ndarray
    orientation: np.ndarray
    spacing: tuple[float, float]
    thickness: float | None
    step: float | None
    identity: dict[str, str]
    ref_ds: Dataset | None = None
    sources: list[tuple[str, str, int | None]] | None = None


def _placement_on_reference(
    reference: Series, modality: str, slice_indices: Sequence[int] | None, shape: tuple[int, int, int],
    identity: Mapping[str, str] | None,
) -> _Placement:
    """Geometry and identity of ``reference`` slices ``slice_indices`` for images of ``shape`` ``(n, H, W)``."""
    n, h, w = shape
    if reference.modality != modality:
        raise ValueError(f"reference is {reference.modality}, cannot write a {modality} series from it")
    idx = list(range(n)) if slice_indices is None else [int(i) for i in slice_indices]
    if len(idx) != n:
        raise ValueError(f"{n} images but {len(idx)} slice_indices")
    if n > reference.n_slices or min(idx) < 0 or max(idx) >= reference.n_slices:
        raise ValueError(f"slice indices {min(idx)}..{max(idx)} outside the reference's {reference.n_slices} slices")
    positions = reference.positions[idx]
    orientation = reference.orientation
    spacing = reference.pixel_spacing_mm
    ref_h, ref_w = reference.pixels.shape[1:]
    if (h, w) != (ref_h, ref_w):
        positions, spacing = resampled_geometry(positions, orientation, spacing, (ref_h, ref_w), (h, w))
    ident: dict[str, str] = dict(reference.identity)
    if identity:
        ident.update(identity)
    return _Placement(
        positions=positions, orientation=orientation, spacing=spacing, thickness=reference.slice_thickness_mm,
        step=reference.slice_spacing_mm, identity=ident, ref_ds=reference.reference_datasets[idx[0]],
        sources=[(reference.sop_class_uids[i], reference.sop_instance_uids[i], reference.frame_numbers[i]) for i in idx],
    )


def _placement_without_reference(
    shape: tuple[int, int, int], pixel_spacing_mm: tuple[float, float] | None, slice_thickness_mm: float | None,
    slice_spacing_mm: float | None, identity: Mapping[str, str] | None,
) -> _Placement:
    """Axial slices centred on the origin (defaults 1 mm) with the given or a synthetic identity."""
    n, h, w = shape
    spacing = tuple(float(s) for s in (pixel_spacing_mm or (1.0, 1.0)))
    thickness = slice_thickness_mm if slice_thickness_mm is not None else (slice_spacing_mm or 1.0)
    step = slice_spacing_mm if slice_spacing_mm is not None else thickness
    positions, orientation = default_geometry(n, h, w, spacing, float(step))  # type: ignore[arg-type]
    return _Placement(positions=positions, orientation=orientation, spacing=spacing,  # type: ignore[arg-type]
                      thickness=thickness, step=step, identity=dict(identity) if identity else synthetic_identity())


def _derived_series_number(ref_ds: Dataset | None, offset: int) -> int:
    """The reference's SeriesNumber plus ``offset``, or ``offset + 1`` when it has none."""
    ref_number = ref_ds.get("SeriesNumber") if ref_ds is not None else None
    return (int(ref_number) + offset) if ref_number not in (None, "") else offset + 1


def _remove_longer_series(out: Path, file_prefix: str, n: int) -> None:
    """Delete ``{file_prefix}NNNN.dcm`` numbered above ``n`` and stale partial files in ``out``.

    A longer series written earlier under the same prefix would otherwise leave extra slices that
    a reader would take as part of this series.
    """
    pattern = re.compile(re.escape(file_prefix) + r"(\d{4,})\.dcm$")
    for p in out.iterdir():
        m = pattern.fullmatch(p.name)
        if m and int(m.group(1)) > n:
            p.unlink()
    remove_stale_partials(out)


def write_series(
    images: Any,
    out_dir: str | Path,
    *,
    modality: str,
    reference: Series | None = None,
    description: str | None = None,
    series_number: int | None = None,
    window: tuple[float, float] | None = None,
    unit: str | None = None,
    extra: Mapping[str, Any] | None = None,
    identity: Mapping[str, str] | None = None,
    slice_indices: Sequence[int] | None = None,
    pixel_spacing_mm: tuple[float, float] | None = None,
    slice_thickness_mm: float | None = None,
    slice_spacing_mm: float | None = None,
    unit_slope: bool | None = None,
    file_prefix: str = "IM",
    overwrite: bool = False,
) -> list[Path]:
    """Write ``images`` as a new derived DICOM series, one file per slice, atomically.

    Args:
        images: float ``[n, H, W]`` or ``[n, 1, H, W]`` (numpy or torch) in output units: HU for
            CT, any scale for MR.
        out_dir: existing or new directory; files are named ``{file_prefix}{i:04d}.dcm``
            (1-based, in slice order).
        modality: ``"CT"`` (CT Image Storage) or ``"MR"`` (MR Image Storage).
        reference: the series the measurements came from. Supplies geometry (positions,
            orientation, spacing, thickness) and identity. ``images[i]`` is reference slice
            ``slice_indices[i]`` (default: all slices in order). A different in-plane size keeps
            the reference's field of view (pixel spacing scaled accordingly).
        description: SeriesDescription; default :func:`provenance_description` of ``extra``.
            Cut to 64 characters.
        series_number: SeriesNumber; default reference's number + 1000, else 1001.
        window: (center, width) for display; default the 1st-99th percentile range of the data.
        unit: RescaleType. Default ``"HU"`` for CT, ``"US"`` (unspecified) for MR.
        extra: provenance (method, prior, sampler, nfe, seed, version, ...) written to the
            description, DerivationDescription and, as JSON, ImageComments.
        identity: patient/study attributes overriding the reference's (e.g. from a sinogram
            sidecar). Without reference and identity, :func:`synthetic_identity` is used.
        slice_indices: reference slice of each image (default ``range(n)``).
        pixel_spacing_mm, slice_thickness_mm, slice_spacing_mm: geometry when there is no
            reference (defaults 1 mm; axial slices centred on the origin).
        unit_slope: store with slope 1 in int16 when the range fits (default: True for HU).
        file_prefix: file name prefix, so several series can share a directory.
        overwrite: replace existing files of the same names (and remove stale
            ``{file_prefix}NNNN.dcm`` beyond ``n`` left by a longer earlier series).

    Returns:
        The written file paths in slice order.

    Raises:
        InputError: a target file exists and ``overwrite`` is False.
        ValueError: images malformed (wrong rank, NaN) or inconsistent with the reference.
    """
    modality = modality.upper()
    if modality not in ("CT", "MR"):
        raise ValueError(f"modality must be 'CT' or 'MR', got {modality!r}")
    vol = _as_volume(images)
    n, h, w = vol.shape
    out = Path(out_dir)

    if reference is not None:
        place = _placement_on_reference(reference, modality, slice_indices, vol.shape, identity)
    else:
        place = _placement_without_reference(vol.shape, pixel_spacing_mm, slice_thickness_mm, slice_spacing_mm, identity)
    ident = clean_identity(place.identity)
    for kw in ("StudyInstanceUID", "FrameOfReferenceUID"):
        if not ident.get(kw):
            ident[kw] = generate_uid()  # Type 1: a reference lacking them still needs valid ones
    normal = np.cross(place.orientation[:3], place.orientation[3:])

    # ---- values
    rescale_type = unit or ("HU" if modality == "CT" else "US")
    use_unit = (rescale_type == "HU") if unit_slope is None else bool(unit_slope)
    dtype, slope, intercept = choose_rescale(vol, unit_slope=use_unit)
    window_from_data = window is None
    if window is None:
        window = percentile_window(vol)
    wc, ww = float(window[0]), max(float(window[1]), 1e-6)

    # ---- names and existing files
    names = [out / f"{file_prefix}{i + 1:04d}.dcm" for i in range(n)]
    out.mkdir(parents=True, exist_ok=True)
    if not overwrite:
        refuse_to_overwrite(names)

    series_uid = generate_uid()
    if series_number is None:
        series_number = _derived_series_number(place.ref_ds, 1000)
    description = ascii_text(description if description is not None else provenance_description(extra))[:64]
    now = _dt.datetime.now()
    date, time = now.strftime("%Y%m%d"), now.strftime("%H%M%S.%f")
    version = str((extra or {}).get("version") or software_version())

    common = series_dataset(
        modality=modality, ident=ident, ref_ds=place.ref_ds, series_uid=series_uid, series_number=series_number,
        description=description, date=date, time=time, version=version, extra=extra,
        lossy=bool(reference is not None and reference.lossy),
    )
    set_image_format(common, orientation=place.orientation, spacing=place.spacing, thickness=place.thickness,
                     step=place.step, rows=h, cols=w)
    set_stored_values(common, dtype=dtype, slope=slope, intercept=intercept, rescale_type=rescale_type, window=(wc, ww),
                      window_from_data=window_from_data)
    written: list[Path] = []
    for i in range(n):
        ds = slice_dataset(
            common, instance_number=i + 1, position=place.positions[i], normal=normal,
            source=place.sources[i] if place.sources else None, stored=quantise(vol[i], dtype, slope, intercept),
            version=version,
        )
        with atomic_path(names[i]) as tmp:
            ds.save_as(tmp, enforce_file_format=True)
        written.append(names[i])

    if overwrite:
        _remove_longer_series(out, file_prefix, n)
    return written


def write_std_series(
    std: Any,
    out_dir: str | Path,
    *,
    modality: str,
    reference: Series | None = None,
    description: str | None = None,
    series_number: int | None = None,
    extra: Mapping[str, Any] | None = None,
    identity: Mapping[str, str] | None = None,
    file_prefix: str = "STD",
    **geometry: Any,
) -> list[Path]:
    """Write the pixel-wise posterior standard deviation as its own derived series.

    Same geometry and identity rules as :func:`write_series` (pass the same ``reference`` or,
    without one, the same ``identity`` as the mean series so both land in one study). The
    description is the mean series' description followed by ``" posterior std"``; values are
    stored with the finest slope (no slope-1 rounding, std maps are small), in HU for CT.

    Args:
        std: non-negative float ``[n, H, W]`` or ``[n, 1, H, W]``.
        series_number: default the reference's number + 1001, else 1002.
        geometry: ``slice_indices``, ``pixel_spacing_mm``, ``slice_thickness_mm``,
            ``slice_spacing_mm``, ``window``, ``unit``, ``overwrite`` as for :func:`write_series`.
    """
    base = description if description is not None else provenance_description(extra)
    desc = base[: 64 - len(_STD_SUFFIX)] + _STD_SUFFIX
    if series_number is None:
        series_number = _derived_series_number(reference.reference_datasets[0] if reference is not None else None, 1001)
    return write_series(
        std, out_dir, modality=modality, reference=reference, description=desc, series_number=series_number,
        extra=extra, identity=identity, unit_slope=False, file_prefix=file_prefix, **geometry,
    )
