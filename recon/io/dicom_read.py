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
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.uid import UID

from recon.errors import InputError

log = logging.getLogger(__name__)

#: Patient, study and frame-of-reference attributes that a derived series must carry unchanged.
IDENTITY_KEYWORDS: tuple[str, ...] = (
    "PatientName",
    "PatientID",
    "IssuerOfPatientID",
    "PatientBirthDate",
    "PatientSex",
    "PatientAge",
    "PatientSize",
    "PatientWeight",
    "PatientIdentityRemoved",
    "DeidentificationMethod",
    "StudyInstanceUID",
    "StudyID",
    "StudyDate",
    "StudyTime",
    "StudyDescription",
    "AccessionNumber",
    "ReferringPhysicianName",
    "FrameOfReferenceUID",
    "PositionReferenceIndicator",
    "SpecificCharacterSet",
)

#: Names in a series directory that are clearly not DICOM and are skipped without complaint.
_SKIP_SUFFIXES = {".txt", ".json", ".md", ".png", ".jpg", ".jpeg", ".nii", ".gz", ".xml", ".csv",
                  ".npy", ".npz", ".html", ".pdf", ".zip", ".py", ".log", ".tif", ".tiff", ".h5"}
_SKIP_NAMES = {"DICOMDIR", "LOCKFILE", "VERSION", "Thumbs.db"}

# A slice may sit this far off the line through the first slice along the normal before the
# stack counts as sheared: 0.1 pixel, but at least 0.01 mm to absorb DS rounding in the header.
_SHEAR_TOL_PIXELS = 0.1
_SHEAR_TOL_MIN_MM = 0.01
_TILT_TOL_DEG = 0.01

# Transfer syntaxes that are lossy by definition (JPEG baseline/extended, JPEG-LS near-lossless).
_LOSSY_SYNTAXES = {"1.2.840.10008.1.2.4.50", "1.2.840.10008.1.2.4.51", "1.2.840.10008.1.2.4.81"}


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
        identity: patient/study/frame-of-reference attributes (:data:`IDENTITY_KEYWORDS`) as
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
        return _normal(self.orientation)


# --------------------------------------------------------------------------- helpers


def _normal(orientation: np.ndarray) -> np.ndarray:
    o = np.asarray(orientation, dtype=np.float64)
    n = np.cross(o[:3], o[3:])
    norm = np.linalg.norm(n)
    return n / norm if norm > 0 else n


def _floats(value: Any, n: int) -> np.ndarray | None:
    """A multi-valued numeric attribute as ``n`` floats, or None if absent or malformed."""
    if value is None:
        return None
    try:
        vals = [float(v) for v in (value if isinstance(value, (list, tuple, pydicom.multival.MultiValue)) else [value])]
    except (TypeError, ValueError):
        return None
    if len(vals) != n or not all(math.isfinite(v) for v in vals):
        return None
    return np.asarray(vals, dtype=np.float64)


def _float(value: Any) -> float | None:
    if value is None or value == "":
        return None
    if isinstance(value, (list, tuple, pydicom.multival.MultiValue)):
        if not value:
            return None
        value = value[0]
    try:
        v = float(value)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def _ts_name(ds: Dataset) -> str:
    uid = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
    if uid is None:
        return "unknown transfer syntax"
    uid = UID(uid)
    return f"{uid.name} ({uid})" if uid.name != str(uid) else str(uid)


def _identity(ds: Dataset) -> dict[str, str]:
    out: dict[str, str] = {}
    for kw in IDENTITY_KEYWORDS:
        if kw in ds:
            v = ds.data_element(kw).value
            if isinstance(v, (list, tuple, pydicom.multival.MultiValue)):
                out[kw] = "\\".join(str(x) for x in v)
            else:
                out[kw] = "" if v is None else str(v)
    return out


def _read_header(path: Path) -> Dataset:
    """Read a file's header (no pixel data); InputError naming the file if it is not DICOM."""
    try:
        return pydicom.dcmread(path, stop_before_pixels=True)
    except InvalidDicomError:
        # Old files may lack the 128-byte preamble and 'DICM'; accept them only if forcing the
        # read yields something that really looks like an image header.
        try:
            ds = pydicom.dcmread(path, stop_before_pixels=True, force=True)
            if "SOPClassUID" in ds and "Rows" in ds:
                return ds
        except Exception:
            pass
        raise InputError(path, "not a DICOM file") from None
    except (OSError, EOFError) as e:
        raise InputError(path, f"cannot read DICOM file ({e})") from None
    except Exception as e:  # pydicom raises assorted errors on damaged headers
        raise InputError(path, f"damaged DICOM header ({type(e).__name__}: {_short(e)})") from None


