"""CT acquisition geometries in physical units (mm, radians), serialisable to JSON.

Conventions (shared with :mod:`operators.radon`, which hands them to ASTRA unchanged):

* The image grid is ``image_size = (H, W)`` square pixels of side ``pixel_size_mm``, centred on the
  rotation axis. Column ``j`` sits at ``x = (j + 0.5 - W / 2) * pixel_size_mm``, row ``i`` at
  ``y = (H / 2 - i - 0.5) * pixel_size_mm`` (row 0 at the top, y pointing up), as in ASTRA.
* ``angles`` are projection angles in radians, in ASTRA's convention: for a parallel beam at angle
  ``theta`` the rays travel along ``(sin theta, -cos theta)`` and the detector axis is
  ``(cos theta, sin theta)``; for a fan beam the source sits at ``source_origin_mm * (sin b, -cos b)``.
* The detector is flat with ``n_detectors`` elements of width ``detector_spacing_mm``, centred on the
  central ray. Element ``k`` is at ``(k - (n_detectors - 1) / 2) * detector_spacing_mm``.

Both classes are frozen dataclasses; ``to_dict``/``from_dict`` and ``to_json``/``from_json`` round
trip exactly, and :func:`geometry_from_dict` restores either kind from the ``"type"`` field (the
format of the ``geometry.json`` sidecar of a sinogram directory).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = [
    "ParallelGeometry",
    "FanGeometry",
    "Geometry",
    "geometry_from_dict",
    "geometry_from_json",
    "uniform_angles",
    "sparse_view_angles",
    "limited_angles",
]


# --- angle sets ----------------------------------------------------------------------------------
def uniform_angles(n: int, arc: float = math.pi, start: float = 0.0) -> np.ndarray:
    """``n`` equispaced angles (radians) covering ``[start, start + arc)`` (end point excluded).

    ``arc = pi`` is a full parallel-beam scan, ``arc = 2 pi`` a full fan-beam scan.
    """
    n = int(n)
    if n < 1:
        raise ValueError(f"uniform_angles: n is {n}, expected an integer >= 1")
    if not (math.isfinite(arc) and arc > 0):
        raise ValueError(f"uniform_angles: arc is {arc}, expected a finite angle > 0 (radians)")
    if not math.isfinite(start):
        raise ValueError(f"uniform_angles: start is {start}, expected a finite angle (radians)")
    return start + arc * np.arange(n, dtype=np.float64) / n


def sparse_view_angles(n_views: int, full_arc: float = math.pi) -> np.ndarray:
    """Sparse-view acquisition: ``n_views`` equispaced angles over the full arc (pi parallel, 2 pi fan)."""
    return uniform_angles(n_views, arc=full_arc)


def limited_angles(n: int, arc: float, start: float = 0.0) -> np.ndarray:
    """Limited-angle acquisition: ``n`` angles at the full-scan spacing ``arc / n`` within ``[start, start + arc)``.

    ``arc`` is the covered arc in radians, less than the full arc (pi for parallel beam).
    """
    return uniform_angles(n, arc=arc, start=start)


# --- validation helpers --------------------------------------------------------------------------
def _positive(name: str, value: Any, cls: str) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{cls}: {name} is {value!r}, expected a positive number") from None
    if not (math.isfinite(v) and v > 0):
        raise ValueError(f"{cls}: {name} is {value!r}, expected a finite number > 0")
    return v


def _image_size(value: Any, cls: str) -> tuple[int, int]:
    if isinstance(value, (int, np.integer)):
        value = (int(value), int(value))
    try:
        h, w = (int(v) for v in value)
        ok = all(float(v) == int(v) for v in value)
    except (TypeError, ValueError):
        raise ValueError(f"{cls}: image_size is {value!r}, expected (H, W) positive integers") from None
    if not ok or h < 1 or w < 1:
        raise ValueError(f"{cls}: image_size is {value!r}, expected (H, W) positive integers")
    return h, w


def _angles(value: Any, cls: str) -> tuple[float, ...]:
    a = np.asarray(value, dtype=np.float64).reshape(-1) if not isinstance(value, (int, float)) else None
    if a is None or a.size == 0:
        raise ValueError(f"{cls}: angles is {value!r}, expected a non-empty 1D sequence of radians")
    if np.asarray(value).ndim > 1:
        raise ValueError(f"{cls}: angles has shape {np.asarray(value).shape}, expected a 1D sequence of radians")
    if not np.isfinite(a).all():
        raise ValueError(f"{cls}: angles contains NaN or inf, expected finite radians")
    if np.abs(a).max() > 16 * math.pi:
        raise ValueError(
            f"{cls}: angles reach {np.abs(a).max():.4g}, expected radians (|angle| <= 16 pi); degrees given?"
        )
    return tuple(float(v) for v in a)


def _n_detectors(value: Any, cls: str) -> int:
    try:
        n = int(value)
        ok = float(value) == n
    except (TypeError, ValueError):
        raise ValueError(f"{cls}: n_detectors is {value!r}, expected a positive integer") from None
    if not ok or n < 1:
        raise ValueError(f"{cls}: n_detectors is {value!r}, expected a positive integer")
    return n


def _check_keys(d: dict, allowed: set[str], required: set[str], cls: str) -> None:
    unknown = set(d) - allowed - {"type"}
    if unknown:
        raise ValueError(f"{cls}: unknown field(s) {sorted(unknown)}, expected only {sorted(allowed)}")
    missing = required - set(d)
    if missing:
        raise ValueError(f"{cls}: missing field(s) {sorted(missing)}")


# --- geometries ----------------------------------------------------------------------------------
class _GeometryQuantities:
    """Quantities every geometry derives from its angles, detector and image grid."""

    angles: tuple[float, ...]
    n_detectors: int | None
    image_size: tuple[int, int]
    pixel_size_mm: float

    @property
    def n_angles(self) -> int:
        return len(self.angles)

    @property
    def angles_array(self) -> np.ndarray:
        """Angles as a float64 numpy array (radians)."""
        return np.asarray(self.angles, dtype=np.float64)

    @property
    def sinogram_shape(self) -> tuple[int, int]:
        """``(n_angles, n_detectors)``: ASTRA's sinogram order."""
        return (self.n_angles, int(self.n_detectors))

    @property
    def extent_mm(self) -> tuple[float, float]:
        """Physical image size ``(height, width)`` in mm."""
        return (self.image_size[0] * self.pixel_size_mm, self.image_size[1] * self.pixel_size_mm)


