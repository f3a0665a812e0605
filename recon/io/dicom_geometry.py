"""Patient-space geometry of a stack of slices (DICOM LPS coordinates, millimetres).

Reading: order the images of a series along the slice normal ``cross(row_dir, col_dir)`` and
derive pixel spacing, slice positions and slice spacing, refusing mixed orientations, several
images at one position and sheared (gantry-tilted) stacks. Writing: positions of slices without a
reference, and of an image that covers a reference's field of view at another matrix size.
``positions`` are ImagePositionPatient, the centre of the top-left pixel of each slice.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from recon.errors import InputError
from recon.io.dicom_header import ImageFrame, float_value, float_values

log = logging.getLogger(__name__)

# A slice may sit this far off the line through the first slice along the normal before the
# stack counts as sheared: 0.1 pixel, but at least 0.01 mm to absorb DS rounding in the header.
_SHEAR_TOL_PIXELS = 0.1
_SHEAR_TOL_MIN_MM = 0.01


def slice_normal(orientation: np.ndarray) -> np.ndarray:
    """Unit normal ``cross(row_dir, col_dir)`` of ImageOrientationPatient ``(6,)`` (zero if degenerate)."""
    o = np.asarray(orientation, dtype=np.float64)
    n = np.cross(o[:3], o[3:])
    norm = np.linalg.norm(n)
    return n / norm if norm > 0 else n


@dataclass
class StackGeometry:
    """Where the slices of a series are, after sorting.

    Attributes:
        frames: the images sorted along the normal (by InstanceNumber without geometry).
        orientation: float64 ``(6,)`` ImageOrientationPatient shared by all slices.
        positions: float64 ``[n, 3]`` ImagePositionPatient per sorted slice (mm).
        spacing: ``(2,)`` PixelSpacing (row, column) in mm.
        thickness: SliceThickness of the first sorted slice (mm) or None.
        slice_spacing: median step along the normal (mm); the header's spacing for one slice or
            without geometry; None if unknown.
        known: whether the files carried positions and orientations.
        uniform: whether consecutive slices are equally spaced (within 1 %).
    """

    frames: list[ImageFrame]
    orientation: np.ndarray
    positions: np.ndarray
    spacing: np.ndarray
    thickness: float | None
    slice_spacing: float | None
    known: bool
    uniform: bool


def _order(frames: list[ImageFrame]) -> tuple[np.ndarray, np.ndarray, np.ndarray, bool]:
    """``(order, orientation, normal, known)``: sort along the normal, else by InstanceNumber."""
    f0 = frames[0].file
    if all(s.position is not None and s.orientation is not None for s in frames):
        orientation = frames[0].orientation.copy()
        for s in frames[1:]:
            if np.max(np.abs(s.orientation - orientation)) > 1e-3:
                raise InputError(s.file, f"slice orientation differs from {f0.name}: the series mixes orientations (localizer or "
                                         "multi-stack?)")
        normal = slice_normal(orientation)
        if np.linalg.norm(normal) < 0.5:
            raise InputError(f0, "ImageOrientationPatient row and column directions are parallel")
        along = np.array([float(s.position @ normal) for s in frames])
        return np.argsort(along, kind="stable"), orientation, normal, True
    if any(s.instance_number is None for s in frames) and len(frames) > 1:
        missing = next(s for s in frames if s.instance_number is None)
        raise InputError(missing.file, "cannot order slices: no ImagePositionPatient/ImageOrientationPatient and no "
                                       "InstanceNumber")
    log.warning("series has no patient geometry; ordering %d slices by InstanceNumber", len(frames))
    order = np.argsort([s.instance_number or 0 for s in frames], kind="stable")
    orientation = np.array([1.0, 0.0, 0.0, 0.0, 1.0, 0.0])
    return order, orientation, slice_normal(orientation), False


def _pixel_spacing(frames: list[ImageFrame], first_file: Path, header_spacing: np.ndarray | None) -> np.ndarray:
    """PixelSpacing of the sorted ``frames`` (the first's, else ``header_spacing``), checked to agree."""
    spacing = frames[0].spacing
    if spacing is None:
        spacing = header_spacing
    if spacing is None or np.any(spacing <= 0):
        raise InputError(first_file, "missing or invalid PixelSpacing")
    for s in frames[1:]:
        if s.spacing is not None and np.max(np.abs(s.spacing - spacing)) > 1e-4 * max(spacing):
            raise InputError(s.file, f"PixelSpacing {tuple(s.spacing)} differs from {tuple(spacing)} in {frames[0].file.name}")
    return spacing


def _check_shear(frames: list[ImageFrame], positions: np.ndarray, normal: np.ndarray, min_pixel_mm: float) -> None:
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
            frames[worst].file,
            f"slices are not stacked along their normal (offset {dev[worst]:.2f} mm sideways, about "
            f"{angle:.1f} deg: gantry tilt or sheared stack); resample to an orthogonal grid first",
        )


