"""Write reconstructions as new derived DICOM series (CT Image Storage or MR Image Storage).

Each call writes one complete series: one single-frame file per slice, Explicit VR Little Endian,
new Series and SOP Instance UIDs, ImageType ``DERIVED\\SECONDARY``. Geometry and the
patient/study/frame-of-reference identity come from a reference :class:`Series` when given, so
the result overlays the original in any viewer and files into the same study; without one a
synthetic anonymous identity (new study, new frame of reference) is written and said so in
PatientComments/StudyDescription.

Stored values are 16-bit integers with Rescale Slope/Intercept chosen so the float range is kept
without clipping: CT in HU is stored with slope 1 (error at most 0.5 HU) whenever it fits in
int16; anything else gets the finest slope that spans its range (error at most slope / 2).
Every file is written to a temporary name and renamed when complete.
"""

from __future__ import annotations

import datetime as _dt
import json
import re
import secrets
from collections.abc import Mapping, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
from pydicom.datadict import dictionary_VR
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence as DicomSequence
from pydicom.uid import UID, ExplicitVRLittleEndian, generate_uid
from pydicom.valuerep import format_number_as_ds, validate_value

from recon.errors import InputError
from recon.io.atomic import atomic_path, remove_stale_partials
from recon.io.dicom_read import IDENTITY_KEYWORDS, Series

CT_IMAGE_STORAGE = UID("1.2.840.10008.5.1.4.1.1.2")
MR_IMAGE_STORAGE = UID("1.2.840.10008.5.1.4.1.1.4")

MANUFACTURER = "recon-diffusion"
#: Type 2 identity attributes of the Patient, General Study and Frame of Reference modules:
#: always present, empty when unknown.
_TYPE2_IDENTITY = ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyDate", "StudyTime",
                   "ReferringPhysicianName", "StudyID", "AccessionNumber", "PositionReferenceIndicator")
#: MR Image module acquisition attributes copied from an MR reference (empty/defaults otherwise).
_MR_COPY = ("ScanOptions", "MRAcquisitionType", "RepetitionTime", "EchoTime", "EchoTrainLength", "InversionTime",
            "SequenceName", "MagneticFieldStrength", "ImagingFrequency", "ImagedNucleus", "FlipAngle", "EchoNumbers")
_CT_COPY = ("KVP", "ConvolutionKernel", "ReconstructionDiameter")
_SERIES_COPY = ("PatientPosition", "BodyPartExamined", "Laterality")
_STD_SUFFIX = " posterior std"


def software_version() -> str:
    """Installed version of the distribution, or ``"unknown"`` when running from a source tree."""
    try:
        return metadata.version("recon-diffusion")
    except metadata.PackageNotFoundError:
        return "unknown"


def synthetic_identity() -> dict[str, str]:
    """A fresh anonymous patient/study identity for outputs that have no reference DICOM.

    Call once and pass the result to every series of one study (e.g. the mean and the posterior
    std), so they share the Study Instance UID and Frame of Reference.
    """
    now = _dt.datetime.now()
    return {
        "PatientName": "ANONYMOUS^",
        "PatientID": "RECON-" + secrets.token_hex(6).upper(),
        "PatientBirthDate": "",
        "PatientSex": "",
        "StudyInstanceUID": generate_uid(),
        "StudyID": "",
        "StudyDate": now.strftime("%Y%m%d"),
        "StudyTime": now.strftime("%H%M%S"),
        "StudyDescription": "Synthetic identity: no reference DICOM",
        "AccessionNumber": "",
        "ReferringPhysicianName": "",
        "FrameOfReferenceUID": generate_uid(),
        "PositionReferenceIndicator": "",
        "PatientComments": "Synthetic anonymous identity written because no reference DICOM series was given",
    }


# --------------------------------------------------------------------------- quantisation


