"""The sinogram directory: a ``geometry.json`` sidecar plus the measured data.

Layout::

    study/
      geometry.json          acquisition geometry, value type, optional identity/reference
      sinogram.npy           stacked data [n_slices, n_angles, n_detectors]  (or sinogram.npz)
    or
      slice_0000.npy ...     one [n_angles, n_detectors] array per slice (.npy, .npz or .tif)

``geometry.json`` (flat object; the geometric keys are exactly those of
:mod:`operators.geometry`, whose ``from_dict`` validates them)::

    {
      "type": "parallel",                  # or "fan"
      "image_size": [512, 512],            # reconstruction grid (H, W)
      "pixel_size_mm": 0.57,               # square pixels
      "angles": {"start": 0, "stop": 3.141592653589793, "count": 32},
                                           # or a list of radians; {start, stop, count} means
                                           # start + (stop - start) * k / count, k < count
      "n_detectors": 736,
      "detector_spacing_mm": 0.8,
      "source_origin_mm": 595.0,           # fan only
      "origin_detector_mm": 490.6,         # fan only
      "values": "line_integrals",          # or "counts"
      "i0": 10000.0,                       # unattenuated photons per detector reading
      "dark": 0.0,                         # counts: dark-current offset (default 0)
      "flat": null,                        # counts: flat-field reading, a number or a .npy file
                                           #   of [n_detectors] or [n_angles, n_detectors];
                                           #   default i0 + dark
      "noise": {...},                      # optional free-form record of simulated noise
      "data": "sinogram.npy",              # optional: data file name (default: found by name)
      "slices": ["slice_0000.npy", ...],   # optional: per-slice file order, or stacked labels
      "reference": "../dicom",             # optional: DICOM series dir, or an identity .json
      "identity": {...},                   # optional inline patient/study identity
      "ground_truth": "ground_truth.npy",  # optional: reference images [n, H, W] (HU) of a simulation
      "simulation": {...}                  # optional: how a simulated study was made
    }

Line integrals are dimensionless (attenuation coefficient in 1/mm times path length in mm).
Counts are photons, converted by :func:`operators.noise.counts_to_line_integrals`:
``p = -log(max(counts - dark, min_counts) / (flat - dark))`` with ``min_counts`` (optional sidecar
field) defaulting to :data:`operators.noise.COUNT_FLOOR` photons, so that photon starvation gives a
large finite value instead of inf.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from operators.geometry import geometry_from_dict
from operators.noise import COUNT_FLOOR, counts_to_line_integrals
from recon.errors import InputError
from recon.io.atomic import atomic_path, atomic_save_npy, atomic_save_npz, atomic_write_json, is_partial

log = logging.getLogger(__name__)

GEOMETRY_FILE = "geometry.json"
STACKED_NAMES = ("sinogram.npy", "sinogram.npz")
SLICE_SUFFIXES = (".npy", ".npz", ".tif", ".tiff")
_GEOMETRY_KEYS = ("type", "image_size", "pixel_size_mm", "angles", "n_detectors", "detector_spacing_mm",
                  "source_origin_mm", "origin_detector_mm")
_ACQ_KEYS = ("values", "i0", "dark", "flat", "noise", "min_counts")
_OTHER_KEYS = ("data", "slices", "reference", "identity", "format", "version", "description", "units", "source",
               "angles_rad", "image", "ground_truth", "simulation")


@dataclass
class SinogramStudy:
    """A sinogram directory, read and validated.

    Attributes:
        geometry: the geometric keys only (``type``, ``image_size``, ``pixel_size_mm``,
            ``angles`` as a list of radians, ``n_detectors``, ``detector_spacing_mm`` and for fan
            beams ``source_origin_mm``/``origin_detector_mm``), ready for
            ``operators.geometry.geometry_from_dict``.
        data: float32 ``[n_slices, 1, n_angles, n_detectors]`` line integrals.
        slice_names: one label per slice (file stem for per-slice layouts).
        acquisition: ``values`` as stored (``"line_integrals"``/``"counts"``), ``i0``, ``dark``,
            ``flat``, ``noise`` as given (absent keys omitted).
        identity: patient/study identity from the sidecar or a referenced identity JSON, else None.
        reference: the referenced DICOM directory (resolved), or None.
        path: the directory.
        sidecar: the full parsed ``geometry.json``.
    """

    geometry: dict[str, Any]
    data: np.ndarray
    slice_names: list[str]
    acquisition: dict[str, Any]
    identity: dict[str, str] | None
    reference: Path | None
    path: Path
    sidecar: dict[str, Any] = field(repr=False)

    @property
    def angles(self) -> np.ndarray:
        """Projection angles, float64 radians ``[n_angles]``."""
        return np.asarray(self.geometry["angles"], dtype=np.float64)

    @property
    def n_slices(self) -> int:
        return int(self.data.shape[0])

    def geometry_object(self) -> Any:
        """The :mod:`operators.geometry` dataclass for this geometry."""
        return geometry_from_dict(self.geometry)


# --------------------------------------------------------------------------- JSON helpers


def load_json(path: Path, what: str = "JSON file") -> Any:
    """Parse a JSON file; InputError with the line and column of a syntax error."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError(path, f"missing {what}") from None
    except (OSError, UnicodeDecodeError) as e:
        raise InputError(path, f"cannot read {what} ({e})") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise InputError(path, f"invalid JSON at line {e.lineno} column {e.colno}: {e.msg}") from None


