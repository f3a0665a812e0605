"""Fan-beam sinograms in the MATLAB layout of the Helsinki Tomography Challenge 2022 (HTC 2022).

The HTC 2022 data (A. Meaney, F. Silva de Moura, S. Siltanen, *Helsinki Tomography Challenge 2022
open tomographic dataset*, Zenodo 2022, CC BY 4.0) are ``.mat`` files (MATLAB v7, read with
:func:`scipy.io.loadmat`) holding one struct, ``CtDataFull`` or ``CtDataLimited``::

    CtDataLimited.type         'sinogram'
    CtDataLimited.sinogram     [n_angles, n_detectors] line integrals (dark/flat corrected, -log)
    CtDataLimited.parameters   struct:
        geometryType              'Cone' (the central detector row of a cone beam: a fan beam)
        distanceSourceOrigin      source to rotation axis            (distanceUnit)
        distanceSourceDetector    source to detector                 (distanceUnit)
        distanceUnit              'mm' ('cm' and 'm' are converted)
        angles                    [n_angles] source angles in degrees
        numberImages              n_angles (checked when present)
        numDetectorsPost          n_detectors after binning
        pixelSizePost             detector cell after binning        (distanceUnit)
        effectivePixelSizePost    the cell seen at the rotation axis (pixelSizePost / magnification)
        ...                       scanner, voltage, date: kept as provenance

It maps onto :class:`operators.geometry.FanGeometry` (flat detector, ASTRA's ``fanflat``, which
the challenge's own reconstruction code uses with the same angles): ``source_origin_mm`` =
distanceSourceOrigin, ``origin_detector_mm`` = distanceSourceDetector - distanceSourceOrigin,
``detector_spacing_mm`` = pixelSizePost, ``n_detectors`` = numDetectorsPost. The image grid has
the effective pixel size (one pixel per detector cell seen at the axis) and, unless given, as many
pixels across as the detector has cells, so it spans the detector's field of view at the axis.
Angles and detector cells are taken in the file's order: reconstructions come out in the orientation
of the challenge's own segmentations (rows down, no flip or rotation).

The values are attenuation line integrals of a 45 kV laboratory source, in 1/mm once divided by
path length, but not calibrated to water: the study is ``units`` ``per_mm`` with
``hu_calibrated`` false, so reconstructions stay in 1/mm (no HU).

``recon reconstruct FILE.mat`` (or a directory holding one ``.mat`` and no ``geometry.json``)
reads it directly; :func:`write_htc_sinogram_dir` converts it to a sinogram directory.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from recon.errors import InputError
from recon.io.arrays import refuse_nonfinite

__all__ = ["MAT_SUFFIX", "read_htc_mat", "htc_sidecar", "write_htc_sinogram_dir"]

MAT_SUFFIX = ".mat"

#: Length units of ``distanceUnit`` and their size in mm.
_UNIT_MM = {"mm": 1.0, "cm": 10.0, "m": 1000.0}
#: ``geometryType`` values that mean a flat-detector fan beam (a cone beam's central row).
_FAN_TYPES = ("cone", "fan", "fanflat")
_REQUIRED = ("geometryType", "distanceSourceOrigin", "distanceSourceDetector", "angles", "numDetectorsPost",
             "pixelSizePost")
#: Scalar text parameters copied into the provenance record.
_PROVENANCE = ("projectName", "scanner", "detector", "date", "voltage", "voltageUnit", "current", "currentUnit",
               "xRayFilter", "xRayFilterThickness", "exposureTime", "exposureTimeUnit")


def _fields(obj: Any) -> list[str]:
    return list(getattr(obj, "_fieldnames", []) or [])


def _load(path: Path) -> tuple[str, Any]:
    """``(struct name, struct)`` of the one struct with ``sinogram`` and ``parameters`` in ``path``."""
    import scipy.io

    if not path.is_file():
        raise InputError(path, "no such file" if not path.exists() else "not a file")
    try:
        mat = scipy.io.loadmat(str(path), squeeze_me=True, struct_as_record=False)
    except NotImplementedError:
        raise InputError(path, "MATLAB v7.3 (HDF5) file; save it with save(..., '-v7') to read it") from None
    except (scipy.io.matlab.MatReadError, ValueError, TypeError, OSError, EOFError) as e:
        raise InputError(path, f"not a readable MATLAB .mat file ({e})") from None
    names = [k for k in mat if not k.startswith("__")]
    found = [k for k in names if {"sinogram", "parameters"} <= set(_fields(mat[k]))]
    if not found:
        raise InputError(path, "no struct with fields 'sinogram' and 'parameters' (the HTC 2022 layout); "
                               f"variables: {', '.join(names) or 'none'}")
    if len(found) > 1:
        raise InputError(path, f"several sinogram structs ({', '.join(found)}); keep one per file")
    return found[0], mat[found[0]]


def _param(path: Path, params: Any, name: str) -> Any:
    if name not in _fields(params):
        raise InputError(path, f"parameters lack field '{name}'")
    return getattr(params, name)


def _positive(path: Path, params: Any, name: str) -> float:
    v = _param(path, params, name)
    try:
        x = float(np.asarray(v, dtype=np.float64).reshape(-1)[0]) if np.asarray(v).size == 1 else math.nan
    except (TypeError, ValueError):
        x = math.nan
    if not (math.isfinite(x) and x > 0):
        raise InputError(path, f"parameters.{name} is {v!r}, expected one number > 0")
    return x


def _text(v: Any) -> str:
    return str(v).strip() if isinstance(v, (str, np.str_)) else str(np.asarray(v).reshape(-1)[0]).strip()


def htc_sidecar(path: str | Path, *, image_size: int | None = None) -> tuple[dict[str, Any], np.ndarray]:
    """The ``geometry.json`` equivalent of an HTC 2022 ``.mat`` file and its sinogram.

    Args:
        path: the ``.mat`` file.
        image_size: pixels across the square reconstruction grid (default: ``numDetectorsPost``).

    Returns:
        ``(sidecar, data)``: the sidecar fields (fan geometry with angles in radians, ``values``
        line integrals, ``units`` per_mm, ``hu_calibrated`` false, ``source`` provenance) and
        float32 ``[1, n_angles, n_detectors]`` line integrals.

    Raises:
        InputError: naming the file: unreadable or v7.3 file, no (or several) sinogram structs, a
            missing or invalid parameter, an unknown ``distanceUnit`` or ``geometryType``, angle or
            detector counts that disagree with the sinogram, NaN/inf values.
    """
    path = Path(path)
    name, struct = _load(path)
    params = struct.parameters
    for key in _REQUIRED:
        _param(path, params, key)
    kind = _text(params.geometryType)
    if kind.lower() not in _FAN_TYPES:
        raise InputError(path, f"parameters.geometryType is {kind!r}, expected 'Cone' or 'Fan' (a flat-detector fan beam)")
    unit = _text(params.distanceUnit) if "distanceUnit" in _fields(params) else "mm"
    if unit.lower() not in _UNIT_MM:
        raise InputError(path, f"parameters.distanceUnit is {unit!r}, expected 'mm', 'cm' or 'm'")
    mm = _UNIT_MM[unit.lower()]
    so = _positive(path, params, "distanceSourceOrigin") * mm
    sd = _positive(path, params, "distanceSourceDetector") * mm
    if sd <= so:
        raise InputError(path, f"parameters.distanceSourceDetector ({sd:g} mm) is not beyond distanceSourceOrigin ({so:g} mm)")
    cell = _positive(path, params, "pixelSizePost") * mm
    effective = (_positive(path, params, "effectivePixelSizePost") * mm
                 if "effectivePixelSizePost" in _fields(params) else cell * so / sd)

    sino = np.asarray(struct.sinogram)
    if sino.ndim != 2 or not np.issubdtype(sino.dtype, np.number) or np.iscomplexobj(sino):
        raise InputError(path, f"{name}.sinogram has shape {sino.shape} ({sino.dtype}), expected real [n_angles, n_detectors]")
    sino = sino.astype(np.float32)
    refuse_nonfinite(path, sino, f"{name}.sinogram")
    try:
        angles_deg = np.asarray(params.angles, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError):
        raise InputError(path, "parameters.angles must be numbers (degrees)") from None
    if angles_deg.size == 0 or not np.isfinite(angles_deg).all():
        raise InputError(path, "parameters.angles must be a non-empty list of finite numbers (degrees)")
    if angles_deg.size != sino.shape[0]:
        raise InputError(path, f"parameters.angles holds {angles_deg.size} angles but {name}.sinogram has "
                               f"{sino.shape[0]} rows (one per angle)")
    if "numberImages" in _fields(params) and int(np.asarray(params.numberImages).reshape(-1)[0]) != sino.shape[0]:
        raise InputError(path, f"parameters.numberImages is {int(np.asarray(params.numberImages).reshape(-1)[0])} "
                               f"but {name}.sinogram has {sino.shape[0]} rows")
    n_det = _positive(path, params, "numDetectorsPost")
    if n_det != sino.shape[1]:
        raise InputError(path, f"parameters.numDetectorsPost is {n_det:g} but {name}.sinogram has {sino.shape[1]} "
                               "columns (one per detector cell)")
    size = int(sino.shape[1]) if image_size is None else int(image_size)
    if size < 1:
        raise InputError(path, f"image size {image_size!r}, expected a positive integer")
    source: dict[str, Any] = {"format": "htc2022_mat", "file": path.name, "struct": name,
                              "geometry_type": kind, "angles_deg": [float(angles_deg[0]), float(angles_deg[-1])]}
    for key in _PROVENANCE:
        if key in _fields(params):
            source[key] = _text(getattr(params, key))
    sidecar: dict[str, Any] = {
        "type": "fan",
        "image_size": [size, size],
        "pixel_size_mm": effective,
        "angles": [float(a) for a in np.deg2rad(angles_deg)],
        "n_detectors": int(sino.shape[1]),
        "detector_spacing_mm": cell,
        "source_origin_mm": so,
        "origin_detector_mm": sd - so,
        "values": "line_integrals",
        "units": "per_mm",
        "hu_calibrated": False,
        "source": source,
    }
    return sidecar, sino[None]


def read_htc_mat(path: str | Path, *, image_size: int | None = None) -> Any:
    """Read an HTC 2022 ``.mat`` file as a one-slice :class:`recon.io.sinogram_read.SinogramStudy`.

    ``data`` is float32 ``[1, 1, n_angles, n_detectors]`` line integrals; ``geometry`` the fan
    geometry of :func:`htc_sidecar` (validated by :mod:`operators.geometry`); ``slice_names`` the
    file stem; ``path`` the file. Raises :class:`InputError` as :func:`htc_sidecar` does.
    """
    from recon.io.sinogram_read import SinogramStudy
    from recon.io.sinogram_sidecar import acquisition_fields, validate_geometry

    path = Path(path)
    sidecar, data = htc_sidecar(path, image_size=image_size)
    geometry = validate_geometry(sidecar, path)
    acquisition = acquisition_fields(path, sidecar)
    acquisition["source"] = sidecar["source"]
    return SinogramStudy(geometry=geometry, data=np.ascontiguousarray(data[:, None]), slice_names=[path.stem],
                         acquisition=acquisition, identity=None, reference=None, path=path, sidecar=sidecar)


def write_htc_sinogram_dir(mat_path: str | Path, out_dir: str | Path, *, image_size: int | None = None,
                           overwrite: bool = False) -> Path:
    """Convert an HTC 2022 ``.mat`` file into a sinogram directory (``geometry.json`` + ``sinogram.npy``).

    The sidecar keeps ``units``, ``hu_calibrated`` and the ``source`` provenance; edit its
    ``image_size`` / ``pixel_size_mm`` to reconstruct on another grid. Returns ``out_dir``.
    """
    from recon.io.sinogram_write import write_sinogram_dir

    sidecar, data = htc_sidecar(mat_path, image_size=image_size)
    geometric = ("type", "image_size", "pixel_size_mm", "angles", "n_detectors", "detector_spacing_mm",
                 "source_origin_mm", "origin_detector_mm")
    extra = {k: v for k, v in sidecar.items() if k not in geometric and k != "values"}
    return write_sinogram_dir(out_dir, data, {k: sidecar[k] for k in geometric}, extra=extra, overwrite=overwrite,
                              slice_names=[Path(mat_path).stem])