def choose_rescale(values: np.ndarray, *, unit_slope: bool) -> tuple[np.dtype, float, float]:
    """Pick a 16-bit storage type and Rescale Slope/Intercept that hold ``values`` unclipped.

    Args:
        values: finite float array in output units.
        unit_slope: try slope 1, intercept 0 in int16 first (integers such as HU).

    Returns:
        ``(dtype, slope, intercept)``; slope and intercept are exactly representable as DICOM DS
        strings, so the stored integers decode to the values the writer intended.
    """
    vmin, vmax = float(np.min(values)), float(np.max(values))
    if unit_slope and -32768.0 <= np.floor(vmin) and np.ceil(vmax) <= 32767.0:
        return np.dtype(np.int16), 1.0, 0.0
    if vmin >= 0.0:
        # Non-negative data (magnitudes, std maps): uint16 from 0 keeps zero exact.
        slope = vmax / 65000.0 if vmax > 0 else 1.0
        return np.dtype(np.uint16), _ds_exact(slope), 0.0
    # 65000 rather than 65535 levels: margin so DS rounding of slope/intercept can never overflow.
    span = vmax - vmin
    slope = span / 65000.0 if span > 0 else 1.0
    intercept = _ds_exact((vmax + vmin) / 2.0)
    return np.dtype(np.int16), _ds_exact(slope), intercept


def _ds_exact(x: float) -> float:
    """``x`` rounded to what a 16-character DS string holds, so file and memory agree."""
    return float(format_number_as_ds(float(x)))


def quantise(values: np.ndarray, dtype: np.dtype, slope: float, intercept: float) -> np.ndarray:
    """Stored integers for ``values``: ``round((values - intercept) / slope)`` in ``dtype``."""
    info = np.iinfo(dtype)
    stored = np.rint((np.asarray(values, dtype=np.float64) - intercept) / slope)
    return np.clip(stored, info.min, info.max).astype(dtype)


# --------------------------------------------------------------------------- descriptions


_PROVENANCE_ORDER = ("method", "prior", "sampler", "nfe", "seed", "version")


def provenance_description(extra: Mapping[str, Any] | None, max_len: int = 64) -> str:
    """A SeriesDescription (<= ``max_len`` chars) naming method, prior, sampler, NFE, seed, version.

    Example: ``"dds prior=ct sampler=dds nfe=50 seed=0 v0.1.0"``. Long values (a prior given as
    a path) are shortened to their last path component, then cut; the full provenance goes to
    DerivationDescription and ImageComments.
    """
    extra = dict(extra or {})
    parts: list[str] = []
    for key in _PROVENANCE_ORDER:
        if extra.get(key) in (None, ""):
            continue
        val = str(extra[key])
        if key == "prior":
            val = Path(val).name or val
        val = val[:20]
        parts.append(val if key == "method" else (f"v{val}" if key == "version" else f"{key}={val}"))
    text = " ".join(parts) or "reconstruction"
    return _ascii(text)[:max_len]


def _derivation_text(extra: Mapping[str, Any] | None) -> str:
    items = [f"{k}={v}" for k, v in (extra or {}).items() if v not in (None, "")]
    return _ascii("Reconstructed from reduced measurements by recon" + (": " + "; ".join(items) if items else ""))[:1024]


def _ascii(text: str) -> str:
    # Default character repertoire: descriptions must not force a Specific Character Set.
    return re.sub(r"[^\x20-\x7e]", "?", text).replace("\\", "/")


# --------------------------------------------------------------------------- geometry


def _default_geometry(
    n: int, h: int, w: int, spacing: tuple[float, float], step: float
) -> tuple[np.ndarray, np.ndarray]:
    """Axial slices centred on the origin: orientation ``[1,0,0,0,1,0]``, positions ``[n,3]``."""
    orientation = np.array([1.0, 0.0, 0.0, 0.0, 1.0, 0.0])
    row_dir, col_dir = orientation[:3], orientation[3:]
    first = -((w - 1) / 2 * spacing[1]) * row_dir - ((h - 1) / 2 * spacing[0]) * col_dir
    normal = np.cross(row_dir, col_dir)
    positions = first[None, :] + np.arange(n)[:, None] * step * normal[None, :]
    return positions, orientation


def _resampled_geometry(
    positions: np.ndarray, orientation: np.ndarray, spacing: tuple[float, float], ref_hw: tuple[int, int], hw: tuple[int, int]
) -> tuple[np.ndarray, tuple[float, float]]:
    """Positions and spacing of an image covering the reference's field of view at another size.

    ImagePositionPatient is the centre of the top-left pixel, so keeping the field of view
    (its outer corner) fixed moves that centre by half the change in pixel size.
    """
    (rh, rw), (h, w) = ref_hw, hw
    new_spacing = (spacing[0] * rh / h, spacing[1] * rw / w)
    row_dir, col_dir = orientation[:3], orientation[3:]
    shift = 0.5 * (new_spacing[1] - spacing[1]) * row_dir + 0.5 * (new_spacing[0] - spacing[0]) * col_dir
    return positions + shift[None, :], new_spacing