def _number(
    gpath: Path | None, d: Mapping[str, Any], key: str, *, positive: bool = False, allow_none: bool = True
) -> float | None:
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


def _acquisition(gpath: Path, sidecar: Mapping[str, Any]) -> dict[str, Any]:
    values = sidecar.get("values", "line_integrals")
    if values not in ("line_integrals", "counts"):
        raise InputError(gpath, f"field 'values' is {values!r}, expected 'line_integrals' or 'counts'")
    acq: dict[str, Any] = {"values": values}
    i0 = _number(gpath, sidecar, "i0", positive=True)
    dark = _number(gpath, sidecar, "dark")
    if i0 is not None:
        acq["i0"] = i0
    if dark is not None:
        acq["dark"] = dark
    flat = sidecar.get("flat")
    if flat is not None:
        if isinstance(flat, str):
            acq["flat"] = flat  # a file name, resolved when reading
        else:
            acq["flat"] = _number(gpath, sidecar, "flat", positive=True)
    if values == "counts" and i0 is None and flat is None:
        raise InputError(gpath, "values are 'counts' but neither 'i0' nor 'flat' is given")
    if "noise" in sidecar:
        acq["noise"] = sidecar["noise"]
    if "min_counts" in sidecar:
        acq["min_counts"] = _number(gpath, sidecar, "min_counts", positive=True)
    return acq


# --------------------------------------------------------------------------- data loading


def _load_array(path: Path, key: str | None = None) -> np.ndarray:
    """Load one array from .npy/.npz/.tif; InputError naming the file on any failure."""
    suffix = path.suffix.lower()
    try:
        if suffix == ".npy":
            return np.load(path, allow_pickle=False)
        if suffix == ".npz":
            with np.load(path, allow_pickle=False) as z:
                names = list(z.files)
                if key is not None and key in names:
                    return z[key]
                if len(names) == 1:
                    return z[names[0]]
                raise InputError(path, f"npz holds {names}; expected a single array or one named '{key}'")
        if suffix in (".tif", ".tiff"):
            import tifffile

            return tifffile.imread(path)
    except InputError:
        raise
    except FileNotFoundError:
        raise InputError(path, "missing data file") from None
    except Exception as e:  # numpy/zip/tiff raise many kinds on corrupt files
        raise InputError(path, f"cannot read array ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})") from None
    raise InputError(path, f"unsupported data file type '{suffix}' (expected .npy, .npz, .tif)")


def _natural_key(name: str) -> list[Any]:
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", name)]


def _check_real_finite(path: Path, arr: np.ndarray, label: str = "") -> np.ndarray:
    if np.iscomplexobj(arr) or not np.issubdtype(arr.dtype, np.number):
        raise InputError(path, f"{label}data type {arr.dtype} is not real numeric")
    arr = arr.astype(np.float32, copy=False)
    bad = ~np.isfinite(arr)
    if bad.any():
        where = np.argwhere(bad)[0]
        first = tuple(int(i) for i in where)
        raise InputError(path, f"{label}data contains {int(bad.sum())} NaN/inf value(s) (first at index {first})")
    return arr


def _line_integrals_from_counts(
    counts: np.ndarray, acq: Mapping[str, Any], flat: float | np.ndarray | None
) -> np.ndarray:
    """Raw counts ``[n, A, D]`` -> float32 line integrals by :func:`operators.noise.counts_to_line_integrals`.

    Computed in float64; ``flat`` (a number or a loaded ``[D]`` / ``[A, D]`` array) replaces ``i0``.
    """
    if isinstance(flat, np.ndarray):
        flat = torch.from_numpy(flat.astype(np.float64))
    p = counts_to_line_integrals(
        torch.from_numpy(np.asarray(counts, dtype=np.float64)),
        i0=acq.get("i0"),
        dark=acq.get("dark", 0.0),
        flat=flat,
        eps=acq.get("min_counts", COUNT_FLOOR),
    )
    return p.numpy().astype(np.float32)


