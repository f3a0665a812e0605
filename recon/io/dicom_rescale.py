"""Float images stored as 16-bit DICOM integers: Rescale Slope/Intercept, quantisation, display window.

CT in HU is stored with slope 1 (error at most 0.5 HU) whenever it fits in int16; anything else
gets the finest slope that spans its range (error at most slope / 2). Slope and intercept are
rounded to what a DICOM DS string holds, so the file decodes to the values the writer intended.
"""

from __future__ import annotations

import numpy as np
from pydicom.valuerep import format_number_as_ds


def ds_string(x: float) -> str:
    """``x`` as a DICOM DS (decimal string, at most 16 characters)."""
    return format_number_as_ds(float(x))


def _ds_exact(x: float) -> float:
    """``x`` rounded to what a 16-character DS string holds, so file and memory agree."""
    return float(ds_string(x))


def choose_rescale(values: np.ndarray, *, unit_slope: bool) -> tuple[np.dtype, float, float]:
    """Pick a 16-bit storage type and Rescale Slope/Intercept that hold ``values`` unclipped.

    Args:
        values: finite float array in output units.
        unit_slope: try slope 1, intercept 0 in int16 first (integers such as HU).

    Returns:
        ``(dtype, slope, intercept)``; slope and intercept are exactly representable as DICOM DS
        strings, so the stored integers decode to the values the writer intended.
    """
    vmin, vmax = float(np.min(values)), float(np.max(values))
    if unit_slope and -32768.0 <= np.floor(vmin) and np.ceil(vmax) <= 32767.0:
        return np.dtype(np.int16), 1.0, 0.0
    if vmin >= 0.0:
        # Non-negative data (magnitudes, std maps): uint16 from 0 keeps zero exact.
        slope = vmax / 65000.0 if vmax > 0 else 1.0
        return np.dtype(np.uint16), _ds_exact(slope), 0.0
    # 65000 rather than 65535 levels: margin so DS rounding of slope/intercept can never overflow.
    span = vmax - vmin
    slope = span / 65000.0 if span > 0 else 1.0
    intercept = _ds_exact((vmax + vmin) / 2.0)
    return np.dtype(np.int16), _ds_exact(slope), intercept


def quantise(values: np.ndarray, dtype: np.dtype, slope: float, intercept: float) -> np.ndarray:
    """Stored integers for ``values``: ``round((values - intercept) / slope)`` in ``dtype``."""
    info = np.iinfo(dtype)
    stored = np.rint((np.asarray(values, dtype=np.float64) - intercept) / slope)
    return np.clip(stored, info.min, info.max).astype(dtype)


def percentile_window(vol: np.ndarray) -> tuple[float, float]:
    """Display (center, width) spanning the 1st-99th percentile of ``vol`` ``[n, H, W]`` (its min-max if flat)."""
    # A strided subsample estimates the percentiles well at a fraction of the cost.
    stride = max(1, int(np.sqrt(vol.size / 1e6)))
    lo, hi = (float(v) for v in np.percentile(vol[:, ::stride, ::stride], [1.0, 99.0]))
    if hi <= lo:
        lo, hi = float(vol.min()), float(vol.max()) + 1.0
    return ((lo + hi) / 2.0, hi - lo)