def _as_volume(images: Any) -> np.ndarray:
    """``[n, H, W]`` floating array from numpy/torch ``[H, W]``, ``[n, H, W]`` or ``[n, 1, H, W]``."""
    if hasattr(images, "detach"):
        images = images.detach().cpu().numpy()
    arr = np.asarray(images)
    if np.iscomplexobj(arr):
        raise ValueError("images must be real-valued (take the magnitude of complex reconstructions first)")
    if arr.ndim == 4 and arr.shape[1] == 1:
        arr = arr[:, 0]
    elif arr.ndim == 2:
        arr = arr[None]
    if arr.ndim != 3:
        raise ValueError(f"images must be [n, H, W] or [n, 1, H, W], got shape {arr.shape}")
    if not np.issubdtype(arr.dtype, np.floating):
        arr = arr.astype(np.float64)
    # Kept in its float precision: quantisation converts slice by slice to float64.
    if not np.all(np.isfinite(arr)):
        raise ValueError("images contain NaN or inf")
    return arr


def _clean_identity(ident: Mapping[str, str]) -> dict[str, str]:
    """Identity values made valid for their VR, so carried identity cannot fail validation.

    A malformed age such as ``"0Y"`` is zero-padded (``"000Y"``); any other value invalid for
    its VR is blanked (Type 2 attributes) or dropped (optional ones). Nothing is invented.
    """
    out: dict[str, str] = {}
    for kw, value in ident.items():
        value = "" if value is None else str(value)
        if kw == "PatientAge":
            m = re.fullmatch(r"\s*(\d{1,3})\s*([DWMY])\s*", value.upper())
            value = f"{int(m.group(1)):03d}{m.group(2)}" if m else value
        try:
            vr = dictionary_VR(kw)
        except KeyError:
            out[kw] = value
            continue
        try:
            for part in value.split("\\") if value else [""]:
                validate_value(vr, part, 2)  # 2 = raise on invalid
        except ValueError:
            if kw in _TYPE2_IDENTITY:
                out[kw] = ""
            continue
        out[kw] = value
    return out


def _ds(x: float) -> str:
    return format_number_as_ds(float(x))