def read_sinogram_dir(path: str | Path) -> SinogramStudy:
    """Read and validate a sinogram directory (see the module docstring for the format).

    Returns:
        :class:`SinogramStudy` with ``data`` as float32 line integrals ``[n, 1, A, D]``.

    Raises:
        InputError: missing/invalid ``geometry.json`` (syntax error with line, missing field, wrong
            type), missing or ambiguous data files, shapes disagreeing with the geometry or with
            each other, NaN/inf values, an unresolvable reference. The message names the file.
    """
    root = Path(path)
    if not root.is_dir():
        raise InputError(root, "not a directory" if root.exists() else "no such directory")
    gpath = root / GEOMETRY_FILE
    sidecar = load_json(gpath, "geometry.json sidecar")
    if not isinstance(sidecar, dict):
        raise InputError(gpath, f"expected a JSON object, got {type(sidecar).__name__}")
    geometry = validate_geometry(sidecar, gpath)
    acq = _acquisition(gpath, sidecar)
    unknown = sorted(set(sidecar) - set(_GEOMETRY_KEYS) - set(_ACQ_KEYS) - set(_OTHER_KEYS))
    if unknown:
        # Kept (they may be provenance), but a misspelt optional key would otherwise go unnoticed.
        log.warning("%s: fields not used by the reader: %s", gpath, ", ".join(unknown))
    n_angles, n_det = len(geometry["angles"]), int(geometry["n_detectors"])

    # ---- find the data
    slices_field = sidecar.get("slices")
    if slices_field is not None and not (isinstance(slices_field, list) and all(isinstance(s, str) for s in slices_field)):
        raise InputError(gpath, "field 'slices' must be a list of strings")
    stacked: Path | None = None
    per_slice: list[Path] = []
    if sidecar.get("data") is not None:
        if not isinstance(sidecar["data"], str):
            raise InputError(gpath, "field 'data' must be a file name")
        stacked = root / sidecar["data"]
        if not stacked.is_file():
            raise InputError(stacked, "data file named in geometry.json is missing")
    else:
        found = [root / n for n in STACKED_NAMES if (root / n).is_file()]
        if slices_field is not None and any(Path(s).suffix.lower() in SLICE_SUFFIXES for s in slices_field) and not found:
            per_slice = [root / s for s in slices_field]
            for p in per_slice:
                if not p.is_file():
                    raise InputError(p, "slice file listed in geometry.json is missing")
        else:
            per_slice = sorted(
                (p for p in root.iterdir() if p.is_file() and not is_partial(p) and p.name.startswith("slice_")
                 and p.suffix.lower() in SLICE_SUFFIXES),
                key=lambda p: _natural_key(p.name),
            )
        if len(found) > 1:
            raise InputError(root, "both sinogram.npy and sinogram.npz present; keep one")
        if found and per_slice:
            raise InputError(
                root, f"both {found[0].name} and per-slice files ({per_slice[0].name}, ...) present; keep one layout"
            )
        if found:
            stacked = found[0]
        elif not per_slice:
            raise InputError(root, "no sinogram data: expected sinogram.npy, sinogram.npz or slice_*.npy/.npz/.tif")

    # ---- load and check shapes
    if stacked is not None:
        arr = _check_real_finite(stacked, _load_array(stacked, key="sinogram"))
        if arr.ndim == 2:
            arr = arr[None]
        elif arr.ndim == 4 and arr.shape[1] == 1:
            arr = arr[:, 0]
        if arr.ndim != 3:
            raise InputError(
                stacked, f"data has shape {arr.shape}, expected [n_slices, n_angles, n_detectors] = [n, {n_angles}, {n_det}]"
            )
        if arr.shape[1:] != (n_angles, n_det):
            raise InputError(stacked, f"data has shape {arr.shape}, but geometry.json says {n_angles} angles x {n_det} detectors")
        names = list(slices_field) if slices_field is not None else [f"slice_{i:04d}" for i in range(arr.shape[0])]
        if len(names) != arr.shape[0]:
            raise InputError(gpath, f"field 'slices' lists {len(names)} names for {arr.shape[0]} slices in {stacked.name}")
        data = arr
    else:
        arrays = []
        first_shape: tuple[int, ...] | None = None
        for p in per_slice:
            a = _check_real_finite(p, _load_array(p, key="sinogram"))
            if a.ndim == 3 and a.shape[0] == 1:
                a = a[0]
            if a.ndim != 2:
                raise InputError(p, f"slice has shape {a.shape}, expected [n_angles, n_detectors] = [{n_angles}, {n_det}]")
            if first_shape is not None and a.shape != first_shape:
                raise InputError(p, f"slice shape {a.shape} differs from {first_shape} in {per_slice[0].name}")
            first_shape = a.shape
            if a.shape != (n_angles, n_det):
                raise InputError(p, f"slice has shape {a.shape}, but geometry.json says {n_angles} angles x {n_det} detectors")
            arrays.append(a)
        data = np.stack(arrays)
        names = [p.stem for p in per_slice]
    if data.shape[0] == 0:
        raise InputError(stacked or root, "no slices in the data")

    # ---- counts -> line integrals
    if acq["values"] == "counts":
        dark = acq.get("dark", 0.0)
        flat: Any = acq.get("flat")
        if isinstance(flat, str):
            fpath = root / flat
            flat = _check_real_finite(fpath, _load_array(fpath, key="flat"))
            if flat.shape not in ((n_det,), (n_angles, n_det)):
                raise InputError(fpath, f"flat field has shape {flat.shape}, expected [{n_det}] or [{n_angles}, {n_det}]")
        # i0 counts photons above the dark level, so without a flat field the air reading is i0 + dark.
        if np.any((np.asarray(flat) - dark if flat is not None else np.asarray(acq["i0"])) <= 0):
            raise InputError(gpath, "flat (or i0) must exceed dark")
        data = _line_integrals_from_counts(data, acq, flat)

    identity, reference = identity_and_reference(root, sidecar, gpath)

    return SinogramStudy(
        geometry=geometry,
        data=np.ascontiguousarray(data[:, None], dtype=np.float32),
        slice_names=names,
        acquisition=acq,
        identity=identity,
        reference=reference,
        path=root,
        sidecar=sidecar,
    )