@dataclass(frozen=True)
class ParallelGeometry(_GeometryQuantities):
    """2D parallel-beam geometry.

    Args:
        image_size: ``(H, W)`` pixels (an int means square).
        angles: projection angles in radians (1D, finite, non-empty).
        pixel_size_mm: side of a square pixel in mm.
        n_detectors: detector elements; default covers the image diagonal.
        detector_spacing_mm: detector element width in mm; default ``pixel_size_mm``.
    """

    image_size: tuple[int, int]
    angles: tuple[float, ...]
    pixel_size_mm: float = 1.0
    n_detectors: int | None = None
    detector_spacing_mm: float | None = None
    kind: str = field(default="parallel", init=False, repr=False)

    def __post_init__(self) -> None:
        cls = type(self).__name__
        object.__setattr__(self, "image_size", _image_size(self.image_size, cls))
        object.__setattr__(self, "angles", _angles(self.angles, cls))
        object.__setattr__(self, "pixel_size_mm", _positive("pixel_size_mm", self.pixel_size_mm, cls))
        spacing = self.pixel_size_mm if self.detector_spacing_mm is None else self.detector_spacing_mm
        object.__setattr__(self, "detector_spacing_mm", _positive("detector_spacing_mm", spacing, cls))
        if self.n_detectors is None:
            h, w = self.image_size
            diag_mm = math.hypot(h, w) * self.pixel_size_mm
            # the whole image diagonal must fall on the detector at every angle
            n = math.ceil(diag_mm / self.detector_spacing_mm - 1e-9)
            object.__setattr__(self, "n_detectors", n)
        object.__setattr__(self, "n_detectors", _n_detectors(self.n_detectors, cls))

    # serialisation
    def to_dict(self) -> dict[str, Any]:
        return {
            "type": "parallel",
            "image_size": list(self.image_size),
            "pixel_size_mm": self.pixel_size_mm,
            "angles": list(self.angles),
            "n_detectors": int(self.n_detectors),
            "detector_spacing_mm": self.detector_spacing_mm,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ParallelGeometry:
        if not isinstance(d, dict):
            raise ValueError(f"{cls.__name__}.from_dict: got {type(d).__name__}, expected a dict")
        if d.get("type", "parallel") != "parallel":
            raise ValueError(f"{cls.__name__}.from_dict: type is {d.get('type')!r}, expected 'parallel'")
        _check_keys(
            d,
            {"image_size", "pixel_size_mm", "angles", "n_detectors", "detector_spacing_mm"},
            {"image_size", "angles"},
            cls.__name__,
        )
        return cls(**{k: v for k, v in d.items() if k != "type"})

    def to_json(self, **kwargs: Any) -> str:
        return json.dumps(self.to_dict(), **kwargs)

    @classmethod
    def from_json(cls, s: str) -> ParallelGeometry:
        return cls.from_dict(json.loads(s))

    def with_angles(self, angles: Sequence[float] | np.ndarray) -> ParallelGeometry:
        """The same geometry with another angle set."""
        d = self.to_dict()
        d["angles"] = list(np.asarray(angles, dtype=np.float64).reshape(-1))
        return type(self).from_dict(d)


@dataclass(frozen=True)
class FanGeometry(_GeometryQuantities):
    """2D fan-beam geometry with a flat detector.

    Args:
        image_size: ``(H, W)`` pixels (an int means square).
        angles: source angles in radians (a full scan covers ``2 pi``).
        source_origin_mm: source to rotation-axis distance (mm); must exceed the image's half diagonal.
        origin_detector_mm: rotation-axis to detector distance (mm), >= 0.
        pixel_size_mm: side of a square pixel in mm.
        n_detectors: detector elements; default covers the fan through the image's circumscribed circle.
        detector_spacing_mm: element width in mm; default ``pixel_size_mm * magnification`` so that a
            detector element seen at the rotation axis is one pixel wide.
    """

    image_size: tuple[int, int]
    angles: tuple[float, ...]
    source_origin_mm: float
    origin_detector_mm: float
    pixel_size_mm: float = 1.0
    n_detectors: int | None = None
    detector_spacing_mm: float | None = None
    kind: str = field(default="fan", init=False, repr=False)

    def __post_init__(self) -> None:
        cls = type(self).__name__
        object.__setattr__(self, "image_size", _image_size(self.image_size, cls))
        object.__setattr__(self, "angles", _angles(self.angles, cls))
        object.__setattr__(self, "pixel_size_mm", _positive("pixel_size_mm", self.pixel_size_mm, cls))
        so = _positive("source_origin_mm", self.source_origin_mm, cls)
        try:
            od = float(self.origin_detector_mm)
        except (TypeError, ValueError):
            raise ValueError(f"{cls}: origin_detector_mm is {self.origin_detector_mm!r}, expected a number >= 0") from None
        if not (math.isfinite(od) and od >= 0):
            raise ValueError(f"{cls}: origin_detector_mm is {self.origin_detector_mm!r}, expected a finite number >= 0")
        object.__setattr__(self, "source_origin_mm", so)
        object.__setattr__(self, "origin_detector_mm", od)
        r = self.radius_mm
        if so <= r:
            raise ValueError(
                f"{cls}: source_origin_mm is {so:g}, expected > {r:g} (the image's half diagonal, "
                "so the source lies outside the imaged region)"
            )
        spacing = self.pixel_size_mm * self.magnification if self.detector_spacing_mm is None else self.detector_spacing_mm
        object.__setattr__(self, "detector_spacing_mm", _positive("detector_spacing_mm", spacing, cls))
        if self.n_detectors is None:
            # half-width on the detector of the fan tangent to the circumscribed circle
            half = self.source_detector_mm * r / math.sqrt(so * so - r * r)
            n = 2 * math.ceil(half / self.detector_spacing_mm - 1e-9) + 1
            object.__setattr__(self, "n_detectors", n)
        object.__setattr__(self, "n_detectors", _n_detectors(self.n_detectors, cls))

    @property
    def radius_mm(self) -> float:
        """Half diagonal of the image (mm): radius of the circle that must stay inside the fan."""
        h, w = self.image_size
        return 0.5 * math.hypot(h, w) * self.pixel_size_mm

    @property
    def source_detector_mm(self) -> float:
        return self.source_origin_mm + self.origin_detector_mm

    @property
    def magnification(self) -> float:
        """Detector magnification of an object at the rotation axis, ``(SO + OD) / SO``."""
        return self.source_detector_mm / self.source_origin_mm

    @property
    def fan_half_angle(self) -> float:
        """Half opening angle of the fan (radians) spanned by the detector."""
        half = 0.5 * self.n_detectors * self.detector_spacing_mm
        return math.atan2(half, self.source_detector_mm)

    def to_dict(self) -> dict[str, Any]:
        return {
            "type": "fan",
            "image_size": list(self.image_size),
            "pixel_size_mm": self.pixel_size_mm,
            "angles": list(self.angles),
            "n_detectors": int(self.n_detectors),
            "detector_spacing_mm": self.detector_spacing_mm,
            "source_origin_mm": self.source_origin_mm,
            "origin_detector_mm": self.origin_detector_mm,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> FanGeometry:
        if not isinstance(d, dict):
            raise ValueError(f"{cls.__name__}.from_dict: got {type(d).__name__}, expected a dict")
        if d.get("type", "fan") != "fan":
            raise ValueError(f"{cls.__name__}.from_dict: type is {d.get('type')!r}, expected 'fan'")
        _check_keys(
            d,
            {
                "image_size",
                "pixel_size_mm",
                "angles",
                "n_detectors",
                "detector_spacing_mm",
                "source_origin_mm",
                "origin_detector_mm",
            },
            {"image_size", "angles", "source_origin_mm", "origin_detector_mm"},
            cls.__name__,
        )
        return cls(**{k: v for k, v in d.items() if k != "type"})

    def to_json(self, **kwargs: Any) -> str:
        return json.dumps(self.to_dict(), **kwargs)

    @classmethod
    def from_json(cls, s: str) -> FanGeometry:
        return cls.from_dict(json.loads(s))

    def with_angles(self, angles: Sequence[float] | np.ndarray) -> FanGeometry:
        d = self.to_dict()
        d["angles"] = list(np.asarray(angles, dtype=np.float64).reshape(-1))
        return type(self).from_dict(d)


Geometry = ParallelGeometry | FanGeometry


def geometry_from_dict(d: dict[str, Any]) -> Geometry:
    """Restore a geometry from its dict; ``d["type"]`` is ``"parallel"`` or ``"fan"``."""
    if not isinstance(d, dict):
        raise ValueError(f"geometry_from_dict: got {type(d).__name__}, expected a dict")
    kind = d.get("type")
    if kind == "parallel":
        return ParallelGeometry.from_dict(d)
    if kind == "fan":
        return FanGeometry.from_dict(d)
    raise ValueError(f"geometry_from_dict: type is {kind!r}, expected 'parallel' or 'fan'")


def geometry_from_json(s: str) -> Geometry:
    """Restore a geometry from its JSON text (see :func:`geometry_from_dict`)."""
    try:
        d = json.loads(s)
    except json.JSONDecodeError as e:
        raise ValueError(f"geometry_from_json: invalid JSON ({e})") from None
    return geometry_from_dict(d)