def _short(e: BaseException, limit: int = 160) -> str:
    s = str(e).splitlines()[0] if str(e) else type(e).__name__
    return s if len(s) <= limit else s[: limit - 3] + "..."


def _list_files(path: str | Path | Sequence[str | Path]) -> list[Path]:
    if isinstance(path, (str, Path)):
        p = Path(path)
        if not p.exists():
            raise InputError(p, "no such file or directory")
        if p.is_file():
            return [p]
        files = [
            f
            for f in sorted(p.rglob("*"))
            if f.is_file()
            and not any(part.startswith(".") for part in f.relative_to(p).parts)
            and f.name not in _SKIP_NAMES
            and f.suffix.lower() not in _SKIP_SUFFIXES
        ]
        if not files:
            raise InputError(p, "directory holds no DICOM files")
        return files
    files = [Path(f) for f in path]
    if not files:
        raise InputError(None, "empty list of DICOM files")
    for f in files:
        if not f.is_file():
            raise InputError(f, "no such file")
    return files


@dataclass
class _Slice:
    """One 2-D image: a single-frame object or one frame of a multi-frame object."""

    file: Path
    header: Dataset
    frame: int | None  # 0-based frame index inside a multi-frame object
    position: np.ndarray | None
    orientation: np.ndarray | None
    spacing: np.ndarray | None
    thickness: float | None
    slope: float
    intercept: float
    instance_number: int | None


def _fg_item(ds: Dataset, frame_item: Dataset | None, seq_kw: str) -> Dataset | None:
    """A functional-group macro: the per-frame item wins over the shared one (PS3.3 C.7.6.16)."""
    for holder in (frame_item, _first(ds.get("SharedFunctionalGroupsSequence"))):
        if holder is not None and seq_kw in holder:
            item = _first(holder.get(seq_kw))
            if item is not None:
                return item
    return None


def _first(seq: Any) -> Dataset | None:
    try:
        return seq[0] if seq is not None and len(seq) > 0 else None
    except TypeError:
        return None


def _slices_of(path: Path, ds: Dataset) -> list[_Slice]:
    """Split one header into 2-D slices with their geometry and rescale."""
    n_frames = int(_float(ds.get("NumberOfFrames")) or 1)
    instance = ds.get("InstanceNumber")
    instance_number = int(instance) if instance not in (None, "") else None
    if "PerFrameFunctionalGroupsSequence" in ds:
        per_frame = ds.PerFrameFunctionalGroupsSequence
        if len(per_frame) != n_frames:
            raise InputError(path, f"PerFrameFunctionalGroupsSequence has {len(per_frame)} items for {n_frames} frames")
        out = []
        for i, item in enumerate(per_frame):
            pos = _fg_item(ds, item, "PlanePositionSequence")
            ori = _fg_item(ds, item, "PlaneOrientationSequence")
            pm = _fg_item(ds, item, "PixelMeasuresSequence")
            pvt = _fg_item(ds, item, "PixelValueTransformationSequence")
            content = _fg_item(ds, item, "FrameContentSequence")
            stack_pos = content.get("InStackPositionNumber") if content is not None else None
            out.append(
                _Slice(
                    file=path,
                    header=ds,
                    frame=i,
                    position=_floats(pos.get("ImagePositionPatient"), 3) if pos is not None else None,
                    orientation=_floats(ori.get("ImageOrientationPatient"), 6) if ori is not None else None,
                    spacing=_floats(pm.get("PixelSpacing"), 2) if pm is not None else None,
                    thickness=_float(pm.get("SliceThickness")) if pm is not None else None,
                    slope=_rescale(pvt, ds, "RescaleSlope", 1.0),
                    intercept=_rescale(pvt, ds, "RescaleIntercept", 0.0),
                    instance_number=int(stack_pos) if stack_pos is not None else i + 1,
                )
            )
        return out
    if n_frames > 1:
        raise InputError(
            path,
            f"multi-frame object ({n_frames} frames) without per-frame functional groups: "
            "the position of each frame is unknown",
        )
    return [
        _Slice(
            file=path,
            header=ds,
            frame=None,
            position=_floats(ds.get("ImagePositionPatient"), 3),
            orientation=_floats(ds.get("ImageOrientationPatient"), 6),
            spacing=_floats(ds.get("PixelSpacing"), 2),
            thickness=_float(ds.get("SliceThickness")),
            slope=_float(ds.get("RescaleSlope")) or 1.0,
            intercept=_float(ds.get("RescaleIntercept")) or 0.0,
            instance_number=instance_number,
        )
    ]


