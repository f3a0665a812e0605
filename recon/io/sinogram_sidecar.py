"""``geometry.json``, the sidecar of a sinogram directory: geometry and acquisition fields, validated.

The geometric keys are exactly those of :mod:`operators.geometry`, whose ``from_dict`` validates
them; ``angles`` is a list of radians or ``{"start", "stop", "count"}`` (stop excluded). The
acquisition keys say what the data are: ``values`` (``"line_integrals"`` or ``"counts"``), and
for counts ``i0`` (photons per reading above the dark level), ``dark``, ``flat`` (a number or a
``.npy`` file name), ``min_counts`` (photon floor of the log transform), plus a free-form
``noise`` record. ``angle_unit`` (``"radian"``, the default, or ``"degree"``) applies to every
form of ``angles``, which may also name a text or ``.npy`` file (:mod:`recon.io.angle_files`).
Projection-image data (``projections``) are read by :mod:`recon.io.projection_images`. The full
format is in :mod:`recon.io.sinogram_read` and ``docs/file-formats.md``.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from operators.geometry import geometry_from_dict
from recon.errors import InputError
from recon.io.angle_files import angle_unit, read_angle_file
from recon.io.data_exchange import HDF5_SUFFIXES, read_hdf5_theta
from recon.io.sidecar import load_json_object
from recon.io.stripe_removal import DEFAULT_SIZE

log = logging.getLogger(__name__)

GEOMETRY_FILE = "geometry.json"
_GEOMETRY_KEYS = ("type", "image_size", "pixel_size_mm", "angles", "n_detectors", "detector_spacing_mm",
                  "source_origin_mm", "origin_detector_mm")
_ACQ_KEYS = ("values", "i0", "dark", "flat", "noise", "min_counts", "dark_at", "flat_at", "ring_removal", "units",
             "hu_calibrated")
#: ``units`` of the line integrals' attenuation: ``per_mm`` (calibrated, convertible to HU) or
#: ``per_pixel`` (uncalibrated: attenuation per detector pixel, no HU). ``hu_calibrated: false`` marks
#: ``per_mm`` data that are not calibrated to water either (a laboratory or synchrotron source), so
#: they stay in 1/mm.
UNITS = ("per_mm", "per_pixel")
_OTHER_KEYS = ("data", "slices", "reference", "identity", "format", "version", "description", "source",
               "angles_rad", "image", "ground_truth", "simulation", "slice_spacing_mm", "angle_unit",
               "projections", "rows", "center_of_rotation")


def _number(
    gpath: Path | None, d: Mapping[str, Any], key: str, *, positive: bool = False, allow_none: bool = True
) -> float | None:
    """Field ``key`` of ``d`` as a finite float (``> 0`` when ``positive``); None when absent and allowed."""
    v = d.get(key)
    if v is None:
        if allow_none:
            return None
        raise InputError(gpath, f"missing field '{key}'")
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        raise InputError(gpath, f"field '{key}' is {v!r}, expected a finite number")
    if positive and v <= 0:
        raise InputError(gpath, f"field '{key}' is {v!r}, expected a number > 0")
    return float(v)


def expand_angles(spec: Any, where: Path | None = None) -> list[float]:
    """Angles in radians from a list or ``{"start", "stop", "count"}`` (stop excluded)."""
    if isinstance(spec, Mapping):
        missing = [k for k in ("start", "stop", "count") if k not in spec]
        if missing:
            raise InputError(where, f"field 'angles' lacks {', '.join(repr(m) for m in missing)} (expected start, stop, count)")
        start, stop, count = spec["start"], spec["stop"], spec["count"]
        if not all(isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) for x in (start, stop)):
            raise InputError(where, "field 'angles': start and stop must be finite numbers (radians)")
        if isinstance(count, bool) or not isinstance(count, int) or count < 1:
            raise InputError(where, f"field 'angles': count is {count!r}, expected an integer >= 1")
        return [float(start + (stop - start) * k / count) for k in range(count)]
    if isinstance(spec, (list, tuple)):
        if not spec or not all(isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) for x in spec):
            raise InputError(where, "field 'angles' must be a non-empty list of finite numbers (radians)")
        return [float(x) for x in spec]
    raise InputError(where, f"field 'angles' is {type(spec).__name__}, expected a list of radians or {{start, stop, count}}")


def resolve_angles(sidecar: Mapping[str, Any], root: Path, gpath: Path) -> dict[str, Any]:
    """A copy of ``sidecar`` whose ``angles`` are radians: files read, ``angle_unit`` applied.

    ``angles`` may be a list, ``{"start", "stop", "count"}``, a file name (``.txt``/``.csv``/``.npy``)
    or ``{"file", "skip", "count"}``; without ``angles`` an HDF5 ``projections`` file supplies
    ``/exchange/theta``. ``angle_unit`` is ``"radian"`` (default) or ``"degree"``.
    """
    d = dict(sidecar)
    unit = angle_unit(d.get("angle_unit"), gpath)
    spec = d.get("angles", d.get("angles_rad"))
    if spec is None and isinstance(d.get("projections"), str) and Path(d["projections"]).suffix.lower() in HDF5_SUFFIXES:
        spec, file_unit = read_hdf5_theta(root / d["projections"])
        unit = unit if "angle_unit" in d else file_unit
    if spec is None:
        return d
    if isinstance(spec, str) or (isinstance(spec, Mapping) and "file" in spec):
        spec = read_angle_file(spec, root, gpath)
    angles = expand_angles(spec, gpath)
    d.pop("angles_rad", None)
    d["angles"] = [a * math.pi / 180.0 for a in angles] if unit == "degree" else angles
    return d


def validate_geometry(sidecar: Mapping[str, Any], where: Path | None = None) -> dict[str, Any]:
    """Check the geometric part of a sidecar; return it canonicalised (angles as a list).

    Accepts the aliases ``angles_rad`` (for ``angles``) and ``image: {size, pixel_size_mm}`` (for
    ``image_size``/``pixel_size_mm``). Validation is delegated to
    ``operators.geometry.geometry_from_dict`` so the rules match the operators exactly.

    Raises:
        InputError: naming ``where`` and the field at fault.
    """
    if not isinstance(sidecar, Mapping):
        raise InputError(where, f"expected a JSON object, got {type(sidecar).__name__}")
    d = dict(sidecar)
    if "angles" not in d and "angles_rad" in d:
        d["angles"] = d["angles_rad"]
    if isinstance(d.get("image"), Mapping):
        d.setdefault("image_size", d["image"].get("size"))
        d.setdefault("pixel_size_mm", d["image"].get("pixel_size_mm"))
    kind = d.get("type")
    if kind not in ("parallel", "fan"):
        problem = f"field 'type' is {kind!r}, expected" if "type" in d else "missing field 'type'"
        raise InputError(where, f"{problem} 'parallel' or 'fan'" if "type" in d else f"{problem} ('parallel' or 'fan')")
    required = ["image_size", "pixel_size_mm", "angles", "n_detectors", "detector_spacing_mm"]
    if kind == "fan":
        required += ["source_origin_mm", "origin_detector_mm"]
    for key in required:
        if d.get(key) is None:
            raise InputError(where, f"missing field '{key}'")
    ps = d["pixel_size_mm"]
    if isinstance(ps, (list, tuple)):
        if len(ps) != 2 or ps[0] != ps[1]:
            raise InputError(where, f"field 'pixel_size_mm' is {ps!r}: only square pixels are supported")
        d["pixel_size_mm"] = ps[0]
    geo = {k: d[k] for k in _GEOMETRY_KEYS if k in d and (kind == "fan" or k not in ("source_origin_mm", "origin_detector_mm"))}
    geo["angles"] = expand_angles(d["angles"], where)
    for key in ("pixel_size_mm", "detector_spacing_mm", "source_origin_mm", "origin_detector_mm"):
        if key in geo:
            _number(where, geo, key, positive=key != "origin_detector_mm", allow_none=False)
    if isinstance(geo["n_detectors"], bool) or not isinstance(geo["n_detectors"], int) or geo["n_detectors"] < 1:
        raise InputError(where, f"field 'n_detectors' is {geo['n_detectors']!r}, expected an integer >= 1")
    size = geo["image_size"]
    if isinstance(size, int) and not isinstance(size, bool):
        size = [size, size]
    if not (
        isinstance(size, (list, tuple))
        and len(size) == 2
        and all(isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in size)
    ):
        raise InputError(where, f"field 'image_size' is {geo['image_size']!r}, expected [H, W] positive integers")
    geo["image_size"] = [int(size[0]), int(size[1])]
    try:
        return geometry_from_dict(geo).to_dict()
    except ValueError as e:
        raise InputError(where, str(e)) from None


def acquisition_fields(gpath: Path, sidecar: Mapping[str, Any]) -> dict[str, Any]:
    """The acquisition keys of a sidecar, checked: ``values`` always, others only when given.

    ``i0``, ``dark`` and ``min_counts`` become floats (photons); ``flat`` stays a file name or
    becomes a float; ``noise`` is copied as is. Counts need ``i0`` or ``flat``.
    """
    values = sidecar.get("values", "line_integrals")
    if values not in ("line_integrals", "counts"):
        raise InputError(gpath, f"field 'values' is {values!r}, expected 'line_integrals' or 'counts'")
    acq: dict[str, Any] = {"values": values}
    i0 = _number(gpath, sidecar, "i0", positive=True)
    dark = None if isinstance(sidecar.get("dark"), (str, list)) else _number(gpath, sidecar, "dark")
    if i0 is not None:
        acq["i0"] = i0
    if dark is not None:
        acq["dark"] = dark
    for key in ("dark", "flat"):
        v = sidecar.get(key)
        if isinstance(v, str) or (isinstance(v, list) and v and all(isinstance(x, str) for x in v)):
            acq[key] = v  # file name(s), resolved when reading
        elif v is not None and key == "flat":
            acq[key] = _number(gpath, sidecar, key, positive=True)
    flat = acq.get("flat")
    for key in ("dark_at", "flat_at"):
        if key in sidecar:
            at = sidecar[key]
            if not (isinstance(at, list) and at and all(
                    isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) for x in at)):
                raise InputError(gpath, f"field '{key}' must be a non-empty list of projection indices")
            acq[key] = [float(x) for x in at]
    # Projection files may carry their own flat field (HDF5 data exchange); checked when read.
    if values == "counts" and i0 is None and flat is None and "projections" not in sidecar:
        raise InputError(gpath, "values are 'counts' but neither 'i0' nor 'flat' is given")
    if "noise" in sidecar:
        acq["noise"] = sidecar["noise"]
    if "min_counts" in sidecar:
        acq["min_counts"] = _number(gpath, sidecar, "min_counts", positive=True)
    if "units" in sidecar:
        if sidecar["units"] not in UNITS:
            raise InputError(gpath, f"field 'units' is {sidecar['units']!r}, expected 'per_mm' or 'per_pixel'")
        acq["units"] = sidecar["units"]
    if "hu_calibrated" in sidecar:
        hu = sidecar["hu_calibrated"]
        if not isinstance(hu, bool):
            raise InputError(gpath, f"field 'hu_calibrated' is {hu!r}, expected true or false")
        if hu and acq.get("units") == "per_pixel":
            raise InputError(gpath, "field 'hu_calibrated' is true but 'units' is 'per_pixel': per-pixel attenuation has no HU")
        acq["hu_calibrated"] = hu
    rings = ring_removal_setting(sidecar.get("ring_removal"), gpath)
    if rings is not None:
        acq["ring_removal"] = rings
    return acq


def ring_removal_setting(value: Any, gpath: Path) -> dict[str, Any] | None:
    """The ``ring_removal`` field: ``true``, ``"sorting"`` or ``{"method": "sorting", "size": n}``.

    Returns ``{"method": "sorting", "size": n}`` (Vo et al. 2018, :mod:`recon.io.stripe_removal`;
    ``size`` defaults to :data:`~recon.io.stripe_removal.DEFAULT_SIZE`), or None when off.
    """
    if value is None or value is False:
        return None
    if value is True or value == "sorting":
        value = {"method": "sorting"}
    if not isinstance(value, Mapping) or value.get("method", "sorting") != "sorting":
        raise InputError(gpath, f"field 'ring_removal' is {value!r}, expected true or {{'method': 'sorting', 'size': n}}")
    size = value.get("size", DEFAULT_SIZE)
    if isinstance(size, bool) or not isinstance(size, int) or size < 3:
        raise InputError(gpath, f"field 'ring_removal': size is {size!r}, expected an integer >= 3 (detector pixels)")
    return {"method": "sorting", "size": size}


def read_geometry_sidecar(root: Path) -> tuple[Path, dict[str, Any], dict[str, Any], dict[str, Any]]:
    """Parse and check ``root/geometry.json``.

    Returns:
        ``(path, sidecar, geometry, acquisition)``: the file, its parsed object, the canonical
        geometry (:func:`validate_geometry`) and the acquisition fields (:func:`acquisition_fields`).
        Fields that no reader uses are kept in ``sidecar`` and logged as a warning.
    """
    gpath = root / GEOMETRY_FILE
    sidecar = load_json_object(gpath, "geometry.json sidecar")
    geometry = validate_geometry(resolve_angles(sidecar, root, gpath), gpath)
    acq = acquisition_fields(gpath, sidecar)
    unknown = sorted(set(sidecar) - set(_GEOMETRY_KEYS) - set(_ACQ_KEYS) - set(_OTHER_KEYS))
    if unknown:
        # Kept (they may be provenance), but a misspelt optional key would otherwise go unnoticed.
        log.warning("%s: fields not used by the reader: %s", gpath, ", ".join(unknown))
    return gpath, sidecar, geometry, acq