# --------------------------------------------------------------------------- writer


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

    # ---- geometry
    ref_ds: Dataset | None = None
    sources: list[tuple[str, str, int | None]] = []
    if reference is not None:
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
            positions, spacing = _resampled_geometry(positions, orientation, spacing, (ref_h, ref_w), (h, w))
        thickness = reference.slice_thickness_mm
        step = reference.slice_spacing_mm
        ref_ds = reference.reference_datasets[idx[0]]
        sources = [(reference.sop_class_uids[i], reference.sop_instance_uids[i], reference.frame_numbers[i]) for i in idx]
        ident: dict[str, str] = dict(reference.identity)
        if identity:
            ident.update(identity)
    else:
        spacing = tuple(float(s) for s in (pixel_spacing_mm or (1.0, 1.0)))  # type: ignore[assignment]
        thickness = slice_thickness_mm if slice_thickness_mm is not None else (slice_spacing_mm or 1.0)
        step = slice_spacing_mm if slice_spacing_mm is not None else thickness
        positions, orientation = _default_geometry(n, h, w, spacing, float(step))  # type: ignore[arg-type]
        ident = dict(identity) if identity else synthetic_identity()
    ident = _clean_identity(ident)
    for kw in ("StudyInstanceUID", "FrameOfReferenceUID"):
        if not ident.get(kw):
            ident[kw] = generate_uid()  # Type 1: a reference lacking them still needs valid ones
    normal = np.cross(orientation[:3], orientation[3:])

    # ---- values
    rescale_type = unit or ("HU" if modality == "CT" else "US")
    use_unit = (rescale_type == "HU") if unit_slope is None else bool(unit_slope)
    dtype, slope, intercept = choose_rescale(vol, unit_slope=use_unit)
    window_from_data = window is None
    if window is None:
        # A strided subsample estimates the percentiles well at a fraction of the cost.
        stride = max(1, int(np.sqrt(vol.size / 1e6)))
        lo, hi = (float(v) for v in np.percentile(vol[:, ::stride, ::stride], [1.0, 99.0]))
        if hi <= lo:
            lo, hi = float(vol.min()), float(vol.max()) + 1.0
        window = ((lo + hi) / 2.0, hi - lo)
    wc, ww = float(window[0]), max(float(window[1]), 1e-6)

    # ---- names and existing files
    names = [out / f"{file_prefix}{i + 1:04d}.dcm" for i in range(n)]
    out.mkdir(parents=True, exist_ok=True)
    if not overwrite:
        for p in names:
            if p.exists():
                raise InputError(p, "output file already exists; use --overwrite to replace it")

    series_uid = generate_uid()
    if series_number is None:
        ref_number = ref_ds.get("SeriesNumber") if ref_ds is not None else None
        series_number = (int(ref_number) + 1000) if ref_number not in (None, "") else 1001
    description = _ascii(description if description is not None else provenance_description(extra))[:64]
    now = _dt.datetime.now()
    date, time = now.strftime("%Y%m%d"), now.strftime("%H%M%S.%f")
    version = str((extra or {}).get("version") or software_version())

    common = _common_dataset(
        modality=modality, ident=ident, ref_ds=ref_ds, series_uid=series_uid, series_number=series_number,
        description=description, date=date, time=time, version=version, extra=extra,
        lossy=bool(reference is not None and reference.lossy),
    )
    written: list[Path] = []
    for i in range(n):
        ds = _copy_dataset(common)
        sop_uid = generate_uid()
        ds.SOPInstanceUID = sop_uid
        ds.InstanceNumber = i + 1
        ds.ImagePositionPatient = [_ds(v) for v in positions[i]]
        ds.ImageOrientationPatient = [_ds(v) for v in orientation]
        ds.PixelSpacing = [_ds(spacing[0]), _ds(spacing[1])]
        ds.SliceThickness = _ds(thickness) if thickness is not None else ""
        if step is not None:
            ds.SpacingBetweenSlices = _ds(abs(step))
        ds.SliceLocation = _ds(float(positions[i] @ normal))
        ds.Rows, ds.Columns = h, w
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.BitsAllocated = 16
        ds.BitsStored = 16
        ds.HighBit = 15
        ds.PixelRepresentation = 1 if dtype == np.int16 else 0
        ds.RescaleIntercept = _ds(intercept)
        ds.RescaleSlope = _ds(slope)
        ds.RescaleType = rescale_type[:64]
        ds.WindowCenter = _ds(wc)
        ds.WindowWidth = _ds(ww)
        ds.WindowCenterWidthExplanation = "1st-99th percentile" if window_from_data else "DEFAULT"
        if ww < 1.0:
            # Widths below 1 are only defined for the exact linear function (PS3.3 C.11.2.1.3).
            ds.VOILUTFunction = "LINEAR_EXACT"
        if sources:
            cls, inst, frame = sources[i]
            item = Dataset()
            item.ReferencedSOPClassUID = cls
            item.ReferencedSOPInstanceUID = inst
            if frame is not None:
                item.ReferencedFrameNumber = frame
            ds.SourceImageSequence = DicomSequence([item])
        ds.PixelData = quantise(vol[i], dtype, slope, intercept).astype(dtype.newbyteorder("<")).tobytes()

        ds.file_meta = FileMetaDataset()
        ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
        ds.file_meta.MediaStorageSOPInstanceUID = sop_uid
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.file_meta.ImplementationVersionName = ("RECON_" + version)[:16]
        with atomic_path(names[i]) as tmp:
            ds.save_as(tmp, enforce_file_format=True)
        written.append(names[i])

    if overwrite:
        # A longer series written earlier under the same prefix would otherwise leave extra
        # slices that a reader would take as part of this series.
        pattern = re.compile(re.escape(file_prefix) + r"(\d{4,})\.dcm$")
        for p in out.iterdir():
            m = pattern.fullmatch(p.name)
            if m and int(m.group(1)) > n:
                p.unlink()
        remove_stale_partials(out)
    return written


def _copy_dataset(ds: Dataset) -> Dataset:
    new = Dataset()
    for elem in ds:
        new.add(elem)  # shallow: shared values are immutable strings/numbers or read-only here
    return new


