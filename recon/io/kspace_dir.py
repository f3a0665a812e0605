"""The k-space directory: measured (undersampled) Cartesian k-space plus mask and coil maps.

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
  the ``ismrmrd_header`` XML when present. Raw ISMRMRD acquisition streams
  (``/dataset/data``) are not supported: convert them to a ``kspace`` array first.
* BART ``.cfl/.hdr`` (``kspace.cfl`` or ``ksp.cfl``; ``mask.cfl``, ``coil_maps.cfl`` /
  ``sens.cfl`` / ``maps.cfl``): column-major complex64 with BART's dimension order
  (0 READ x, 1 PHS1 y, 2 PHS2 z, 3 COIL, 4 MAPS, ..., 13 SLICE). A 2-D slice occupies two of the
  three spatial dimensions (the singleton one is dropped, x first: ``1 x H x W x C`` gives
  ``[1, C, H, W]``); slices come from dimension 13. 3-D k-space (x, y, z all > 1) is refused:
  inverse-FFT along the readout first.

An optional ``kspace.json`` sidecar names files and records the acquisition::

    {"data": "kspace.npy", "mask": "mask.npy", "coil_maps": "coil_maps.npy",
     "acceleration": 8, "mask_kind": "equispaced", "center_fraction": 0.08, "seed": 0,
     "pixel_spacing_mm": [1.0, 1.0], "slices": ["s0", ...],
     "identity": {...}, "reference": "../dicom"}

Without a mask file the mask is derived from the data: a position is sampled where any coil is
nonzero.
"""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from recon.errors import InputError
from recon.io.atomic import atomic_path, atomic_save_npy, atomic_save_npz, atomic_write_bytes, atomic_write_json
from recon.io.sinogram_dir import identity_and_reference, load_json

SIDECAR = "kspace.json"
_DATA_NAMES = ("kspace.npy", "kspace.npz", "kspace.h5", "kspace.hdf5", "kspace.cfl", "ksp.cfl")
_MASK_NAMES = ("mask.npy", "mask.cfl")
_MAPS_NAMES = ("coil_maps.npy", "coil_maps.cfl", "sens.cfl", "maps.cfl", "sens_maps.npy")
_BART_SLICE_DIM = 13
_BART_COIL_DIM = 3


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


# --------------------------------------------------------------------------- BART cfl


def _cfl_paths(path: str | Path) -> tuple[Path, Path]:
    p = Path(path)
    if p.suffix in (".cfl", ".hdr"):
        p = p.with_suffix("")
    return p.with_name(p.name + ".hdr"), p.with_name(p.name + ".cfl")


def read_cfl(path: str | Path) -> np.ndarray:
    """Read a BART ``name.hdr``/``name.cfl`` pair into a complex64 array of the header's dims.

    Args:
        path: the name without extension (``.cfl``/``.hdr`` also accepted).

    Returns:
        complex64 array, column-major data reshaped to BART's dimension order; trailing
        singleton dimensions are dropped (leading ones, such as a singleton readout, are kept).
    """
    hdr, cfl = _cfl_paths(path)
    try:
        lines = hdr.read_text().splitlines()
    except FileNotFoundError:
        raise InputError(hdr, "missing BART header (.hdr)") from None
    except (OSError, UnicodeDecodeError) as e:
        raise InputError(hdr, f"cannot read BART header ({e})") from None
    dims: list[int] | None = None
    for i, line in enumerate(lines):
        if line.strip() == "# Dimensions" and i + 1 < len(lines):
            try:
                dims = [int(t) for t in lines[i + 1].split()]
            except ValueError:
                dims = None
            break
    if not dims or any(d < 1 for d in dims):
        raise InputError(hdr, "no valid '# Dimensions' line in BART header")
    while len(dims) > 1 and dims[-1] == 1:
        dims.pop()
    expected = int(np.prod(dims))
    if not cfl.is_file():
        raise InputError(cfl, "missing BART data (.cfl)")
    size = cfl.stat().st_size
    if size != expected * 8:
        raise InputError(cfl, f"holds {size} bytes, header dims {dims} need {expected * 8} (truncated?)")
    data = np.fromfile(cfl, dtype="<c8")
    return data.reshape(dims, order="F")