def _rescale(pvt: Dataset | None, ds: Dataset, keyword: str, default: float) -> float:
    """Rescale slope/intercept of a frame: its Pixel Value Transformation macro, else top level."""
    for holder in (pvt, ds):
        if holder is not None:
            v = _float(holder.get(keyword))
            if v is not None and not (keyword == "RescaleSlope" and v == 0.0):
                return v
    return default


def _check_image_header(path: Path, ds: Dataset) -> None:
    """Refuse anything that is not a greyscale CT/MR image, naming the file and the reason."""
    if "Rows" not in ds or "Columns" not in ds:
        sop = ds.get("SOPClassUID")
        what = UID(sop).name if sop else "unknown SOP class"
        raise InputError(path, f"not an image ({what} holds no pixel data)")
    photometric = str(ds.get("PhotometricInterpretation", "")).upper()
    spp = int(ds.get("SamplesPerPixel", 1) or 1)
    if spp != 1 or photometric not in ("MONOCHROME1", "MONOCHROME2"):
        raise InputError(
            path,
            f"colour image (PhotometricInterpretation {photometric or '?'}, {spp} samples per pixel): "
            "a CT or MR series must be greyscale",
        )
    modality = str(ds.get("Modality", "")).upper()
    if modality not in ("CT", "MR"):
        raise InputError(path, f"modality {modality or 'missing'} is not supported (CT or MR only)")
    tilt = _float(ds.get("GantryDetectorTilt"))
    if tilt is not None and abs(tilt) > _TILT_TOL_DEG:
        raise InputError(
            path,
            f"gantry-tilted acquisition (GantryDetectorTilt {tilt:g} deg): slices are sheared, "
            "resample to an orthogonal grid first",
        )


def _decode(path: Path, n_expected: int, rows: int, cols: int) -> np.ndarray:
    """Read and decode the pixel data of one file as ``[frames, rows, cols]`` stored values."""
    try:
        ds = pydicom.dcmread(path)
    except Exception as e:
        raise InputError(path, f"cannot read DICOM file ({_short(e)})") from None
    if "PixelData" not in ds and "FloatPixelData" not in ds and "DoubleFloatPixelData" not in ds:
        raise InputError(path, "no pixel data (file truncated?)")
    ts = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
    try:
        arr = ds.pixel_array
    except NotImplementedError:
        raise InputError(path, f"cannot decode pixel data in transfer syntax {_ts_name(ds)}: no installed decoder supports "
                               "it") from None
    except Exception as e:
        if ts is not None and UID(ts).is_compressed:
            raise InputError(path, f"cannot decode pixel data in transfer syntax {_ts_name(ds)} ({_short(e)})") from None
        raise InputError(path, f"pixel data unreadable, file truncated or corrupt ({_short(e)})") from None
    arr = np.asarray(arr)
    if arr.ndim == 2:
        arr = arr[None]
    if arr.shape != (n_expected, rows, cols):
        raise InputError(path, f"decoded pixel data has shape {arr.shape}, header says {(n_expected, rows, cols)}")
    return arr


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


# --------------------------------------------------------------------------- public API


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
    files = _list_files(path)
    # Errors about the whole set name the directory (for a list: the files' common folder).
    where = Path(path) if isinstance(path, (str, Path)) else Path(os.path.commonpath([str(f.parent) for f in files]))

    headers: list[tuple[Path, Dataset]] = []
    for f in files:
        ds = _read_header(f)
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

    groups: dict[str, list[tuple[Path, Dataset]]] = {}
    for f, ds in headers:
        groups.setdefault(str(ds.get("SeriesInstanceUID", "") or ""), []).append((f, ds))
    if series_uid is not None:
        if series_uid not in groups:
            raise InputError(where, f"series {series_uid} not found; available: {_series_listing(groups)}")
        chosen = groups[series_uid]
    elif len(groups) > 1:
        raise InputError(where, f"{len(groups)} series found, choose one with series_uid: {_series_listing(groups)}")
    else:
        chosen = next(iter(groups.values()))

    slices: list[_Slice] = []
    for f, ds in chosen:
        _check_image_header(f, ds)
        slices.extend(_slices_of(f, ds))
    return _assemble(slices, where)


