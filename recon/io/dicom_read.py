"""Read one CT or MR DICOM series into a float32 volume with its geometry and identity.

Conventions (DICOM patient coordinate system, LPS, millimetres):

* ``orientation`` is ImageOrientationPatient: the direction cosines of a row (first 3 values,
  the direction of increasing column index) and of a column (last 3, increasing row index).
* ``positions[i]`` is ImagePositionPatient of slice ``i``: the centre of its top-left pixel.
* The slice normal is ``cross(row_dir, col_dir)``; slices are sorted by ``positions @ normal``
  ascending, so ``pixels[i]`` is the i-th slice along the normal.
* ``pixel_spacing_mm = (row spacing, column spacing)``: distance between adjacent rows, then
  between adjacent columns (DICOM PixelSpacing order).
* ``pixels = stored * RescaleSlope + RescaleIntercept``: Hounsfield units for CT, the
  scanner's (usually arbitrary) units for MR.

Supported: single-frame CT/MR Image Storage and enhanced multi-frame CT/MR objects (geometry and
rescale from the per-frame or shared functional groups), in every transfer syntax pydicom can
decode with the installed pylibjpeg plugins (uncompressed, deflated, JPEG baseline/extended/
lossless, JPEG-LS, JPEG 2000, RLE). Refused with :class:`InputError`: colour images, non-image
objects given explicitly, legacy multi-frame objects without per-frame geometry, series mixing
orientations or image sizes, several frames at one position (echoes, phases), and sheared stacks
such as gantry-tilted CT, whose slices are not stacked along their normal.

This module finds the series and assembles it; the steps live in :mod:`recon.io.dicom_files`
(files and headers), :mod:`recon.io.dicom_header` (per-frame attributes), :mod:`recon.io.dicom_geometry`
(ordering, spacing, shear) and :mod:`recon.io.dicom_pixels` (decoding and rescale).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from pydicom.dataset import Dataset
from pydicom.uid import UID

from recon.errors import InputError
from recon.io.dicom_files import list_files, read_header
from recon.io.dicom_geometry import slice_normal, stack_geometry
from recon.io.dicom_header import ImageFrame, check_image_header, first_item, float_value, frames_of, functional_group
from recon.io.dicom_identity import identity_of
from recon.io.dicom_pixels import any_lossy, rescaled_pixels

log = logging.getLogger(__name__)


@dataclass
class Series:
    """One CT or MR series, sorted along the slice normal.

    Attributes:
        pixels: float32 ``[n, H, W]``, rescaled values (HU for CT).
        modality: ``"CT"`` or ``"MR"``.
        pixel_spacing_mm: ``(row spacing, column spacing)`` in mm.
        slice_thickness_mm: nominal SliceThickness, or ``None`` when absent.
        slice_spacing_mm: median distance between consecutive slice positions along the normal
            (mm); SpacingBetweenSlices/SliceThickness for a single slice; ``None`` if unknown.
        positions: float64 ``[n, 3]`` ImagePositionPatient per slice (mm, LPS).
        orientation: float64 ``(6,)`` ImageOrientationPatient shared by all slices.
        identity: patient/study/frame-of-reference attributes (:data:`recon.io.dicom_identity.IDENTITY_KEYWORDS`) as
            strings, to carry into derived series. Holds identifiers: never log it.
        series_uid: SeriesInstanceUID.
        sop_instance_uids: per slice, the SOPInstanceUID of the object it came from (repeated
            for the frames of one multi-frame object).
        sop_class_uids: per slice, the SOPClassUID of that object.
        frame_numbers: per slice, the 1-based frame number inside a multi-frame object, else None.
        reference_datasets: per slice, the header of its source object with pixel data removed
            (the same object repeated for frames of one multi-frame file).
        files: per slice, the file it was read from.
        geometry_known: False when the files carried no ImagePositionPatient/Orientation and
            positions were synthesised from the instance order and slice spacing.
        uniform_spacing: whether consecutive slices are equally spaced (within 1 %).
        lossy: True when any source image was lossy compressed (must be carried to derivatives).
        window: (center, width) from the first slice, when present and valid.
        rescale_type: RescaleType of the first slice ("HU" for CT unless stated otherwise).
        series_description: SeriesDescription, possibly empty.
    """

    pixels: np.ndarray
    modality: str
    pixel_spacing_mm: tuple[float, float]
    slice_thickness_mm: float | None
    slice_spacing_mm: float | None
    positions: np.ndarray
    orientation: np.ndarray
    identity: dict[str, str]
    series_uid: str
    sop_instance_uids: list[str]
    sop_class_uids: list[str]
    frame_numbers: list[int | None]
    reference_datasets: list[Dataset] = field(repr=False)
    files: list[Path] = field(repr=False)
    geometry_known: bool = True
    uniform_spacing: bool = True
    lossy: bool = False
    window: tuple[float, float] | None = None
    rescale_type: str = ""
    series_description: str = ""

    @property
    def n_slices(self) -> int:
        return int(self.pixels.shape[0])

    @property
    def shape(self) -> tuple[int, int, int]:
        """``(n, H, W)``."""
        return tuple(int(s) for s in self.pixels.shape)  # type: ignore[return-value]

    @property
    def normal(self) -> np.ndarray:
        """Unit slice normal ``cross(row_dir, col_dir)``."""
        return slice_normal(self.orientation)


def _series_listing(groups: dict[str, list[tuple[Path, Dataset]]], limit: int = 8) -> str:
    labels = [_series_label(g) for g in groups.values()]
    more = len(labels) - limit
    return "; ".join(labels[:limit]) + (f"; ... and {more} more" if more > 0 else "")


def _series_label(headers: list[tuple[Path, Dataset]]) -> str:
    ds = headers[0][1]
    desc = str(ds.get("SeriesDescription", "") or "").strip()
    number = ds.get("SeriesNumber")
    return (
        f"{ds.get('SeriesInstanceUID', '?')} ({len(headers)} file{'s' if len(headers) != 1 else ''}, "
        f"{ds.get('Modality', '?')}, number {number if number not in (None, '') else '-'}"
        + (f", '{desc}'" if desc else "")
        + ")"
    )


def _image_headers(files: list[Path], explicit: bool, where: Path) -> list[tuple[Path, Dataset]]:
    """``(file, header)`` of every image object; non-image objects skipped unless given ``explicit``ly."""
    headers: list[tuple[Path, Dataset]] = []
    for f in files:
        ds = read_header(f)
        if "Rows" not in ds:
            sop = str(ds.get("SOPClassUID", "") or "")
            if not sop or "Image Storage" in UID(sop).name:
                # An image object without image attributes was cut short, not a report to skip.
                raise InputError(f, "truncated or damaged DICOM file (no image attributes)")
            if not explicit:
                log.debug("skipping non-image DICOM object %s", f.name)
                continue
        headers.append((f, ds))
    if not headers:
        raise InputError(where, "no DICOM images found (only non-image objects)")
    return headers


def _choose_series(
    headers: list[tuple[Path, Dataset]], series_uid: str | None, where: Path
) -> list[tuple[Path, Dataset]]:
    """The headers of the one series asked for (or the only one present)."""
    groups: dict[str, list[tuple[Path, Dataset]]] = {}
    for f, ds in headers:
        groups.setdefault(str(ds.get("SeriesInstanceUID", "") or ""), []).append((f, ds))
    if series_uid is not None:
        if series_uid not in groups:
            raise InputError(where, f"series {series_uid} not found; available: {_series_listing(groups)}")
        return groups[series_uid]
    if len(groups) > 1:
        raise InputError(where, f"{len(groups)} series found, choose one with series_uid: {_series_listing(groups)}")
    return next(iter(groups.values()))


def read_series(path: str | Path | Sequence[str | Path], series_uid: str | None = None) -> Series:
    """Read one CT or MR series from a directory (searched recursively) or a list of files.

    Hidden files, ``DICOMDIR`` and files with obviously non-DICOM suffixes (.txt, .json, .png,
    .nii.gz, ...) are skipped in a directory; any other file that is not DICOM is an error.
    Non-image DICOM objects (structured reports, presentation states) inside a directory are
    skipped; given explicitly they are an error.

    Args:
        path: directory, single file, or list of files.
        series_uid: the SeriesInstanceUID to read when the files hold several series.

    Returns:
        The :class:`Series`, slices sorted by position along the normal (by InstanceNumber when
        the files carry no geometry).

    Raises:
        InputError: one line naming the offending file (or directory) and the problem.
    """
    explicit = not (isinstance(path, (str, Path)) and Path(path).is_dir())
    files = list_files(path)
    # Errors about the whole set name the directory (for a list: the files' common folder).
    where = Path(path) if isinstance(path, (str, Path)) else Path(os.path.commonpath([str(f.parent) for f in files]))
    chosen = _choose_series(_image_headers(files, explicit, where), series_uid, where)
    frames: list[ImageFrame] = []
    for f, ds in chosen:
        check_image_header(f, ds)
        frames.extend(frames_of(f, ds))
    return _assemble(frames)


def _reference_datasets(frames: list[ImageFrame]) -> list[Dataset]:
    """Per image, its source header without pixel data (one copy per file, shared by its frames)."""
    refs: list[Dataset] = []
    ref_cache: dict[Path, Dataset] = {}
    for s in frames:
        if s.file not in ref_cache:
            h = s.header.copy()
            for kw in ("PixelData", "FloatPixelData", "DoubleFloatPixelData"):
                if kw in h:
                    del h[kw]
            ref_cache[s.file] = h
        refs.append(ref_cache[s.file])
    return refs


def _window(ds: Dataset) -> tuple[float, float] | None:
    """(center, width) of the header, or of the first frame's VOI LUT macro; None unless width > 0."""
    wc, ww = float_value(ds.get("WindowCenter")), float_value(ds.get("WindowWidth"))
    if wc is None and "SharedFunctionalGroupsSequence" in ds:
        voi = functional_group(ds, first_item(ds.get("PerFrameFunctionalGroupsSequence")), "FrameVOILUTSequence")
        if voi is not None:
            wc, ww = float_value(voi.get("WindowCenter")), float_value(voi.get("WindowWidth"))
    if wc is not None and ww is not None and ww > 0:
        return (wc, ww)
    return None


