"""Minimal BART ``.cfl/.hdr`` reader for tests.

``name.hdr`` is text: a ``# Dimensions`` line followed by the sizes (16 for BART); ``name.cfl`` is
raw complex64 data in column-major (Fortran) order of those dimensions.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


def read_cfl(stem: str | Path) -> np.ndarray:
    """Read ``stem.hdr`` / ``stem.cfl`` into a complex64 array of the header's dimensions.

    Trailing singleton dimensions are dropped; leading ones (BART's dimension 0, readout) are kept.
    """
    stem = Path(stem)
    lines = stem.with_suffix(".hdr").read_text().splitlines()
    try:
        dims_line = lines[lines.index("# Dimensions") + 1]
    except (ValueError, IndexError) as exc:
        raise ValueError(f"{stem}.hdr: no '# Dimensions' line") from exc
    dims = [int(d) for d in dims_line.split()]
    while len(dims) > 1 and dims[-1] == 1:
        dims.pop()
    data = np.fromfile(stem.with_suffix(".cfl"), dtype=np.complex64)
    if data.size != int(np.prod(dims)):
        raise ValueError(f"{stem}.cfl holds {data.size} values, header says {dims}")
    return data.reshape(dims, order="F")
