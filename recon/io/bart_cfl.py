"""BART ``.cfl``/``.hdr`` files: reading, writing, and BART's dimension order <-> ``[slices, coils, H, W]``.

A BART array is a text header (``# Dimensions`` then up to 16 sizes) next to the raw data:
complex64 little-endian, column-major. Dimensions: 0 READ x, 1 PHS1 y, 2 PHS2 z, 3 COIL,
4 MAPS, ..., 13 SLICE. A 2-D slice occupies two of the three spatial dimensions.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from recon.errors import InputError
from recon.io.atomic import atomic_write_bytes

_BART_SLICE_DIM = 13
_BART_COIL_DIM = 3


def cfl_paths(path: str | Path) -> tuple[Path, Path]:
    """``(name.hdr, name.cfl)`` for ``name``, ``name.cfl`` or ``name.hdr``."""
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
    hdr, cfl = cfl_paths(path)
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
    hdr, cfl = cfl_paths(path)
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


def read_cfl_stack(path: Path, what: str) -> np.ndarray:
    """A BART file pair read as ``[slices, coils, H, W]`` (:func:`read_cfl`, then :func:`_bart_to_stack`)."""
    return _bart_to_stack(path, read_cfl(path), what)


def stack_to_bart(arr: np.ndarray) -> np.ndarray:
    """``[slices, coils, H, W]`` -> BART dims ``(1, H, W, coils, 1 x 9, slices)``."""
    n, c, h, w = arr.shape
    return np.transpose(arr, (2, 3, 1, 0)).reshape((1, h, w, c) + (1,) * 9 + (n,)).astype(np.complex64)
