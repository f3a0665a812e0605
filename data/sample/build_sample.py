"""Build the sample CT study shipped in ``data/sample/ct`` from TCGA-LUAD slices (CC BY 3.0).

Four axial chest slices of four different patients, all from the validation split of the bundled CT
prior (``split_by_patient(..., val_fraction=0.2, seed=0)`` over the TCGA-LUAD PatientIDs, so the
prior never saw them), resampled to a common 512 x 512 grid of 0.75 mm pixels (centred, padded with
air) and written as one derived, anonymised CT series, 5 mm apart. The slices are not anatomically
contiguous: the series is a compact test study, not a volume.

Usage: ``python data/sample/build_sample.py ../shared/data/ct_tcga_luad/dicom data/sample/ct``
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from skimage.transform import rescale

from recon.io.dicom_read import read_series
from recon.io.dicom_write import write_series

FILES = (
    "ID_0007_AGE_0061_CONTRAST_1_CT.dcm",
    "ID_0015_AGE_0061_CONTRAST_1_CT.dcm",
    "ID_0040_AGE_0069_CONTRAST_1_CT.dcm",
    "ID_0056_AGE_0083_CONTRAST_0_CT.dcm",
)
SIZE = 512
PIXEL_MM = 0.75
AIR_HU = -1024.0


def _regrid(hu: np.ndarray, spacing_mm: float) -> np.ndarray:
    """Resample to ``PIXEL_MM`` pixels and centre-crop / pad to ``SIZE`` x ``SIZE`` with air."""
    img = rescale(hu, spacing_mm / PIXEL_MM, order=1, anti_aliasing=True, preserve_range=True)
    out = np.full((SIZE, SIZE), AIR_HU, dtype=np.float32)
    h, w = img.shape
    sy, sx = max(0, (h - SIZE) // 2), max(0, (w - SIZE) // 2)
    crop = img[sy : sy + SIZE, sx : sx + SIZE]
    oy, ox = (SIZE - crop.shape[0]) // 2, (SIZE - crop.shape[1]) // 2
    out[oy : oy + crop.shape[0], ox : ox + crop.shape[1]] = crop
    return out


def main(src: Path, dst: Path) -> None:
    slices = []
    for name in FILES:
        s = read_series(src / name)
        # outside the scanned field of view scanners store -3024 HU or similar: that is air
        slices.append(_regrid(np.maximum(s.pixels[0], AIR_HU), s.pixel_spacing_mm[1]))
    write_series(
        np.stack(slices), dst, modality="CT", description="Sample chest CT (TCGA-LUAD, CC BY 3.0)",
        identity={"PatientName": "Sample^CT", "PatientID": "SAMPLE-CT-001"},
        pixel_spacing_mm=(PIXEL_MM, PIXEL_MM), slice_thickness_mm=5.0, slice_spacing_mm=5.0,
        window=(-600.0, 1500.0), extra={"method": "resampled", "source": "TCGA-LUAD (CC BY 3.0)"},
        overwrite=True,
    )


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