def _measured_spacing(
    frames: list[ImageFrame], positions: np.ndarray, normal: np.ndarray, spacing: np.ndarray
) -> tuple[float, bool]:
    """Median step along the normal and whether it is uniform; refuses repeated positions and shear."""
    steps = np.diff(positions @ normal)
    dup = np.flatnonzero(np.abs(steps) < 1e-3)
    if dup.size:
        a, b = frames[dup[0]], frames[dup[0] + 1]
        raise InputError(
            b.file,
            f"{len(dup) + 1} slices share a position with another (e.g. {a.file.name}"
            f"{'' if a.frame is None else f' frame {a.frame + 1}'}): several echoes, phases or "
            "stacks in one series are not supported",
        )
    _check_shear(frames, positions, normal, float(min(spacing)))
    slice_spacing = float(np.median(steps))
    uniform = bool(np.max(np.abs(steps - slice_spacing)) <= 0.01 * slice_spacing + 1e-3)
    if not uniform:
        log.warning("slice spacing varies from %.3g to %.3g mm (gaps in the series?)", steps.min(), steps.max())
    return slice_spacing, uniform


def stack_geometry(frames: list[ImageFrame]) -> StackGeometry:
    """Sort ``frames`` (in file order) and work out their geometry; see :class:`StackGeometry`.

    The first frame in file order supplies the series-level fallbacks (ImagerPixelSpacing,
    SpacingBetweenSlices) and is the file named when the whole stack is at fault.
    """
    f0, ds0 = frames[0].file, frames[0].header
    order, orientation, normal, known = _order(frames)
    frames = [frames[i] for i in order]
    # PixelSpacing is Type 1 for CT/MR; ImagerPixelSpacing is the projection-radiography analogue.
    spacing = _pixel_spacing(frames, f0, float_values(ds0.get("ImagerPixelSpacing"), 2))
    thickness = frames[0].thickness
    header_step = float_value(ds0.get("SpacingBetweenSlices")) or thickness
    uniform = True
    if known:
        positions = np.stack([s.position for s in frames])
        if len(frames) > 1:
            slice_spacing, uniform = _measured_spacing(frames, positions, normal, spacing)
        else:
            slice_spacing = header_step
    else:
        step = header_step or 1.0
        positions = np.arange(len(frames))[:, None] * step * normal[None, :]
        slice_spacing = header_step
    return StackGeometry(frames=frames, orientation=np.asarray(orientation, dtype=np.float64),
                         positions=np.asarray(positions, dtype=np.float64), spacing=spacing, thickness=thickness,
                         slice_spacing=slice_spacing, known=known, uniform=uniform)


def default_geometry(
    n: int, h: int, w: int, spacing: tuple[float, float], step: float
) -> tuple[np.ndarray, np.ndarray]:
    """Axial slices centred on the origin: orientation ``[1,0,0,0,1,0]``, positions ``[n,3]``."""
    orientation = np.array([1.0, 0.0, 0.0, 0.0, 1.0, 0.0])
    row_dir, col_dir = orientation[:3], orientation[3:]
    first = -((w - 1) / 2 * spacing[1]) * row_dir - ((h - 1) / 2 * spacing[0]) * col_dir
    normal = np.cross(row_dir, col_dir)
    positions = first[None, :] + np.arange(n)[:, None] * step * normal[None, :]
    return positions, orientation


def resampled_geometry(
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