def identity_and_reference(root: Path, sidecar: Mapping[str, Any], spath: Path) -> tuple[dict[str, str] | None, Path | None]:
    """Patient/study identity and reference DICOM directory named by a sidecar.

    ``identity`` is an inline object of DICOM keyword -> string; ``reference`` a path (relative to
    ``root``) to the DICOM series the measurements belong to, or to an identity JSON whose fields
    fill in what the inline identity lacks. A reference that no longer exists is reported and
    ignored, so a study stays readable after its source series was moved.
    """
    identity: dict[str, str] | None = None
    reference: Path | None = None
    if sidecar.get("identity") is not None:
        if not isinstance(sidecar["identity"], dict):
            raise InputError(spath, "field 'identity' must be an object of DICOM keyword -> string")
        identity = {str(k): str(v) for k, v in sidecar["identity"].items()}
    ref = sidecar.get("reference")
    if ref is not None:
        if not isinstance(ref, str):
            raise InputError(spath, "field 'reference' must be a path (DICOM directory or identity .json)")
        rpath = (root / ref).resolve() if not Path(ref).is_absolute() else Path(ref)
        if not rpath.exists():
            log.warning("%s: reference '%s' does not exist; writing derived series without it", spath, ref)
        elif rpath.is_file() and rpath.suffix.lower() == ".json":
            ident = load_json(rpath, "identity JSON")
            if not isinstance(ident, dict):
                raise InputError(rpath, "identity JSON must be an object of DICOM keyword -> string")
            identity = {**{str(k): str(v) for k, v in ident.items()}, **(identity or {})}
        else:
            reference = rpath
    return identity, reference