def write_cfl(path: str | Path, array: np.ndarray) -> tuple[Path, Path]:
    """Write ``array`` (any complex/real numeric) as BART ``name.hdr``/``name.cfl``, atomically.

    The array's axes are BART's dimensions in order (x, y, z, coil, maps, ...). Returns the two
    paths.
    """
    hdr, cfl = _cfl_paths(path)
    arr = np.asarray(array).astype("<c8")
    dims = list(arr.shape) + [1] * (16 - arr.ndim)
    atomic_write_bytes(cfl, np.asfortranarray(arr).tobytes(order="F"))
    atomic_write_bytes(hdr, ("# Dimensions\n" + " ".join(str(d) for d in dims) + " \n").encode())
    return hdr, cfl


def _bart_to_stack(path: Path, arr: np.ndarray, what: str) -> np.ndarray:
    """BART dims -> ``[slices, coils, H, W]``; refuse anything else non-singleton."""
    dims = list(arr.shape) + [1] * (16 - arr.ndim)
    a = arr.reshape(dims)  # appending singleton axes keeps the element order
    other = [d for d in range(16) if d not in (0, 1, 2, _BART_COIL_DIM, _BART_SLICE_DIM) and dims[d] > 1]
    if other:
        raise InputError(path, f"{what} has size {dims[other[0]]} in BART dimension {other[0]}; only x, y, z, coil (3) and slice "
                               "(13) are supported")
    spatial = dims[:3]
    if all(s > 1 for s in spatial):
        raise InputError(path, f"{what} is 3-D ({spatial[0]}x{spatial[1]}x{spatial[2]}); inverse-FFT along the readout and store "
                               "2-D slices")
    keep = [1, 2] if spatial[0] == 1 else ([0, 1] if spatial[2] == 1 else [0, 2])
    drop = ({0, 1, 2} - set(keep)).pop()
    a = np.take(a, 0, axis=drop)  # dims now: (h, w, coil, ... slice shifted by one)
    # remaining axes: keep[0], keep[1], then 3..15 shifted down by one
    coil_ax, slice_ax = _BART_COIL_DIM - 1, _BART_SLICE_DIM - 1
    a = np.moveaxis(a, (slice_ax, coil_ax, 0, 1), (0, 1, 2, 3))
    return a.reshape(a.shape[:4])


def _stack_to_bart(arr: np.ndarray) -> np.ndarray:
    """``[slices, coils, H, W]`` -> BART dims ``(1, H, W, coils, 1 x 9, slices)``."""
    n, c, h, w = arr.shape
    return np.transpose(arr, (2, 3, 1, 0)).reshape((1, h, w, c) + (1,) * 9 + (n,)).astype(np.complex64)


# --------------------------------------------------------------------------- helpers


def _check_complex_finite(path: Path, arr: np.ndarray, what: str) -> np.ndarray:
    if not np.issubdtype(arr.dtype, np.number):
        raise InputError(path, f"{what} has non-numeric type {arr.dtype}")
    if not np.iscomplexobj(arr):
        raise InputError(path, f"{what} is real ({arr.dtype}); k-space must be complex (store complex64, not real/imag pairs)")
    arr = arr.astype(np.complex64, copy=False)
    bad = ~np.isfinite(arr)
    if bad.any():
        raise InputError(path, f"{what} contains {int(bad.sum())} NaN/inf value(s) (first at index "
                               f"{tuple(int(i) for i in np.argwhere(bad)[0])})")
    return arr


def _to_4d(path: Path, arr: np.ndarray, what: str) -> np.ndarray:
    if arr.ndim == 2:
        return arr[None, None]
    if arr.ndim == 3:
        return arr[:, None]  # [slices, H, W] single-coil, as fastMRI
    if arr.ndim == 4:
        return arr
    raise InputError(path, f"{what} has shape {arr.shape}; expected [slices, coils, H, W], [slices, H, W] or [H, W]")


