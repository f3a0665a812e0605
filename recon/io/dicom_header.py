"""DICOM headers read as 2-D images: numeric attributes, functional groups, per-frame geometry and rescale.

A single-frame CT/MR object is one image; an enhanced multi-frame object is one image per frame,
its position, orientation, pixel spacing and rescale taken from the per-frame functional group,
else the shared one (PS3.3 C.7.6.16). :func:`check_image_header` refuses anything that is not a
greyscale CT/MR image, and gantry-tilted acquisitions.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.uid import UID

from recon.errors import InputError

_TILT_TOL_DEG = 0.01


def float_values(value: Any, n: int) -> np.ndarray | None:
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


def float_value(value: Any) -> float | None:
    """A numeric attribute (its first value if multi-valued) as a finite float, or None."""
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


def first_item(seq: Any) -> Dataset | None:
    """The first item of a sequence, or None when it is absent or empty."""
    try:
        return seq[0] if seq is not None and len(seq) > 0 else None
    except TypeError:
        return None


def functional_group(ds: Dataset, frame_item: Dataset | None, seq_kw: str) -> Dataset | None:
    """A functional-group macro: the per-frame item wins over the shared one (PS3.3 C.7.6.16)."""
    for holder in (frame_item, first_item(ds.get("SharedFunctionalGroupsSequence"))):
        if holder is not None and seq_kw in holder:
            item = first_item(holder.get(seq_kw))
            if item is not None:
                return item
    return None


def _rescale(pvt: Dataset | None, ds: Dataset, keyword: str, default: float) -> float:
    """Rescale slope/intercept of a frame: its Pixel Value Transformation macro, else top level."""
    for holder in (pvt, ds):
        if holder is not None:
            v = float_value(holder.get(keyword))
            if v is not None and not (keyword == "RescaleSlope" and v == 0.0):
                return v
    return default


@dataclass
class ImageFrame:
    """One 2-D image: a single-frame object or one frame of a multi-frame object.

    ``position`` is ImagePositionPatient ``(3,)`` and ``orientation`` ImageOrientationPatient
    ``(6,)`` (mm, LPS), ``spacing`` PixelSpacing ``(2,)`` (mm), ``thickness`` in mm; any of them
    None when the header lacks it. ``slope``/``intercept`` map stored values to output units.
    """

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


def frames_of(path: Path, ds: Dataset) -> list[ImageFrame]:
    """Split one header into 2-D images with their geometry and rescale."""
    n_frames = int(float_value(ds.get("NumberOfFrames")) or 1)
    instance = ds.get("InstanceNumber")
    instance_number = int(instance) if instance not in (None, "") else None
    if "PerFrameFunctionalGroupsSequence" in ds:
        per_frame = ds.PerFrameFunctionalGroupsSequence
        if len(per_frame) != n_frames:
            raise InputError(path, f"PerFrameFunctionalGroupsSequence has {len(per_frame)} items for {n_frames} frames")
        out = []
        for i, item in enumerate(per_frame):
            pos = functional_group(ds, item, "PlanePositionSequence")
            ori = functional_group(ds, item, "PlaneOrientationSequence")
            pm = functional_group(ds, item, "PixelMeasuresSequence")
            pvt = functional_group(ds, item, "PixelValueTransformationSequence")
            content = functional_group(ds, item, "FrameContentSequence")
            stack_pos = content.get("InStackPositionNumber") if content is not None else None
            out.append(
                ImageFrame(
                    file=path,
                    header=ds,
                    frame=i,
                    position=float_values(pos.get("ImagePositionPatient"), 3) if pos is not None else None,
                    orientation=float_values(ori.get("ImageOrientationPatient"), 6) if ori is not None else None,
                    spacing=float_values(pm.get("PixelSpacing"), 2) if pm is not None else None,
                    thickness=float_value(pm.get("SliceThickness")) if pm is not None else None,
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
        ImageFrame(
            file=path,
            header=ds,
            frame=None,
            position=float_values(ds.get("ImagePositionPatient"), 3),
            orientation=float_values(ds.get("ImageOrientationPatient"), 6),
            spacing=float_values(ds.get("PixelSpacing"), 2),
            thickness=float_value(ds.get("SliceThickness")),
            slope=float_value(ds.get("RescaleSlope")) or 1.0,
            intercept=float_value(ds.get("RescaleIntercept")) or 0.0,
            instance_number=instance_number,
        )
    ]


def check_image_header(path: Path, ds: Dataset) -> None:
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
    tilt = float_value(ds.get("GantryDetectorTilt"))
    if tilt is not None and abs(tilt) > _TILT_TOL_DEG:
        raise InputError(
            path,
            f"gantry-tilted acquisition (GantryDetectorTilt {tilt:g} deg): slices are sheared, "
            "resample to an orthogonal grid first",
        )