def _assemble(slices: list[_Slice], where: Path | None) -> Series:
    first = slices[0]
    f0, ds0 = first.file, first.header
    rows, cols = int(ds0.Rows), int(ds0.Columns)
    modality = str(ds0.Modality).upper()
    for s in slices:
        ds = s.header
        if (int(ds.Rows), int(ds.Columns)) != (rows, cols):
            raise InputError(s.file, f"image size {int(ds.Rows)}x{int(ds.Columns)} differs from {rows}x{cols} in {f0.name}")
        if str(ds.Modality).upper() != modality:
            raise InputError(s.file, f"modality {ds.Modality} differs from {modality} in {f0.name}")

    have_geometry = all(s.position is not None and s.orientation is not None for s in slices)
    if have_geometry:
        orientation = slices[0].orientation.copy()
        for s in slices[1:]:
            if np.max(np.abs(s.orientation - orientation)) > 1e-3:
                raise InputError(s.file, f"slice orientation differs from {f0.name}: the series mixes orientations (localizer or "
                                         "multi-stack?)")
        normal = _normal(orientation)
        if np.linalg.norm(normal) < 0.5:
            raise InputError(f0, "ImageOrientationPatient row and column directions are parallel")
        along = np.array([float(s.position @ normal) for s in slices])
        order = np.argsort(along, kind="stable")
    else:
        if any(s.instance_number is None for s in slices) and len(slices) > 1:
            missing = next(s for s in slices if s.instance_number is None)
            raise InputError(missing.file, "cannot order slices: no ImagePositionPatient/ImageOrientationPatient and no "
                                           "InstanceNumber")
        log.warning("series has no patient geometry; ordering %d slices by InstanceNumber", len(slices))
        order = np.argsort([s.instance_number or 0 for s in slices], kind="stable")
        orientation = np.array([1.0, 0.0, 0.0, 0.0, 1.0, 0.0])
        normal = _normal(orientation)
        along = None
    slices = [slices[i] for i in order]

    spacing = slices[0].spacing
    if spacing is None:
        # PixelSpacing is Type 1 for CT/MR; ImagerPixelSpacing is the projection-radiography analogue.
        spacing = _floats(ds0.get("ImagerPixelSpacing"), 2)
    if spacing is None or np.any(spacing <= 0):
        raise InputError(f0, "missing or invalid PixelSpacing")
    for s in slices[1:]:
        if s.spacing is not None and np.max(np.abs(s.spacing - spacing)) > 1e-4 * max(spacing):
            raise InputError(s.file, f"PixelSpacing {tuple(s.spacing)} differs from {tuple(spacing)} in {slices[0].file.name}")

    thickness = slices[0].thickness
    header_step = _float(ds0.get("SpacingBetweenSlices")) or thickness
    uniform = True
    if have_geometry:
        positions = np.stack([s.position for s in slices])
        along_sorted = positions @ normal
        steps = np.diff(along_sorted)
        if len(slices) > 1:
            dup = np.flatnonzero(np.abs(steps) < 1e-3)
            if dup.size:
                a, b = slices[dup[0]], slices[dup[0] + 1]
                raise InputError(
                    b.file,
                    f"{len(dup) + 1} slices share a position with another (e.g. {a.file.name}"
                    f"{'' if a.frame is None else f' frame {a.frame + 1}'}): several echoes, phases or "
                    "stacks in one series are not supported",
                )
            _check_shear(slices, positions, normal, float(min(spacing)))
            slice_spacing = float(np.median(steps))
            uniform = bool(np.max(np.abs(steps - slice_spacing)) <= 0.01 * slice_spacing + 1e-3)
            if not uniform:
                log.warning("slice spacing varies from %.3g to %.3g mm (gaps in the series?)", steps.min(), steps.max())
        else:
            slice_spacing = header_step
    else:
        step = header_step or 1.0
        positions = np.arange(len(slices))[:, None] * step * normal[None, :]
        slice_spacing = header_step

    # Decode file by file; frames of a multi-frame object are decoded once.
    multi: dict[Path, np.ndarray] = {}
    pixels = np.empty((len(slices), rows, cols), dtype=np.float32)
    for i, s in enumerate(slices):
        if s.frame is None:
            stored = _decode(s.file, 1, rows, cols)[0]
        else:
            if s.file not in multi:
                multi[s.file] = _decode(s.file, int(_float(s.header.get("NumberOfFrames")) or 1), rows, cols)
            stored = multi[s.file][s.frame]
        # float64 for the affine step: float32 would round large intercepts times slopes.
        pixels[i] = (stored.astype(np.float64) * s.slope + s.intercept).astype(np.float32)

    refs: list[Dataset] = []
    ref_cache: dict[Path, Dataset] = {}
    for s in slices:
        if s.file not in ref_cache:
            h = s.header.copy()
            for kw in ("PixelData", "FloatPixelData", "DoubleFloatPixelData"):
                if kw in h:
                    del h[kw]
            ref_cache[s.file] = h
        refs.append(ref_cache[s.file])

    lossy = any(
        str(s.header.get("LossyImageCompression", "00")) == "01"
        or str(getattr(getattr(s.header, "file_meta", None), "TransferSyntaxUID", "")) in _LOSSY_SYNTAXES
        for s in slices
    )

    window = None
    wc, ww = _float(ds0.get("WindowCenter")), _float(ds0.get("WindowWidth"))
    if wc is None and "SharedFunctionalGroupsSequence" in ds0:
        voi = _fg_item(ds0, _first(ds0.get("PerFrameFunctionalGroupsSequence")), "FrameVOILUTSequence")
        if voi is not None:
            wc, ww = _float(voi.get("WindowCenter")), _float(voi.get("WindowWidth"))
    if wc is not None and ww is not None and ww > 0:
        window = (wc, ww)

    rescale_type = str(ds0.get("RescaleType", "") or ("HU" if modality == "CT" else ""))
    return Series(
        pixels=pixels,
        modality=modality,
        pixel_spacing_mm=(float(spacing[0]), float(spacing[1])),
        slice_thickness_mm=thickness,
        slice_spacing_mm=slice_spacing,
        positions=np.asarray(positions, dtype=np.float64),
        orientation=np.asarray(orientation, dtype=np.float64),
        identity=_identity(ds0),
        series_uid=str(ds0.get("SeriesInstanceUID", "") or ""),
        sop_instance_uids=[str(s.header.get("SOPInstanceUID", "")) for s in slices],
        sop_class_uids=[str(s.header.get("SOPClassUID", "")) for s in slices],
        frame_numbers=[None if s.frame is None else s.frame + 1 for s in slices],
        reference_datasets=refs,
        files=[s.file for s in slices],
        geometry_known=have_geometry,
        uniform_spacing=uniform,
        lossy=lossy,
        window=window,
        rescale_type=rescale_type,
        series_description=str(ds0.get("SeriesDescription", "") or ""),
    )