def _common_dataset(
    *,
    modality: str,
    ident: Mapping[str, str],
    ref_ds: Dataset | None,
    series_uid: str,
    series_number: int,
    description: str,
    date: str,
    time: str,
    version: str,
    extra: Mapping[str, Any] | None,
    lossy: bool,
) -> Dataset:
    """Attributes shared by every slice of the series."""
    ds = Dataset()
    charset = ident.get("SpecificCharacterSet")
    if charset:
        ds.SpecificCharacterSet = charset.split("\\") if "\\" in charset else charset
    # SOP Common
    ds.SOPClassUID = CT_IMAGE_STORAGE if modality == "CT" else MR_IMAGE_STORAGE
    ds.InstanceCreationDate, ds.InstanceCreationTime = date, time
    # Patient, General Study, Frame of Reference: carried unchanged.
    for kw in _TYPE2_IDENTITY:
        setattr(ds, kw, ident.get(kw, ""))
    for kw in (*IDENTITY_KEYWORDS, "PatientComments"):
        if kw in ident and kw not in ("SpecificCharacterSet",) and kw not in ds:
            if ident[kw] != "":
                setattr(ds, kw, ident[kw])
    ds.StudyInstanceUID = ident["StudyInstanceUID"]
    ds.FrameOfReferenceUID = ident["FrameOfReferenceUID"]
    # General Series
    ds.Modality = modality
    ds.SeriesInstanceUID = series_uid
    ds.SeriesNumber = int(series_number)
    ds.SeriesDate, ds.SeriesTime = date, time
    ds.SeriesDescription = description
    ds.PatientPosition = ""  # Type 2C: required for CT/MR Image Storage, empty when unknown
    ds.Laterality = ""  # Type 2C: paired body parts; empty when unknown
    if ref_ds is not None:
        for kw in _SERIES_COPY:
            if kw in ref_ds and ref_ds.get(kw) not in (None, ""):
                setattr(ds, kw, ref_ds.get(kw))
    # General Equipment: the software that made these images.
    ds.Manufacturer = MANUFACTURER
    ds.ManufacturerModelName = "recon"
    ds.SoftwareVersions = version[:64]
    # General Image
    ds.ContentDate, ds.ContentTime = date, time
    ds.ImageType = ["DERIVED", "SECONDARY", "AXIAL" if modality == "CT" else "OTHER"]
    ds.DerivationDescription = _derivation_text(extra)
    if extra:
        ds.ImageComments = _ascii(json.dumps(dict(extra), sort_keys=True, default=str))[:10240]
    ds.BurnedInAnnotation = "NO"
    if lossy:
        # Once lossy compressed, derived images must say so (PS3.3 C.7.6.1.1.5).
        ds.LossyImageCompression = "01"
        for kw in ("LossyImageCompressionRatio", "LossyImageCompressionMethod"):
            if ref_ds is not None and kw in ref_ds:
                setattr(ds, kw, ref_ds.get(kw))
    ds.AcquisitionNumber = ""
    # Modality-specific Type 1/2 attributes.
    if modality == "CT":
        ds.KVP = ""  # Type 2 in the CT Image module
        for kw in _CT_COPY:
            v = ref_ds.get(kw) if ref_ds is not None else None
            if v not in (None, ""):
                setattr(ds, kw, v)
    else:
        seq = ref_ds.get("ScanningSequence") if ref_ds is not None else None
        var = ref_ds.get("SequenceVariant") if ref_ds is not None else None
        # Type 1 in the MR Image module; "RM" (research mode) / "NONE" when nothing is known.
        ds.ScanningSequence = seq if seq not in (None, "") else "RM"
        ds.SequenceVariant = var if var not in (None, "") else "NONE"
        for kw in _MR_COPY:
            v = ref_ds.get(kw) if ref_ds is not None else None
            if v not in (None, ""):
                setattr(ds, kw, v)
        for kw in ("ScanOptions", "MRAcquisitionType", "RepetitionTime", "EchoTime", "EchoTrainLength"):
            if kw not in ds:
                setattr(ds, kw, "")  # Type 2
        if "IR" in str(ds.ScanningSequence) and "InversionTime" not in ds:
            ds.InversionTime = ""  # Type 2C: required for inversion recovery
    return ds


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
        ref_number = reference.reference_datasets[0].get("SeriesNumber") if reference is not None else None
        series_number = (int(ref_number) + 1001) if ref_number not in (None, "") else 1002
    return write_series(
        std, out_dir, modality=modality, reference=reference, description=desc, series_number=series_number,
        extra=extra, identity=identity, unit_slope=False, file_prefix=file_prefix, **geometry,
    )
