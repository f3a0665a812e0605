"""Read a sinogram directory: a ``geometry.json`` sidecar plus the measured data.

Layout::

    study/
      geometry.json          acquisition geometry, value type, optional identity/reference
      sinogram.npy           stacked data [n_slices, n_angles, n_detectors]  (or sinogram.npz)
    or
      slice_0000.npy ...     one [n_angles, n_detectors] array per slice (.npy, .npz or .tif)

``geometry.json`` (flat object; the geometric keys are exactly those of
:mod:`operators.geometry`, whose ``from_dict`` validates them; parsed by
:mod:`recon.io.sinogram_sidecar`)::

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
      "min_counts": 0.1,                   # counts: photon floor of the log (default COUNT_FLOOR)
      "angle_unit": "radian",              # or "degree"; angles may also name a .txt/.npy file
      "units": "per_mm",                   # or "per_pixel": uncalibrated attenuation, no HU
      "hu_calibrated": false,              # optional: per_mm data not calibrated to water (no HU)
      "projections": "tiffs",              # optional: projection images instead of sinograms
                                           #   (recon.io.projection_images)
      "center_of_rotation": "auto",        # optional: axis offset in detector pixels, or "auto"
                                           #   (parallel beam; recon.io.axis_correction)
      "ring_removal": {"method": "sorting", "size": 21},  # optional stripe removal (or true)
                                           #   (recon.io.stripe_removal)
      "noise": {...},                      # optional free-form record of simulated noise
      "data": "sinogram.npy",              # optional: data file name (default: found by name)
      "slices": ["slice_0000.npy", ...],   # optional: per-slice file order, or stacked labels
      "reference": "../dicom",             # optional: DICOM series dir, or an identity .json
      "identity": {...},                   # optional inline patient/study identity
      "ground_truth": "ground_truth.npy",  # optional: reference images [n, H, W] (HU) of a simulation
      "simulation": {...}                  # optional: how a simulated study was made
    }

Line integrals are dimensionless (attenuation coefficient in 1/mm times path length in mm).
Counts are photons, converted by :mod:`recon.io.sinogram_counts`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from operators.geometry import geometry_from_dict
from recon.errors import InputError
from recon.io.arrays import load_array, real_float32
from recon.io.atomic import is_partial
from recon.io.axis_correction import apply_center_of_rotation, parse_center_of_rotation
from recon.io.projection_images import read_projections
from recon.io.sidecar import identity_and_reference
from recon.io.sinogram_counts import line_integrals_from_projections, line_integrals_from_sidecar_counts
from recon.io.sinogram_sidecar import GEOMETRY_FILE, read_geometry_sidecar
from recon.io.stripe_removal import remove_stripes_sorting

STACKED_NAMES = ("sinogram.npy", "sinogram.npz")
SLICE_SUFFIXES = (".npy", ".npz", ".tif", ".tiff")


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
            ``flat``, ``noise`` as given (absent keys omitted); for projection images
            ``projections`` (source, rows, how dark/flat frames were used); with
            ``center_of_rotation`` the applied offset and its check
            (:func:`recon.io.axis_correction.apply_center_of_rotation`).
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
    def units(self) -> str:
        """``"per_mm"`` (attenuation in 1/mm, convertible to HU) or ``"per_pixel"`` (uncalibrated, no HU)."""
        return str(self.acquisition.get("units", "per_mm"))

    @property
    def hu_calibrated(self) -> bool:
        """Whether reconstructions of these data may be shown and stored in Hounsfield units: attenuation
        in 1/mm (``units`` ``per_mm``) of a water-calibrated scanner (``hu_calibrated`` not false)."""
        return self.units == "per_mm" and bool(self.acquisition.get("hu_calibrated", True))

    @property
    def n_slices(self) -> int:
        return int(self.data.shape[0])

    def geometry_object(self) -> Any:
        """The :mod:`operators.geometry` dataclass for this geometry."""
        return geometry_from_dict(self.geometry)


def _natural_key(name: str) -> list[Any]:
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", name)]


def _find_data(root: Path, sidecar: dict[str, Any], gpath: Path) -> tuple[Path | None, list[Path]]:
    """The data files: ``(stacked file, [])`` or ``(None, per-slice files in order)``.

    The sidecar's ``data`` names the stacked file; else ``sinogram.npy``/``.npz``, the files its
    ``slices`` lists, or ``slice_*`` files in natural name order. Exactly one layout may be present.
    """
    slices_field = sidecar.get("slices")
    stacked: Path | None = None
    per_slice: list[Path] = []
    if sidecar.get("data") is not None:
        if not isinstance(sidecar["data"], str):
            raise InputError(gpath, "field 'data' must be a file name")
        stacked = root / sidecar["data"]
        if not stacked.is_file():
            raise InputError(stacked, "data file named in geometry.json is missing")
        return stacked, per_slice
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
    return stacked, per_slice


def _load_stacked(
    stacked: Path, slices_field: list[str] | None, gpath: Path, n_angles: int, n_det: int
) -> tuple[np.ndarray, list[str]]:
    """The stacked data as float32 ``[n, A, D]`` (from ``[A, D]``, ``[n, A, D]`` or ``[n, 1, A, D]``) and slice labels."""
    arr = real_float32(stacked, load_array(stacked, key="sinogram"))
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
    return arr, names


def _load_per_slice(per_slice: list[Path], n_angles: int, n_det: int) -> tuple[np.ndarray, list[str]]:
    """Per-slice files (each ``[A, D]`` or ``[1, A, D]``) stacked to float32 ``[n, A, D]``, labelled by file stem."""
    arrays = []
    first_shape: tuple[int, ...] | None = None
    for p in per_slice:
        a = real_float32(p, load_array(p, key="sinogram"))
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
    return np.stack(arrays), [p.stem for p in per_slice]


def _load_projections(
    root: Path, sidecar: dict[str, Any], gpath: Path, acq: dict[str, Any], n_angles: int, n_det: int
) -> tuple[np.ndarray, list[str]]:
    """Projection images -> float32 line integrals ``[rows, A, D]`` labelled ``row_0000``, ... (detector row = slice)."""
    proj = read_projections(root, sidecar, gpath, n_angles, n_det)
    if acq["values"] == "counts":
        data, defects = line_integrals_from_projections(proj, acq, gpath)
        if defects is not None:
            acq["defects_interpolated"] = defects
    else:
        data = np.ascontiguousarray(proj.counts.transpose(1, 0, 2))
    acq["projections"] = {"source": proj.source.name, "rows": int(data.shape[0]),
                          "dark_frames": "per projection" if proj.dark is not None and proj.dark.shape[0] > 1 else "mean",
                          "flat_frames": "per projection" if proj.flat is not None and proj.flat.shape[0] > 1 else "mean"}
    start = sidecar.get("rows", [0])[0]
    return data, [f"row_{start + r:04d}" for r in range(data.shape[0])]


def measurement_file(path: str | Path) -> Path | None:
    """The scanner file a sinogram input stands for, or None for a sinogram directory (or anything else).

    A ``.mat`` file in the HTC 2022 layout (:mod:`recon.io.htc_mat`), or a directory without
    ``geometry.json`` that holds exactly one such file.
    """
    from recon.io.htc_mat import MAT_SUFFIX

    p = Path(path)
    if p.is_file():
        return p if p.suffix.lower() == MAT_SUFFIX else None
    if not p.is_dir() or (p / GEOMETRY_FILE).exists():
        return None
    mats = [q for q in p.iterdir() if q.is_file() and q.suffix.lower() == MAT_SUFFIX and not is_partial(q)]
    return mats[0] if len(mats) == 1 else None


def read_sinogram_dir(path: str | Path) -> SinogramStudy:
    """Read and validate a sinogram directory (see the module docstring for the format), or a
    scanner file that :func:`measurement_file` recognises (HTC 2022 ``.mat``: :mod:`recon.io.htc_mat`).

    Returns:
        :class:`SinogramStudy` with ``data`` as float32 line integrals ``[n, 1, A, D]``.

    Raises:
        InputError: missing/invalid ``geometry.json`` (syntax error with line, missing field, wrong
            type), missing or ambiguous data files, shapes disagreeing with the geometry or with
            each other, NaN/inf values, an unresolvable reference. The message names the file.
    """
    root = Path(path)
    scanner_file = measurement_file(root)
    if scanner_file is not None:
        from recon.io.htc_mat import read_htc_mat

        return read_htc_mat(scanner_file)
    if not root.is_dir():
        raise InputError(root, "not a directory" if root.exists() else "no such directory")
    gpath, sidecar, geometry, acq = read_geometry_sidecar(root)
    n_angles, n_det = len(geometry["angles"]), int(geometry["n_detectors"])

    slices_field = sidecar.get("slices")
    if slices_field is not None and not (isinstance(slices_field, list) and all(isinstance(s, str) for s in slices_field)):
        raise InputError(gpath, "field 'slices' must be a list of strings")
    if "projections" in sidecar:
        data, names = _load_projections(root, sidecar, gpath, acq, n_angles, n_det)
    else:
        stacked, per_slice = _find_data(root, sidecar, gpath)
        if stacked is not None:
            data, names = _load_stacked(stacked, slices_field, gpath, n_angles, n_det)
        else:
            data, names = _load_per_slice(per_slice, n_angles, n_det)
        if data.shape[0] == 0:
            raise InputError(stacked or root, "no slices in the data")
        if acq["values"] == "counts":
            data = line_integrals_from_sidecar_counts(data, acq, root, gpath)

    # Stripes are tied to detector pixels, so they go before the axis shift moves the pixels.
    if "ring_removal" in acq:
        data = remove_stripes_sorting(data, acq["ring_removal"]["size"])
    cor = parse_center_of_rotation(sidecar.get("center_of_rotation"), gpath, geometry["type"])
    if cor is not None:
        data, acq["center_of_rotation"] = apply_center_of_rotation(
            data, np.asarray(geometry["angles"]), geometry, cor, gpath)

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
