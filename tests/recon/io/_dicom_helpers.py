"""Small synthetic DICOM series for reader/writer tests that need no shared data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom

from recon.io.dicom_write import write_series


def make_ct_series(out: Path, n: int = 4, h: int = 16, w: int = 12, seed: int = 0) -> tuple[np.ndarray, list[Path]]:
    """Write an n-slice CT series in HU with a known pattern; returns (values, files)."""
    rng = np.random.default_rng(seed)
    values = rng.integers(-1000, 1500, size=(n, h, w)).astype(np.float32)
    files = write_series(values, out, modality="CT", pixel_spacing_mm=(0.7, 0.8), slice_thickness_mm=2.0,
                         description="synthetic")
    return values, files


def edit(path: Path, **changes) -> None:
    """Rewrite one file with header attributes changed."""
    ds = pydicom.dcmread(path)
    for k, v in changes.items():
        setattr(ds, k, v)
    ds.save_as(path)