def _mask_to_stack(path: Path, mask: np.ndarray, n: int, h: int, w: int) -> np.ndarray:
    """Broadcast a mask of shape [W], [H, W], [n, H, W], [n, 1, H, W] or [n, W] to [n, H, W] bool."""
    m = np.asarray(mask)
    if np.iscomplexobj(m):
        m = np.abs(m)
    if not np.all(np.isfinite(m)):
        raise InputError(path, "mask contains NaN/inf")
    m = m != 0
    m = np.squeeze(m) if m.ndim > 2 and m.size in (w, h * w) else m
    if m.shape == (w,):
        m = np.broadcast_to(m[None, None, :], (n, h, w))
    elif m.shape == (h, w):
        m = np.broadcast_to(m[None], (n, h, w))
    elif m.shape == (n, w):
        m = np.broadcast_to(m[:, None, :], (n, h, w))
    elif m.shape == (n, 1, h, w):
        m = m[:, 0]
    elif m.shape != (n, h, w):
        raise InputError(path, f"mask has shape {np.asarray(mask).shape}; expected [{w}], [{h}, {w}] or [{n}, {h}, {w}] to match "
                               "k-space")
    if not m.any():
        raise InputError(path, "mask samples nothing")
    return np.ascontiguousarray(m)


def _maps_to_stack(path: Path, maps: np.ndarray, n: int, c: int, h: int, w: int) -> np.ndarray:
    m = _check_complex_finite(path, maps, "coil maps")
    if m.shape == (c, h, w):
        m = np.broadcast_to(m[None], (n, c, h, w))
    if m.shape != (n, c, h, w):
        raise InputError(path, f"coil maps have shape {maps.shape}; expected [{n}, {c}, {h}, {w}] or [{c}, {h}, {w}]")
    return np.ascontiguousarray(m)


def _load_npy(path: Path) -> np.ndarray:
    try:
        return np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise InputError(path, "missing file") from None
    except Exception as e:
        raise InputError(path, f"cannot read .npy ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})") from None


def _ismrmrd_spacing(xml: Any) -> list[float] | None:
    """Pixel spacing (row, col) in mm of the reconstruction space in an ISMRMRD XML header."""
    try:
        text = xml.decode() if isinstance(xml, (bytes, np.bytes_)) else str(xml)
        root = ET.fromstring(text)
        ns = {"m": root.tag.split("}")[0].strip("{")} if root.tag.startswith("{") else {}
        pre = "m:" if ns else ""
        rs = root.find(f".//{pre}encoding/{pre}reconSpace", ns)
        mx, my = (float(rs.find(f"{pre}matrixSize/{pre}{a}", ns).text) for a in ("x", "y"))
        fx, fy = (float(rs.find(f"{pre}fieldOfView_mm/{pre}{a}", ns).text) for a in ("x", "y"))
        return [fy / my, fx / mx]
    except Exception:  # optional metadata: absent or malformed headers are simply not used
        return None


def _attr_value(v: Any) -> Any:
    if isinstance(v, bytes):
        return v.decode(errors="replace")
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, np.ndarray):
        return v.tolist()
    return v


# --------------------------------------------------------------------------- reading


def _find_data(root: Path, sidecar: Mapping[str, Any], spath: Path) -> Path:
    if sidecar.get("data") is not None:
        if not isinstance(sidecar["data"], str):
            raise InputError(spath, "field 'data' must be a file name")
        p = root / sidecar["data"]
        if p.suffix == ".hdr":
            p = p.with_suffix(".cfl")
        if not p.is_file():
            raise InputError(p, "data file named in kspace.json is missing")
        return p
    for name in _DATA_NAMES:
        if (root / name).is_file():
            return root / name
    cands = [p for p in sorted(root.iterdir()) if p.is_file() and p.suffix.lower() in (".h5", ".hdf5", ".npz")]
    if len(cands) == 1:
        return cands[0]
    if len(cands) > 1:
        raise InputError(root, f"several candidate k-space files ({', '.join(p.name for p in cands[:4])}); name one in "
                               "kspace.json 'data'")
    raise InputError(root, "no k-space data: expected kspace.npy/.npz/.h5, kspace.cfl or ksp.cfl")


