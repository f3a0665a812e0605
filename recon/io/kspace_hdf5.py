"""fastMRI-style HDF5 k-space files: reading (with ISMRMRD pixel spacing and file attributes) and writing.

Datasets: ``kspace`` ``[slices, coils, H, W]`` (multi-coil) or ``[slices, H, W]`` (single-coil),
optional ``mask`` and ``coil_maps`` (or ``sens_maps``), optional ``ismrmrd_header`` XML. Raw
ISMRMRD acquisition streams (``/dataset/data``) are refused.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from recon.errors import InputError
from recon.io.arrays import first_line
from recon.io.atomic import atomic_path
from recon.io.kspace_arrays import complex_finite, to_4d


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


def read_kspace_h5(path: Path) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None, dict[str, Any], list[float] | None]:
    """Read a fastMRI-style HDF5 file.

    Returns:
        ``(kspace, mask, coil_maps, attrs, pixel_spacing_mm)``: complex64 k-space
        ``[slices, coils, H, W]``, the raw ``mask`` and coil-map arrays as stored (or None), the
        file attributes as plain Python values, and ``(row, col)`` spacing in mm from the
        ``ismrmrd_header`` (or None).
    """
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
            raise InputError(path, f"cannot read HDF5 dataset ({type(e).__name__}: {first_line(e)})") from None
    k = to_4d(path, complex_finite(path, k_raw, "k-space"), "k-space")
    return k, mask_raw, maps_raw, attrs, spacing


def write_kspace_h5(
    path: Path, k: np.ndarray, mask: np.ndarray | None, coil_maps: np.ndarray | None, meta: Mapping[str, Any] | None
) -> None:
    """Write complex64 ``k`` ``[n, C, H, W]``, a uint8 ``mask`` ``[n, H, W]`` and ``coil_maps`` ``[n, C, H, W]`` atomically.

    Single-coil k-space is stored ``[n, H, W]`` as fastMRI does; numeric ``acceleration`` and
    ``center_fraction`` of ``meta`` become file attributes.
    """
    import h5py

    with atomic_path(path) as tmp:
        with h5py.File(tmp, "w") as f:
            # fastMRI layout: [slices, coils, H, W] multi-coil, [slices, H, W] single-coil.
            f.create_dataset("kspace", data=k[:, 0] if k.shape[1] == 1 else k)
            if mask is not None:
                f.create_dataset("mask", data=mask)
            if coil_maps is not None:
                f.create_dataset("coil_maps", data=coil_maps)
            for key in ("acceleration", "center_fraction"):
                if meta and isinstance(meta.get(key), (int, float)):
                    f.attrs[key] = meta[key]
