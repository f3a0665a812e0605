"""HDF5 projections in the tomography data-exchange layout (De Carlo et al., J. Synchrotron Rad. 21 (2014)).

As written by dxchange and read by tomopy: ``/exchange/data`` ``[n_angles, rows, n_detectors]``
raw counts, ``/exchange/data_dark`` and ``/exchange/data_white`` ``[frames, rows, n_detectors]``,
``/exchange/theta`` ``[n_angles]`` (degrees unless its ``units`` attribute says radians).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from recon.errors import InputError
from recon.io.arrays import first_line

HDF5_SUFFIXES = (".h5", ".hdf5", ".hdf", ".nxs")
DATA, DARK, WHITE, THETA = "/exchange/data", "/exchange/data_dark", "/exchange/data_white", "/exchange/theta"


def read_dataset(path: Path, name: str, required: bool = True) -> np.ndarray | None:
    """Dataset ``name`` of the HDF5 file ``path`` as a numpy array (None when absent and not required).

    Raises:
        InputError: naming the file: missing, not HDF5, or lacking a required dataset.
    """
    import h5py

    if not path.is_file():
        raise InputError(path, "projection file named in geometry.json is missing")
    try:
        with h5py.File(path, "r") as f:
            if name not in f:
                if required:
                    raise InputError(path, f"no dataset {name} (expected the data-exchange layout /exchange/...)")
                return None
            return np.asarray(f[name][()])
    except InputError:
        raise
    except Exception as e:  # h5py raises OSError/KeyError/... on damaged files
        raise InputError(path, f"cannot read HDF5 ({type(e).__name__}: {first_line(e)})") from None


def read_hdf5_theta(path: Path) -> tuple[list[float] | None, str]:
    """``(angles, unit)`` from ``/exchange/theta`` (``(None, "radian")`` when absent)."""
    import h5py

    theta = read_dataset(path, THETA, required=False)
    if theta is None:
        return None, "radian"
    with h5py.File(path, "r") as f:
        units = f[THETA].attrs.get("units", b"degrees")
    units = units.decode() if isinstance(units, bytes) else str(units)
    unit = "radian" if units.lower().startswith("rad") else "degree"
    return [float(v) for v in np.ravel(theta)], unit
