"""Projection angles given by file or in degrees: the ``angles`` and ``angle_unit`` sidecar fields.

``angles`` may name a file relative to the sinogram directory: a text file (``.txt``/``.csv``/``.dat``,
one number per line or separated by commas/whitespace) or a ``.npy`` array ``[n]``; or
``{"file": NAME, "skip": k, "count": n}`` to take ``n`` values after the first ``k`` (scanners often
log the angles of dark and flat frames in the same file). ``angle_unit`` is ``"radian"`` (default)
or ``"degree"``.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from recon.errors import InputError
from recon.io.arrays import first_line, load_array

ANGLE_UNITS = {"radian": "radian", "radians": "radian", "rad": "radian",
               "degree": "degree", "degrees": "degree", "deg": "degree"}
TEXT_SUFFIXES = (".txt", ".csv", ".dat")


def angle_unit(value: Any, gpath: Path | None) -> str:
    """``"radian"`` or ``"degree"`` from the ``angle_unit`` field (None: radian)."""
    if value is None:
        return "radian"
    unit = ANGLE_UNITS.get(value.lower()) if isinstance(value, str) else None
    if unit is None:
        raise InputError(gpath, f"field 'angle_unit' is {value!r}, expected 'degree' or 'radian'")
    return unit


def read_angle_file(spec: str | Mapping[str, Any], root: Path, gpath: Path) -> list[float]:
    """The angles listed in a file (in the file's unit; the caller converts), ``[n]`` floats.

    Raises:
        InputError: naming the file (missing, unreadable, not 1-D, non-finite, fewer values than
            ``skip + count``) or the sidecar (a malformed ``skip``/``count``).
    """
    if isinstance(spec, Mapping):
        name, skip, count = spec.get("file"), spec.get("skip", 0), spec.get("count")
        for key, v in (("skip", skip), ("count", count)):
            if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 0):
                raise InputError(gpath, f"field 'angles': {key} is {v!r}, expected an integer >= 0")
    else:
        name, skip, count = spec, 0, None
    if not isinstance(name, str):
        raise InputError(gpath, "field 'angles': file must be a file name")
    path = root / name
    if not path.is_file():
        raise InputError(path, "angle file named in geometry.json is missing")
    if path.suffix.lower() in TEXT_SUFFIXES:
        try:
            text = path.read_text().replace(",", " ").split()
            values = np.array([float(t) for t in text], dtype=np.float64)
        except (OSError, UnicodeDecodeError, ValueError) as e:
            raise InputError(path, f"cannot read angles ({first_line(e)})") from None
    else:
        values = np.asarray(load_array(path), dtype=np.float64)
    if values.ndim != 1 or values.size == 0 or not np.isfinite(values).all():
        raise InputError(path, f"expected a non-empty list of finite angles, got shape {values.shape}")
    stop = values.size if count is None else skip + count
    if stop > values.size:
        raise InputError(path, f"holds {values.size} angles, fewer than skip {skip} + count {count}")
    return [float(v) for v in values[skip:stop]]