def _optional_file(root: Path, sidecar: Mapping[str, Any], key: str, defaults: Sequence[str], spath: Path) -> Path | None:
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


def _load_any(path: Path, what: str) -> np.ndarray:
    if path.suffix == ".cfl":
        return _bart_to_stack(path, read_cfl(path), what)
    return _load_npy(path)


def read_kspace_dir(path: str | Path) -> KspaceStudy:
    """Read and validate k-space from a directory (or a single data file); see the module doc.

    Raises:
        InputError: naming the file and the problem: invalid sidecar JSON, missing data, real or
            non-finite k-space, shapes of mask/coil maps disagreeing with the k-space, unsupported
            HDF5 layout or BART dimensions.
    """
    p = Path(path)
    if not p.exists():
        cfl_hdr, cfl_data = _cfl_paths(p)
        if cfl_hdr.exists():
            p = cfl_data
        else:
            raise InputError(p, "no such file or directory")
    root = p if p.is_dir() else p.parent
    spath = root / SIDECAR
    sidecar: dict[str, Any] = {}
    if spath.is_file():
        loaded = load_json(spath, "kspace.json sidecar")
        if not isinstance(loaded, dict):
            raise InputError(spath, f"expected a JSON object, got {type(loaded).__name__}")
        sidecar = loaded
    data_path = _find_data(root, sidecar, spath) if p.is_dir() else p
    suffix = data_path.suffix.lower()

    attrs: dict[str, Any] = {}
    meta: dict[str, Any] = {k: v for k, v in sidecar.items() if k not in ("identity", "reference")}
    mask_raw: np.ndarray | None = None
    maps_raw: np.ndarray | None = None
    mask_from: Path = data_path
    maps_from: Path = data_path
    if suffix == ".npy":
        fmt = "npy"
        k = _to_4d(data_path, _check_complex_finite(data_path, _load_npy(data_path), "k-space"), "k-space")
    elif suffix == ".npz":
        fmt = "npz"
        try:
            with np.load(data_path, allow_pickle=False) as z:
                if "kspace" not in z.files:
                    raise InputError(data_path, f"npz has no 'kspace' array (holds {list(z.files)})")
                k_raw = z["kspace"]
                mask_raw = z["mask"] if "mask" in z.files else None
                maps_raw = z["coil_maps"] if "coil_maps" in z.files else None
        except InputError:
            raise
        except Exception as e:
            raise InputError(data_path, f"cannot read .npz ({type(e).__name__}: {e})") from None
        k = _to_4d(data_path, _check_complex_finite(data_path, k_raw, "k-space"), "k-space")
    elif suffix in (".h5", ".hdf5"):
        fmt = "h5"
        k, mask_raw, maps_raw, attrs, spacing = _read_h5(data_path)
        if spacing is not None:
            meta.setdefault("pixel_spacing_mm", spacing)
    elif suffix in (".cfl", ".hdr"):
        fmt = "cfl"
        data_path = data_path.with_suffix(".cfl")
        k = _check_complex_finite(data_path, _bart_to_stack(data_path, read_cfl(data_path), "k-space"), "k-space")
    else:
        raise InputError(data_path, f"unsupported k-space file type '{suffix}' (expected .npy, .npz, .h5, .cfl)")

    n, c, h, w = k.shape
    if min(k.shape) < 1:
        raise InputError(data_path, f"k-space is empty (shape {k.shape})")

    mpath = _optional_file(root, sidecar, "mask", _MASK_NAMES, spath) if mask_raw is None else None
    if mpath is not None:
        mask_from = mpath
        mask_raw = _bart_to_stack(mpath, read_cfl(mpath), "mask").real if mpath.suffix == ".cfl" else _load_npy(mpath)
    if mask_raw is not None:
        mask = _mask_to_stack(mask_from, mask_raw, n, h, w)
        mask_source = "file"
    else:
        mask = np.any(k != 0, axis=1)
        if not mask.any():
            raise InputError(data_path, "k-space is all zeros")
        mask_source = "derived"

    cpath = _optional_file(root, sidecar, "coil_maps", _MAPS_NAMES, spath) if maps_raw is None else None
    if cpath is not None:
        maps_from = cpath
        maps_raw = _load_any(cpath, "coil maps")
    coil_maps = _maps_to_stack(maps_from, maps_raw, n, c, h, w) if maps_raw is not None else None

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


