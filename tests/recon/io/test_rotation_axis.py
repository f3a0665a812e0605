"""Rotation-axis offset: Vo et al. (2014) estimate on synthetic and real projections, recentring, checks."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import tifffile

from recon.errors import InputError
from recon.io.axis_correction import negativity
from recon.io.rotation_axis import estimate_axis_offset, recentre
from recon.io.sinogram_read import read_sinogram_dir
from tests.recon.io._projection_helpers import (
    N_ANGLES,
    counts,
    fbp,
    fields,
    line_integrals,
    phantom,
    shift_detector,
    write_sidecar,
)

ANGLES = np.arange(N_ANGLES) * math.pi / N_ANGLES


@pytest.fixture(scope="module")
def truth() -> np.ndarray:
    return line_integrals(phantom())


@pytest.mark.parametrize("offset", [-6.6, 0.0, 4.3])
def test_estimate_within_half_a_pixel(truth, offset):
    est = estimate_axis_offset(shift_detector(truth, offset), ANGLES)
    assert abs(est.offset - offset) < 0.5
    assert est.metric <= est.metric_at_zero


def test_estimate_uses_the_first_half_turn_of_a_full_turn(truth):
    s = shift_detector(truth, 3.0)
    full = np.concatenate([s, s[:, :, ::-1]], axis=1)  # 180-360 degrees: the mirrored projections
    est = estimate_axis_offset(full, np.arange(2 * N_ANGLES) * math.pi / N_ANGLES)
    assert abs(est.offset - 3.0) < 0.5


def test_auto_centre_from_tiff_projections_sharpens_fbp(tmp_path, truth):
    offset = 5.4
    flat, dark = fields()
    c = counts(shift_detector(truth, offset), flat, dark)
    tifffile.imwrite(tmp_path / "proj.tif", c.astype(np.float32))
    tifffile.imwrite(tmp_path / "dark.tif", dark.astype(np.float32))
    tifffile.imwrite(tmp_path / "flat.tif", flat.astype(np.float32))
    write_sidecar(tmp_path, projections="proj.tif", dark="dark.tif", flat="flat.tif", center_of_rotation="auto")
    s = read_sinogram_dir(tmp_path)
    rec = s.acquisition["center_of_rotation"]
    assert rec["method"] == "vo2014" and abs(rec["offset_px"] - offset) < 0.5
    assert rec["sharper"] and rec["fbp_negativity"]["corrected"] < rec["fbp_negativity"]["uncorrected"]
    ref = fbp(truth)
    err_after = np.abs(fbp(s.data[:, 0]) - ref).mean()
    err_before = np.abs(fbp(shift_detector(truth, offset)) - ref).mean()
    assert err_after < 0.2 * err_before
    assert negativity(fbp(s.data[:, 0])[1]) < negativity(fbp(shift_detector(truth, offset))[1])


def test_given_centre_is_applied(tmp_path, truth):
    np.save(tmp_path / "sinogram.npy", shift_detector(truth, -3.25).astype(np.float32))
    write_sidecar(tmp_path, values="line_integrals", center_of_rotation=-3.25)
    s = read_sinogram_dir(tmp_path)
    assert s.acquisition["center_of_rotation"]["method"] == "given"
    # spline and Fourier shifts differ only near the phantom's sharp edges
    assert np.abs(s.data[:, 0, :, 8:-8] - truth[:, :, 8:-8]).mean() < 0.01 * truth.mean()
    assert np.abs(recentre(shift_detector(truth, 2.0), 2.0)[..., 8:-8] - truth[..., 8:-8]).mean() < 0.01 * truth.mean()


@pytest.mark.parametrize("change,problem", [
    ({"center_of_rotation": "middle"}, "expected detector pixels or 'auto'"),
    ({"center_of_rotation": "auto", "angles": {"start": 0.0, "stop": 1.5, "count": N_ANGLES}}, "180-degree"),
    ({"center_of_rotation": 2.0, "type": "fan", "source_origin_mm": 200.0, "origin_detector_mm": 100.0}, "parallel"),
])
def test_bad_centre_settings(tmp_path, truth, change, problem):
    np.save(tmp_path / "sinogram.npy", truth.astype(np.float32))
    write_sidecar(tmp_path, values="line_integrals", **change)
    with pytest.raises(InputError, match=problem) as e:
        read_sinogram_dir(tmp_path)
    assert "geometry.json" in str(e.value) and "\n" not in str(e.value)


def i13_sidecar(**extra: object) -> dict:
    """geometry.json for the Diamond I13-2 scan (SOURCE.txt): 91 TIFFs, angles 10..100 of angles.txt, degrees."""
    return {"type": "parallel", "image_size": [160, 160], "pixel_size_mm": 1.0, "n_detectors": 160,
            "detector_spacing_mm": 1.0, "angles": {"file": "angles.txt", "skip": 10, "count": 91},
            "angle_unit": "degree", "values": "counts", "projections": "tiffs", "dark": "dark_00001.tiff",
            "flat": "flat_00001.tiff", **extra}


def link_i13(i13: Path, tmp_path: Path, **extra: object) -> Path:
    """A sinogram directory in ``tmp_path`` whose data are links to the shared I13 files."""
    for name in ("tiffs", "angles.txt", "dark_00001.tiff", "flat_00001.tiff"):
        (tmp_path / name).symlink_to(i13 / name)
    (tmp_path / "geometry.json").write_text(json.dumps(i13_sidecar(**extra)))
    return tmp_path


@pytest.mark.shared_data
@pytest.mark.slow
def test_i13_axis_estimate(tmp_path, shared_data):
    i13 = shared_data("ct_raw_synchrotron_i13")
    s = read_sinogram_dir(link_i13(i13, tmp_path, center_of_rotation="auto"))
    assert s.data.shape == (135, 1, 91, 160) and np.isfinite(s.data).all()
    assert [0, 0] in s.acquisition["defects_interpolated"]["first"]  # 0 in every frame, flat and dark too
    rec = s.acquisition["center_of_rotation"]
    # SOURCE.txt: the axis sits near column 85.8 of 160, i.e. ~6.3 px right of the centre 79.5;
    # the FBP's negative share is smallest at 6.5 (scanned in 0.25 px steps)
    assert abs(rec["offset_px"] - (85.8 - 79.5)) < 0.5
    assert abs(rec["offset_px"] - 6.5) < 1.0
    assert rec["sharper"]