def write_sinogram_dir(
    path: str | Path,
    data: np.ndarray,
    geometry: Mapping[str, Any],
    *,
    layout: str = "stacked",
    fmt: str = "npy",
    values: str = "line_integrals",
    i0: float | None = None,
    dark: float | None = None,
    flat: float | str | None = None,
    noise: Mapping[str, Any] | None = None,
    slice_names: Sequence[str] | None = None,
    identity: Mapping[str, str] | None = None,
    reference: str | Path | None = None,
    extra: Mapping[str, Any] | None = None,
    overwrite: bool = False,
) -> Path:
    """Write a sinogram directory readable by :func:`read_sinogram_dir`.

    Data files are written first and ``geometry.json`` last, each atomically, so a directory
    with a sidecar is always complete.

    Args:
        path: directory (created if needed).
        data: ``[n, A, D]`` or ``[n, 1, A, D]`` (numpy or torch), line integrals or counts.
        geometry: geometric keys (see module docstring); ``angles`` a list or {start, stop, count};
            an :mod:`operators.geometry` object's ``to_dict()`` fits as is.
        layout: ``"stacked"`` (one array) or ``"per_slice"`` (one file per slice).
        fmt: ``"npy"``, ``"npz"``, or ``"tif"`` (per-slice only; float32 TIFF).
        values, i0, dark, flat, noise: acquisition description (see module docstring); ``flat``
            may name a ``.npy`` file the caller has placed in the directory.
        slice_names: per-slice names; per-slice files are ``{name}.{fmt}`` and must start with
            ``slice_`` (default ``slice_0000`` ...).
        identity: patient/study identity to carry to the output DICOM.
        reference: path to a DICOM directory or identity JSON, stored relative to ``path`` when
            possible.
        extra: other JSON-serialisable sidecar fields (e.g. provenance of a simulation).
        overwrite: replace existing files.

    Returns:
        The directory.
    """
    root = Path(path)
    if isinstance(data, torch.Tensor):
        data = data.detach().cpu().numpy()
    arr = np.asarray(data, dtype=np.float32)
    if arr.ndim == 4 and arr.shape[1] == 1:
        arr = arr[:, 0]
    if arr.ndim == 2:
        arr = arr[None]
    if arr.ndim != 3:
        raise ValueError(f"data must be [n, A, D] or [n, 1, A, D], got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError("data contains NaN or inf")
    geo = validate_geometry(geometry, None)
    if arr.shape[1:] != (len(geo["angles"]), int(geo["n_detectors"])):
        n_ang, n_det = len(geo["angles"]), geo["n_detectors"]
        raise ValueError(f"data shape {arr.shape} disagrees with geometry ({n_ang} angles x {n_det} detectors)")
    if layout not in ("stacked", "per_slice"):
        raise ValueError(f"layout must be 'stacked' or 'per_slice', got {layout!r}")
    if fmt not in ("npy", "npz", "tif"):
        raise ValueError(f"fmt must be 'npy', 'npz' or 'tif', got {fmt!r}")
    if layout == "stacked" and fmt == "tif":
        raise ValueError("TIFF is only supported for the per-slice layout")
    names = list(slice_names) if slice_names is not None else [f"slice_{i:04d}" for i in range(arr.shape[0])]
    if len(names) != arr.shape[0]:
        raise ValueError(f"{len(names)} slice names for {arr.shape[0]} slices")

    root.mkdir(parents=True, exist_ok=True)
    sidecar: dict[str, Any] = {"format": "recon-sinogram", "version": 1, **geo, "values": values}
    for key, val in (("i0", i0), ("dark", dark), ("flat", flat), ("noise", noise)):
        if val is not None:
            sidecar[key] = val
    targets: list[Path]
    if layout == "stacked":
        targets = [root / f"sinogram.{fmt}"]
        sidecar["data"] = targets[0].name
        if slice_names is not None:
            sidecar["slices"] = names
    else:
        bad = [n for n in names if not n.startswith("slice_") or "/" in n]
        if bad:
            raise ValueError(f"per-slice names must start with 'slice_' and be plain names, got {bad[:3]}")
        targets = [root / f"{n}.{fmt}" for n in names]
        sidecar["slices"] = [t.name for t in targets]
    if identity is not None:
        sidecar["identity"] = dict(identity)
    if reference is not None:
        ref = Path(reference)
        try:
            ref_text = str(Path(_relpath(ref.resolve(), root.resolve())))
        except ValueError:
            ref_text = str(ref.resolve())
        sidecar["reference"] = ref_text
    if extra:
        for k, v in extra.items():
            sidecar.setdefault(k, v)
    if not overwrite:
        for p in [*targets, root / GEOMETRY_FILE]:
            if p.exists():
                raise InputError(p, "output file already exists; use --overwrite to replace it")

    if layout == "stacked":
        if fmt == "npy":
            atomic_save_npy(targets[0], arr)
        else:
            atomic_save_npz(targets[0], sinogram=arr)
    else:
        for t, a in zip(targets, arr, strict=True):
            if fmt == "npy":
                atomic_save_npy(t, a)
            elif fmt == "npz":
                atomic_save_npz(t, sinogram=a)
            else:
                import tifffile

                with atomic_path(t) as tmp:
                    tifffile.imwrite(tmp, a, photometric="minisblack")
    atomic_write_json(root / GEOMETRY_FILE, sidecar)
    return root


def _relpath(target: Path, start: Path) -> str:
    return os.path.relpath(target, start)