def _read_h5(path: Path) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None, dict[str, Any], list[float] | None]:
    import h5py

    try:
        f = h5py.File(path, "r")
    except OSError as e:
        raise InputError(path, f"cannot open HDF5 file ({str(e).splitlines()[0]})") from None
    with f:
        if "kspace" not in f:
            if "dataset" in f and "data" in f["dataset"]:
                raise InputError(path, "raw ISMRMRD acquisitions are not supported; store a 'kspace' array [slices, coils, H, W] "
                                       "(fastMRI style)")
            raise InputError(path, f"HDF5 file has no 'kspace' dataset (holds {sorted(f.keys())[:8]})")
        try:
            k_raw = f["kspace"][()]
            mask_raw = f["mask"][()] if "mask" in f else None
            maps_key = "coil_maps" if "coil_maps" in f else ("sens_maps" if "sens_maps" in f else None)
            maps_raw = f[maps_key][()] if maps_key else None
            attrs = {str(a): _attr_value(v) for a, v in f.attrs.items()}
            spacing = _ismrmrd_spacing(f["ismrmrd_header"][()]) if "ismrmrd_header" in f else None
        except InputError:
            raise
        except Exception as e:
            raise InputError(path, f"cannot read HDF5 dataset ({type(e).__name__}: "
                                   f"{str(e).splitlines()[0] if str(e) else ''})") from None
    k = _to_4d(path, _check_complex_finite(path, k_raw, "k-space"), "k-space")
    return k, mask_raw, maps_raw, attrs, spacing


# --------------------------------------------------------------------------- writing


