"""Arrays going into and out of files: torch to numpy, loading ``.npy``/``.npz``/``.tif``, NaN/inf checks.

Shared by the sinogram and k-space directories and the DICOM writer. Every loader and check
raises :class:`InputError` naming the file, with a one-line reason.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from recon.errors import InputError


def to_numpy(a: Any) -> np.ndarray:
    """``a`` as a numpy array; a torch tensor is detached and copied to the CPU first (same shape and dtype)."""
    return a.detach().cpu().numpy() if hasattr(a, "detach") else np.asarray(a)


def as_slice_stack(arr: np.ndarray, what: str, axes: str) -> np.ndarray:
    """``[n, X, Y]`` from ``[X, Y]``, ``[n, X, Y]`` or ``[n, 1, X, Y]`` (a view, no copy).

    Raises:
        ValueError: any other shape, naming ``what`` and the expected ``axes`` (e.g. ``"H, W"``).
    """
    if arr.ndim == 4 and arr.shape[1] == 1:
        arr = arr[:, 0]
    elif arr.ndim == 2:
        arr = arr[None]
    if arr.ndim != 3:
        raise ValueError(f"{what} must be [n, {axes}] or [n, 1, {axes}], got shape {arr.shape}")
    return arr


def first_line(e: BaseException) -> str:
    """The first line of an exception's message, ``""`` when it has none (for one-line errors)."""
    return str(e).splitlines()[0] if str(e) else ""


def refuse_nonfinite(path: Path | None, arr: np.ndarray, what: str) -> None:
    """:class:`InputError` naming ``path`` when ``arr`` holds NaN or inf: how many, and the index of the first."""
    bad = ~np.isfinite(arr)
    if bad.any():
        first = tuple(int(i) for i in np.argwhere(bad)[0])
        raise InputError(path, f"{what} contains {int(bad.sum())} NaN/inf value(s) (first at index {first})")


def load_array(path: Path, key: str | None = None) -> np.ndarray:
    """Load one array from .npy, .npz (the only array, or the one named ``key``) or .tif/.tiff.

    Raises:
        InputError: naming the file: missing, unreadable or corrupt, several arrays in an npz
            and none named ``key``, or an unsupported suffix.
    """
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
        raise InputError(path, f"cannot read array ({type(e).__name__}: {first_line(e)})") from None
    raise InputError(path, f"unsupported data file type '{suffix}' (expected .npy, .npz, .tif)")


def real_float32(path: Path, arr: np.ndarray) -> np.ndarray:
    """``arr`` as float32 (same shape); :class:`InputError` naming ``path`` if it is complex, non-numeric or not finite."""
    if np.iscomplexobj(arr) or not np.issubdtype(arr.dtype, np.number):
        raise InputError(path, f"data type {arr.dtype} is not real numeric")
    arr = arr.astype(np.float32, copy=False)
    refuse_nonfinite(path, arr, "data")
    return arr