def _assemble(frames: list[ImageFrame]) -> Series:
    """The :class:`Series` of the chosen images (in file order): checked, sorted, decoded."""
    f0, ds0 = frames[0].file, frames[0].header
    rows, cols = int(ds0.Rows), int(ds0.Columns)
    modality = str(ds0.Modality).upper()
    for s in frames:
        ds = s.header
        if (int(ds.Rows), int(ds.Columns)) != (rows, cols):
            raise InputError(s.file, f"image size {int(ds.Rows)}x{int(ds.Columns)} differs from {rows}x{cols} in {f0.name}")
        if str(ds.Modality).upper() != modality:
            raise InputError(s.file, f"modality {ds.Modality} differs from {modality} in {f0.name}")

    geo = stack_geometry(frames)
    frames = geo.frames
    pixels = rescaled_pixels(frames, rows, cols)
    rescale_type = str(ds0.get("RescaleType", "") or ("HU" if modality == "CT" else ""))
    return Series(
        pixels=pixels,
        modality=modality,
        pixel_spacing_mm=(float(geo.spacing[0]), float(geo.spacing[1])),
        slice_thickness_mm=geo.thickness,
        slice_spacing_mm=geo.slice_spacing,
        positions=geo.positions,
        orientation=geo.orientation,
        identity=identity_of(ds0),
        series_uid=str(ds0.get("SeriesInstanceUID", "") or ""),
        sop_instance_uids=[str(s.header.get("SOPInstanceUID", "")) for s in frames],
        sop_class_uids=[str(s.header.get("SOPClassUID", "")) for s in frames],
        frame_numbers=[None if s.frame is None else s.frame + 1 for s in frames],
        reference_datasets=_reference_datasets(frames),
        files=[s.file for s in frames],
        geometry_known=geo.known,
        uniform_spacing=geo.uniform,
        lossy=any_lossy(frames),
        window=_window(ds0),
        rescale_type=rescale_type,
        series_description=str(ds0.get("SeriesDescription", "") or ""),
    )


def list_series(path: str | Path) -> list[dict[str, Any]]:
    """Summaries of the image series under ``path`` (no pixel data read, no identifiers).

    Returns one dict per series: ``series_uid``, ``modality``, ``n_files``, ``series_number``,
    ``description``.
    """
    groups: dict[str, list[Dataset]] = {}
    for f in list_files(path):
        ds = read_header(f)
        if "Rows" in ds:
            groups.setdefault(str(ds.get("SeriesInstanceUID", "") or ""), []).append(ds)
    return [
        {
            "series_uid": uid,
            "modality": str(g[0].get("Modality", "")),
            "n_files": len(g),
            "series_number": g[0].get("SeriesNumber"),
            "description": str(g[0].get("SeriesDescription", "") or ""),
        }
        for uid, g in groups.items()
    ]
