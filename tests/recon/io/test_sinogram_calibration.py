"""``units`` and ``hu_calibrated`` in ``geometry.json``: which sinogram directories reconstruct to HU."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from recon.errors import InputError
from recon.io import read_sinogram_dir, write_sinogram_dir

GEOMETRY = {"type": "parallel", "image_size": [16, 16], "pixel_size_mm": 1.0,
            "angles": {"start": 0.0, "stop": 3.141592653589793, "count": 8}, "n_detectors": 23,
            "detector_spacing_mm": 1.0}


def _dir(root: Path, **extra) -> Path:
    return write_sinogram_dir(root, np.zeros((1, 8, 23), np.float32), GEOMETRY, extra=extra or None)


@pytest.mark.parametrize(("extra", "units", "hu"), [
    ({}, "per_mm", True),
    ({"units": "per_mm", "hu_calibrated": True}, "per_mm", True),
    ({"units": "per_mm", "hu_calibrated": False}, "per_mm", False),
    ({"hu_calibrated": False}, "per_mm", False),
    ({"units": "per_pixel"}, "per_pixel", False),
    ({"units": "per_pixel", "hu_calibrated": False}, "per_pixel", False),
])
def test_which_data_have_hu(tmp_path: Path, extra: dict, units: str, hu: bool):
    study = read_sinogram_dir(_dir(tmp_path, **extra))
    assert study.units == units and study.hu_calibrated is hu


@pytest.mark.parametrize(("extra", "problem"), [
    ({"units": "per_cm"}, "field 'units' is 'per_cm', expected 'per_mm' or 'per_pixel'"),
    ({"hu_calibrated": "yes"}, "field 'hu_calibrated' is 'yes', expected true or false"),
    ({"units": "per_pixel", "hu_calibrated": True}, "per-pixel attenuation has no HU"),
])
def test_contradictions_and_unknown_units_are_one_line(tmp_path: Path, extra: dict, problem: str):
    root = _dir(tmp_path)
    sidecar = json.loads((root / "geometry.json").read_text())
    (root / "geometry.json").write_text(json.dumps({**sidecar, **extra}))
    with pytest.raises(InputError) as err:
        read_sinogram_dir(root)
    assert str(root / "geometry.json") in str(err.value) and problem in str(err.value)
