"""Write a k-space directory (data, mask, coil maps, ``kspace.json``) that :mod:`recon.io.kspace_read` reads.

Formats: NumPy (``kspace.npy`` + ``mask.npy`` + ``coil_maps.npy``, or one ``kspace.npz``), HDF5
(``kspace.h5``, fastMRI style) or BART (``kspace``/``mask``/``coil_maps`` ``.cfl``/``.hdr``). Data
files are written first and ``kspace.json`` last, each atomically.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from recon.io.arrays import to_numpy
from recon.io.atomic import atomic_save_npy, atomic_save_npz, atomic_write_json, refuse_to_overwrite
from recon.io.bart_cfl import stack_to_bart, write_cfl
from recon.io.kspace_arrays import maps_to_stack, mask_to_stack, to_4d
from recon.io.kspace_hdf5 import write_kspace_h5
from recon.io.kspace_read import SIDECAR
from recon.io.sidecar import reference_text


def _file_names(fmt: str, has_mask: bool, has_maps: bool) -> dict[str, str | None]:
    """Sidecar fields ``data``/``mask``/``coil_maps`` -> file name in format ``fmt`` (None: not written)."""
    if fmt == "npy":
        return {"data": "kspace.npy", "mask": "mask.npy" if has_mask else None,
                "coil_maps": "coil_maps.npy" if has_maps else None}
    if fmt == "npz":
        return {"data": "kspace.npz"}
    if fmt == "h5":
        return {"data": "kspace.h5"}
    return {"data": "kspace.cfl", "mask": "mask.cfl" if has_mask else None,
            "coil_maps": "coil_maps.cfl" if has_maps else None}


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
    k = to_numpy(kspace)
    if not np.iscomplexobj(k):
        raise ValueError("k-space must be complex")
    k = to_4d(root, k.astype(np.complex64), "k-space")
    if not np.all(np.isfinite(k)):
        raise ValueError("k-space contains NaN or inf")
    n, c, h, w = k.shape
    m = mask_to_stack(root, to_numpy(mask), n, h, w).astype(np.uint8) if mask is not None else None
    s = maps_to_stack(root, to_numpy(coil_maps).astype(np.complex64), n, c, h, w) if coil_maps is not None else None
    if fmt not in ("npy", "npz", "h5", "cfl"):
        raise ValueError(f"fmt must be 'npy', 'npz', 'h5' or 'cfl', got {fmt!r}")

    sidecar: dict[str, Any] = {"format": "recon-kspace", "version": 1, **dict(meta or {})}
    files = _file_names(fmt, m is not None, s is not None)
    sidecar.update({key: v for key, v in files.items() if v})
    if slice_names is not None:
        if len(slice_names) != n:
            raise ValueError(f"{len(slice_names)} slice names for {n} slices")
        sidecar["slices"] = list(slice_names)
    if identity is not None:
        sidecar["identity"] = dict(identity)
    if reference is not None:
        sidecar["reference"] = reference_text(reference, root)

    root.mkdir(parents=True, exist_ok=True)
    targets = [root / v for v in files.values() if v] + [root / SIDECAR]
    if fmt == "cfl":
        targets += [t.with_suffix(".hdr") for t in targets if t.suffix == ".cfl"]
    if not overwrite:
        refuse_to_overwrite(targets)

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
        write_kspace_h5(root / "kspace.h5", k, m, s, meta)
    else:
        write_cfl(root / "kspace", stack_to_bart(k))
        if m is not None:
            write_cfl(root / "mask", stack_to_bart(m[:, None].astype(np.complex64)))
        if s is not None:
            write_cfl(root / "coil_maps", stack_to_bart(s))
    atomic_write_json(root / SIDECAR, sidecar)
    return root
