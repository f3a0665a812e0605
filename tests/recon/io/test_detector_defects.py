"""Detector defects of projection images: dead/hot pixels interpolated, stripes removed (Vo et al. 2018)."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile

from recon.errors import InputError
from recon.io.detector_defects import defect_mask, interpolate_defects
from recon.io.sinogram_read import read_sinogram_dir
from recon.io.stripe_removal import remove_stripes_sorting
from tests.recon.io._projection_helpers import N_DET, counts, fbp, fields, line_integrals, phantom, write_sidecar

DEAD = (1, 30)  # (row, detector column)
# detector columns whose gain differs from the flat field, inside the object's shadow at every angle
STRIPES = {24: 1.04, 40: 0.97}


@pytest.fixture(scope="module")
def truth() -> np.ndarray:
    return line_integrals(phantom())


def _scan(root, truth, dtype=np.uint16):
    flat, dark = fields()
    c = counts(truth, flat, dark)
    for col, gain in STRIPES.items():
        c[:, :, col] = (c[:, :, col] - dark[:, col]) * gain + dark[:, col]
    r, col = DEAD
    c[:, r, col], flat[r, col], dark[r, col] = 0.0, 0.0, 0.0
    dark[2, 10] = np.iinfo(np.uint16).max  # a hot pixel, saturated in the dark frame
    tifffile.imwrite(root / "proj.tif", np.round(c).astype(dtype))
    tifffile.imwrite(root / "dark.tif", np.round(dark).astype(dtype))
    tifffile.imwrite(root / "flat.tif", np.round(flat).astype(dtype))


# Stripe removal works on the scale of real detectors (the median must not meet object features
# steeper than the stripe across its window), so its tests use a finer scan than the others.
FINE_SIZE, FINE_DET, FINE_ANGLES = 192, 256, 120
FINE_STRIPES = {96: 1.04, 150: 0.97}


@pytest.fixture(scope="module")
def fine_truth() -> np.ndarray:
    return line_integrals(phantom(1, FINE_SIZE), FINE_ANGLES, FINE_DET)


def _ring_energy(sino, truth):
    """Ring artefact energy: the FBP's departure from the clean FBP, averaged around the rotation axis.

    Rings are centred on the axis, so the azimuthal mean of the difference image keeps them and
    averages everything else away; summed over the radii of the stripes (+-1 px) and all slices.
    """
    diff = fbp(sino, FINE_SIZE) - fbp(truth, FINE_SIZE)
    y, x = np.mgrid[:FINE_SIZE, :FINE_SIZE] - (FINE_SIZE - 1) / 2
    radius = np.round(np.hypot(x, y)).astype(int).ravel()
    count = np.maximum(np.bincount(radius), 1)
    rings = [int(round(abs(c - (FINE_DET - 1) / 2))) for c in FINE_STRIPES]
    total = 0.0
    for d in diff:
        profile = np.bincount(radius, d.ravel()) / count
        total += sum(float((profile[r - 1:r + 2] ** 2).sum()) for r in rings)
    return total


def test_dead_and_hot_pixels_interpolated(tmp_path, truth):
    _scan(tmp_path, truth)
    write_sidecar(tmp_path, projections="proj.tif", dark="dark.tif", flat="flat.tif")
    s = read_sinogram_dir(tmp_path)
    assert np.isfinite(s.data).all()
    rec = s.acquisition["defects_interpolated"]
    assert rec["pixels"] == 2 and rec["first"] == [[1, 30], [2, 10]]
    r, col = DEAD
    expected = 0.5 * (truth[r, :, col - 1] + truth[r, :, col + 1])
    np.testing.assert_allclose(s.data[r, 0, :, col], expected, atol=5e-3)


def test_ring_removal_lowers_ring_energy(tmp_path, fine_truth):
    rng = np.random.default_rng(2)
    flat = 20000.0 + 2000.0 * rng.random((1, FINE_DET))
    c = counts(fine_truth, flat, 100.0)
    for col, gain in FINE_STRIPES.items():
        c[:, :, col] = (c[:, :, col] - 100.0) * gain + 100.0
    tifffile.imwrite(tmp_path / "proj.tif", c.astype(np.float32))
    tifffile.imwrite(tmp_path / "flat.tif", flat.astype(np.float32))
    fine = {"image_size": [FINE_SIZE, FINE_SIZE], "n_detectors": FINE_DET,
            "angles": {"start": 0.0, "stop": np.pi, "count": FINE_ANGLES}}
    write_sidecar(tmp_path, projections="proj.tif", dark=100.0, flat="flat.tif", **fine)
    plain = read_sinogram_dir(tmp_path).data[:, 0]
    write_sidecar(tmp_path, projections="proj.tif", dark=100.0, flat="flat.tif", **fine,
                  ring_removal={"method": "sorting", "size": 11})
    s = read_sinogram_dir(tmp_path)
    assert s.acquisition["ring_removal"] == {"method": "sorting", "size": 11}
    before, after = _ring_energy(plain, fine_truth), _ring_energy(s.data[:, 0], fine_truth)
    assert after < 0.3 * before
    assert np.abs(s.data[:, 0] - fine_truth).mean() < 0.01 * fine_truth.mean()


def test_sorting_removes_an_offset_stripe(fine_truth):
    out = remove_stripes_sorting(fine_truth.astype(np.float32), 11)
    assert out.dtype == np.float32 and out.shape == fine_truth.shape
    striped = fine_truth.copy()
    striped[:, :, 110] += 0.05
    fixed = remove_stripes_sorting(striped, 11)
    assert np.abs(fixed[:, :, 110] - fine_truth[:, :, 110]).mean() < 0.2 * 0.05


def test_defect_helpers():
    flat = np.full((1, 2, 5), 100.0)
    dark = np.full((1, 2, 5), 5.0)
    flat[0, 0, 2] = 4.0
    flat[0, 1, 4] = 255.0
    assert defect_mask(dark, flat, 255.0).tolist() == [[False, False, True, False, False], [False] * 4 + [True]]
    sino = np.arange(10.0).reshape(1, 2, 5)
    m = np.array([[False, True, False, False, True]])
    np.testing.assert_allclose(interpolate_defects(sino, m)[0], [[0, 1, 2, 3, 3], [5, 6, 7, 8, 8]])


@pytest.mark.parametrize("value,problem", [("wavelets", "ring_removal"), ({"size": 1}, "size")])
def test_bad_ring_removal_setting(tmp_path, truth, value, problem):
    np.save(tmp_path / "sinogram.npy", truth.astype(np.float32))
    write_sidecar(tmp_path, values="line_integrals", ring_removal=value)
    with pytest.raises(InputError, match=problem) as e:
        read_sinogram_dir(tmp_path)
    assert "geometry.json" in str(e.value)


def test_mostly_dead_flat_refused(tmp_path, truth):
    _scan(tmp_path, truth)
    flat, dark = fields()
    tifffile.imwrite(tmp_path / "flat.tif", np.zeros_like(flat, dtype=np.uint16))
    write_sidecar(tmp_path, projections="proj.tif", dark="dark.tif", flat="flat.tif")
    with pytest.raises(InputError, match=f"flat field not above the dark field at {N_DET * 3} readings") as e:
        read_sinogram_dir(tmp_path)
    assert "flat.tif" in str(e.value) and "\n" not in str(e.value)