def write_kspace_dir(
    path: str | Path,
    kspace: Any,
    *,
    mask: Any | None = None,
    coil_maps: Any | None = None,
    fmt: str = "npy",
    meta: Mapping[str, Any] | None = None,
    identity: Mapping[str, str] | None = None,
    reference: str | Path | None = None,
    slice_names: Sequence[str] | None = None,
    overwrite: bool = False,
) -> Path:
    """Write a k-space directory readable by :func:`read_kspace_dir`.

    Data files first, ``kspace.json`` last, each atomically.

    Args:
        path: directory (created if needed).
        kspace: complex ``[n, C, H, W]`` (``[n, H, W]`` single-coil, ``[H, W]``), numpy or torch.
        mask: bool/0-1 mask ``[W]``, ``[H, W]`` or ``[n, H, W]``; stored as uint8 (npy/npz/h5) or
            as a real cfl.
        coil_maps: complex ``[n, C, H, W]`` or ``[C, H, W]``.
        fmt: ``"npy"`` (kspace.npy, mask.npy, coil_maps.npy), ``"npz"`` (kspace.npz),
            ``"h5"`` (kspace.h5, fastMRI style) or ``"cfl"`` (kspace/mask/coil_maps .cfl/.hdr).
        meta: sidecar fields (acceleration, mask_kind, center_fraction, seed,
            pixel_spacing_mm, ...).
        identity, reference: patient/study identity and/or a DICOM directory / identity JSON.
        slice_names: labels per slice.
        overwrite: replace existing files.

    Returns:
        The directory.
    """
    root = Path(path)

    def _np(a: Any) -> np.ndarray:
        return a.detach().cpu().numpy() if hasattr(a, "detach") else np.asarray(a)

    k = _np(kspace)
    if not np.iscomplexobj(k):
        raise ValueError("k-space must be complex")
    k = _to_4d(root, k.astype(np.complex64), "k-space")
    if not np.all(np.isfinite(k)):
        raise ValueError("k-space contains NaN or inf")
    n, c, h, w = k.shape
    m = _mask_to_stack(root, _np(mask), n, h, w).astype(np.uint8) if mask is not None else None
    s = _maps_to_stack(root, _np(coil_maps).astype(np.complex64), n, c, h, w) if coil_maps is not None else None
    if fmt not in ("npy", "npz", "h5", "cfl"):
        raise ValueError(f"fmt must be 'npy', 'npz', 'h5' or 'cfl', got {fmt!r}")

    sidecar: dict[str, Any] = {"format": "recon-kspace", "version": 1, **dict(meta or {})}
    if fmt == "npy":
        files = {"data": "kspace.npy", "mask": "mask.npy" if m is not None else None,
                 "coil_maps": "coil_maps.npy" if s is not None else None}
    elif fmt == "npz":
        files = {"data": "kspace.npz"}
    elif fmt == "h5":
        files = {"data": "kspace.h5"}
    else:
        files = {"data": "kspace.cfl", "mask": "mask.cfl" if m is not None else None,
                 "coil_maps": "coil_maps.cfl" if s is not None else None}
    sidecar.update({key: v for key, v in files.items() if v})
    if slice_names is not None:
        if len(slice_names) != n:
            raise ValueError(f"{len(slice_names)} slice names for {n} slices")
        sidecar["slices"] = list(slice_names)
    if identity is not None:
        sidecar["identity"] = dict(identity)
    if reference is not None:
        try:
            sidecar["reference"] = os.path.relpath(Path(reference).resolve(), root.resolve())
        except ValueError:
            sidecar["reference"] = str(Path(reference).resolve())

    root.mkdir(parents=True, exist_ok=True)
    targets = [root / v for v in files.values() if v] + [root / SIDECAR]
    if fmt == "cfl":
        targets += [t.with_suffix(".hdr") for t in targets if t.suffix == ".cfl"]
    if not overwrite:
        for t in targets:
            if t.exists():
                raise InputError(t, "output file already exists; use --overwrite to replace it")

    if fmt == "npy":
        atomic_save_npy(root / "kspace.npy", k)
        if m is not None:
            atomic_save_npy(root / "mask.npy", m)
        if s is not None:
            atomic_save_npy(root / "coil_maps.npy", s)
    elif fmt == "npz":
        arrays = {"kspace": k, **({"mask": m} if m is not None else {}), **({"coil_maps": s} if s is not None else {})}
        atomic_save_npz(root / "kspace.npz", **arrays)
    elif fmt == "h5":
        import h5py

        with atomic_path(root / "kspace.h5") as tmp:
            with h5py.File(tmp, "w") as f:
                # fastMRI layout: [slices, coils, H, W] multi-coil, [slices, H, W] single-coil.
                f.create_dataset("kspace", data=k[:, 0] if c == 1 else k)
                if m is not None:
                    f.create_dataset("mask", data=m)
                if s is not None:
                    f.create_dataset("coil_maps", data=s)
                for key in ("acceleration", "center_fraction"):
                    if meta and isinstance(meta.get(key), (int, float)):
                        f.attrs[key] = meta[key]
    else:
        write_cfl(root / "kspace", _stack_to_bart(k))
        if m is not None:
            write_cfl(root / "mask", _stack_to_bart(m[:, None].astype(np.complex64)))
        if s is not None:
            write_cfl(root / "coil_maps", _stack_to_bart(s))
    atomic_write_json(root / SIDECAR, sidecar)
    return root
