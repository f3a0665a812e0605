"""Read a k-space directory: measured (undersampled) Cartesian k-space plus mask and coil maps.

Conventions of what is returned (shared with :mod:`operators.fourier`): complex64 k-space
``[n_slices, n_coils, H, W]`` with the zero frequency at index ``(H // 2, W // 2)`` (centred,
orthonormal DFT, the fastMRI and BART convention); phase encoding along the last axis for 1-D
(column) masks; mask bool ``[n_slices, H, W]``, True where sampled; coil sensitivity maps
complex64 ``[n_slices, n_coils, H, W]`` or None.

Accepted layouts (a directory, or the data file itself):

* ``kspace.npy`` (+ optional ``mask.npy``, ``coil_maps.npy``), or ``kspace.npz`` with keys
  ``kspace``, optional ``mask`` and ``coil_maps``. Array rank decides the axes: 4-D
  ``[slices, coils, H, W]``; 3-D ``[slices, H, W]`` single-coil (as fastMRI); 2-D ``[H, W]``.
* HDF5 in the fastMRI style (``kspace.h5`` or any single ``*.h5``): dataset ``kspace``
  ``[slices, coils, H, W]`` (multi-coil) or ``[slices, H, W]`` (single-coil); optional
  ``mask`` (``[W]`` column mask as in fastMRI, ``[H, W]`` or per slice); optional ``coil_maps``
  (or ``sens_maps``); file attributes are returned in ``attrs``; pixel spacing is taken from
  the ``ismrmrd_header`` XML when present (:mod:`recon.io.kspace_hdf5`). Raw ISMRMRD
  acquisition streams (``/dataset/data``) are not supported: convert them to a ``kspace`` array first.
* BART ``.cfl/.hdr`` (``kspace.cfl`` or ``ksp.cfl``; ``mask.cfl``, ``coil_maps.cfl`` /
  ``sens.cfl`` / ``maps.cfl``): column-major complex64 with BART's dimension order
  (0 READ x, 1 PHS1 y, 2 PHS2 z, 3 COIL, 4 MAPS, ..., 13 SLICE; :mod:`recon.io.bart_cfl`). A 2-D
  slice occupies two of the three spatial dimensions (the singleton one is dropped, x first:
  ``1 x H x W x C`` gives ``[1, C, H, W]``); slices come from dimension 13. 3-D k-space (x, y, z
  all > 1) is refused: inverse-FFT along the readout first.

An optional ``kspace.json`` sidecar names files and records the acquisition::

    {"data": "kspace.npy", "mask": "mask.npy", "coil_maps": "coil_maps.npy",
     "acceleration": 8, "mask_kind": "equispaced", "center_fraction": 0.08, "seed": 0,
     "pixel_spacing_mm": [1.0, 1.0], "slices": ["s0", ...],
     "identity": {...}, "reference": "../dicom"}

Without a mask file the mask is derived from the data: a position is sampled where any coil is
nonzero.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from recon.errors import InputError
from recon.io.arrays import first_line
from recon.io.bart_cfl import cfl_paths, read_cfl_stack
from recon.io.kspace_arrays import complex_finite, maps_to_stack, mask_to_stack, to_4d
from recon.io.kspace_hdf5 import read_kspace_h5
from recon.io.sidecar import identity_and_reference, load_json_object

SIDECAR = "kspace.json"
_DATA_NAMES = ("kspace.npy", "kspace.npz", "kspace.h5", "kspace.hdf5", "kspace.cfl", "ksp.cfl")
_MASK_NAMES = ("mask.npy", "mask.cfl")
_MAPS_NAMES = ("coil_maps.npy", "coil_maps.cfl", "sens.cfl", "maps.cfl", "sens_maps.npy")


@dataclass
class KspaceStudy:
    """A k-space directory, read and validated.

    Attributes:
        kspace: complex64 ``[n_slices, n_coils, H, W]``, DC at ``(H // 2, W // 2)``.
        mask: bool ``[n_slices, H, W]``, True where sampled.
        mask_source: ``"file"`` (given) or ``"derived"`` (nonzero samples of ``kspace``).
        coil_maps: complex64 ``[n_slices, n_coils, H, W]`` or None (to be estimated).
        meta: the sidecar fields (acceleration, mask_kind, seed, pixel_spacing_mm, ...), plus
            ``pixel_spacing_mm`` from an ISMRMRD header when found.
        identity: patient/study identity from the sidecar or a referenced identity JSON, or None.
        reference: referenced DICOM directory (resolved) or None.
        slice_names: one label per slice.
        source_format: ``"npy"``, ``"npz"``, ``"h5"`` or ``"cfl"``.
        attrs: HDF5 file attributes (fastMRI: acquisition, max, norm, ...) or {}. May hold
            identifiers: never log them.
        path: the data file.
    """

    kspace: np.ndarray
    mask: np.ndarray
    mask_source: str
    coil_maps: np.ndarray | None
    meta: dict[str, Any]
    identity: dict[str, str] | None
    reference: Path | None
    slice_names: list[str]
    source_format: str
    attrs: dict[str, Any] = field(default_factory=dict, repr=False)
    path: Path | None = None

    @property
    def n_slices(self) -> int:
        return int(self.kspace.shape[0])

    @property
    def n_coils(self) -> int:
        return int(self.kspace.shape[1])

    @property
    def acceleration(self) -> float:
        """Measured acceleration: positions / sampled positions (over all slices)."""
        s = int(self.mask.sum())
        return float(self.mask.size / s) if s else float("inf")


def _load_npy(path: Path) -> np.ndarray:
    try:
        return np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise InputError(path, "missing file") from None
    except Exception as e:
        raise InputError(path, f"cannot read .npy ({type(e).__name__}: {first_line(e)})") from None


def _optional_file(root: Path, sidecar: Mapping[str, Any], key: str, defaults: Sequence[str], spath: Path) -> Path | None:
    """The file the sidecar names under ``key`` (``.hdr`` meaning its ``.cfl``), else the first of ``defaults`` present."""
    if sidecar.get(key) is not None:
        if not isinstance(sidecar[key], str):
            raise InputError(spath, f"field '{key}' must be a file name")
        p = root / sidecar[key]
        if p.suffix == ".hdr":
            p = p.with_suffix(".cfl")
        if not p.is_file():
            raise InputError(p, f"{key} file named in kspace.json is missing")
        return p
    for name in defaults:
        if (root / name).is_file():
            return root / name
    return None


def _find_data(root: Path, sidecar: Mapping[str, Any], spath: Path) -> Path:
    """The k-space file: named by the sidecar, a standard name, or the only ``.h5``/``.hdf5``/``.npz`` in ``root``."""
    named = _optional_file(root, sidecar, "data", _DATA_NAMES, spath)
    if named is not None:
        return named
    cands = [p for p in sorted(root.iterdir()) if p.is_file() and p.suffix.lower() in (".h5", ".hdf5", ".npz")]
    if len(cands) == 1:
        return cands[0]
    if len(cands) > 1:
        raise InputError(root, f"several candidate k-space files ({', '.join(p.name for p in cands[:4])}); name one in "
                               "kspace.json 'data'")
    raise InputError(root, "no k-space data: expected kspace.npy/.npz/.h5, kspace.cfl or ksp.cfl")


def _load_npz(path: Path) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """``(kspace, mask or None, coil_maps or None)`` as stored in an npz."""
    try:
        with np.load(path, allow_pickle=False) as z:
            if "kspace" not in z.files:
                raise InputError(path, f"npz has no 'kspace' array (holds {list(z.files)})")
            return (z["kspace"], z["mask"] if "mask" in z.files else None,
                    z["coil_maps"] if "coil_maps" in z.files else None)
    except InputError:
        raise
    except Exception as e:
        raise InputError(path, f"cannot read .npz ({type(e).__name__}: {e})") from None


def _load_data(
    data_path: Path, meta: dict[str, Any]
) -> tuple[str, Path, np.ndarray, np.ndarray | None, np.ndarray | None, dict[str, Any]]:
    """Read the k-space file by its suffix.

    Returns:
        ``(format, data path, kspace [n, C, H, W] complex64, raw mask or None, raw coil maps or
        None, HDF5 attributes)``; an ISMRMRD pixel spacing is added to ``meta`` unless it has one.
    """
    suffix = data_path.suffix.lower()
    mask_raw: np.ndarray | None = None
    maps_raw: np.ndarray | None = None
    attrs: dict[str, Any] = {}
    if suffix == ".npy":
        fmt = "npy"
        k = to_4d(data_path, complex_finite(data_path, _load_npy(data_path), "k-space"), "k-space")
    elif suffix == ".npz":
        fmt = "npz"
        k_raw, mask_raw, maps_raw = _load_npz(data_path)
        k = to_4d(data_path, complex_finite(data_path, k_raw, "k-space"), "k-space")
    elif suffix in (".h5", ".hdf5"):
        fmt = "h5"
        k, mask_raw, maps_raw, attrs, spacing = read_kspace_h5(data_path)
        if spacing is not None:
            meta.setdefault("pixel_spacing_mm", spacing)
    elif suffix in (".cfl", ".hdr"):
        fmt = "cfl"
        data_path = data_path.with_suffix(".cfl")
        k = complex_finite(data_path, read_cfl_stack(data_path, "k-space"), "k-space")
    else:
        raise InputError(data_path, f"unsupported k-space file type '{suffix}' (expected .npy, .npz, .h5, .cfl)")
    return fmt, data_path, k, mask_raw, maps_raw, attrs


def read_kspace_dir(path: str | Path) -> KspaceStudy:
    """Read and validate k-space from a directory (or a single data file); see the module doc.

    Raises:
        InputError: naming the file and the problem: invalid sidecar JSON, missing data, real or
            non-finite k-space, shapes of mask/coil maps disagreeing with the k-space, unsupported
            HDF5 layout or BART dimensions.
    """
    p = Path(path)
    if not p.exists():
        cfl_hdr, cfl_data = cfl_paths(p)
        if cfl_hdr.exists():
            p = cfl_data
        else:
            raise InputError(p, "no such file or directory")
    root = p if p.is_dir() else p.parent
    spath = root / SIDECAR
    sidecar: dict[str, Any] = load_json_object(spath, "kspace.json sidecar") if spath.is_file() else {}
    data_path = _find_data(root, sidecar, spath) if p.is_dir() else p
    meta: dict[str, Any] = {k: v for k, v in sidecar.items() if k not in ("identity", "reference")}
    fmt, data_path, k, mask_raw, maps_raw, attrs = _load_data(data_path, meta)

    n, c, h, w = k.shape
    if min(k.shape) < 1:
        raise InputError(data_path, f"k-space is empty (shape {k.shape})")

    mask_from: Path = data_path
    mpath = _optional_file(root, sidecar, "mask", _MASK_NAMES, spath) if mask_raw is None else None
    if mpath is not None:
        mask_from = mpath
        mask_raw = read_cfl_stack(mpath, "mask").real if mpath.suffix == ".cfl" else _load_npy(mpath)
    if mask_raw is not None:
        mask = mask_to_stack(mask_from, mask_raw, n, h, w)
        mask_source = "file"
    else:
        mask = np.any(k != 0, axis=1)
        if not mask.any():
            raise InputError(data_path, "k-space is all zeros")
        mask_source = "derived"

    maps_from: Path = data_path
    cpath = _optional_file(root, sidecar, "coil_maps", _MAPS_NAMES, spath) if maps_raw is None else None
    if cpath is not None:
        maps_from = cpath
        maps_raw = read_cfl_stack(cpath, "coil maps") if cpath.suffix == ".cfl" else _load_npy(cpath)
    coil_maps = maps_to_stack(maps_from, maps_raw, n, c, h, w) if maps_raw is not None else None

    names = sidecar.get("slices")
    if names is None:
        names = [f"slice_{i:04d}" for i in range(n)]
    elif not (isinstance(names, list) and len(names) == n and all(isinstance(s, str) for s in names)):
        raise InputError(spath, f"field 'slices' must list {n} names (one per slice)")

    identity, reference = identity_and_reference(root, sidecar, spath)
    return KspaceStudy(
        kspace=np.ascontiguousarray(k, dtype=np.complex64),
        mask=np.ascontiguousarray(mask),
        mask_source=mask_source,
        coil_maps=coil_maps,
        meta=meta,
        identity=identity,
        reference=reference,
        slice_names=list(names),
        source_format=fmt,
        attrs=attrs,
        path=data_path,
    )