def _check_shear(slices: list[_Slice], positions: np.ndarray, normal: np.ndarray, min_pixel_mm: float) -> None:
    """Refuse a stack whose slices are offset sideways, i.e. not stacked along their normal.

    This is what a gantry tilt looks like when the header does not state GantryDetectorTilt:
    treating such slices as an orthogonal volume would misplace anatomy by the offset.
    """
    rel = positions - positions[0]
    along = rel @ normal
    perp = rel - along[:, None] * normal[None, :]
    dev = np.linalg.norm(perp, axis=1)
    tol = max(_SHEAR_TOL_MIN_MM, _SHEAR_TOL_PIXELS * min_pixel_mm)
    worst = int(np.argmax(dev))
    if dev[worst] > tol:
        angle = math.degrees(math.atan2(dev[worst], abs(along[worst]))) if along[worst] != 0 else 90.0
        raise InputError(
            slices[worst].file,
            f"slices are not stacked along their normal (offset {dev[worst]:.2f} mm sideways, about "
            f"{angle:.1f} deg: gantry tilt or sheared stack); resample to an orthogonal grid first",
        )


def list_series(path: str | Path) -> list[dict[str, Any]]:
    """Summaries of the image series under ``path`` (no pixel data read, no identifiers).

    Returns one dict per series: ``series_uid``, ``modality``, ``n_files``, ``series_number``,
    ``description``.
    """
    groups: dict[str, list[Dataset]] = {}
    for f in _list_files(path):
        ds = _read_header(f)
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
