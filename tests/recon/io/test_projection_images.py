"""Sinogram directories of projection images: TIFF stacks, data-exchange HDF5, dark/flat frames, angle units and files."""

from __future__ import annotations

import json
import math

import h5py
import numpy as np
import pytest
import tifffile

from recon.errors import InputError
from recon.io.sinogram_read import read_sinogram_dir
from tests.recon.io._projection_helpers import (
    N_ANGLES,
    N_DET,
    ROWS,
    counts,
    fields,
    line_integrals,
    phantom,
    write_sidecar,
)


@pytest.fixture(scope="module")
def truth() -> np.ndarray:
    return line_integrals(phantom())


def _tiff_dir(root, p, dtype=np.float32):
    flat, dark = fields()
    c = counts(p, flat, dark)
    (root / "proj").mkdir(parents=True)
    for k, img in enumerate(c):
        tifffile.imwrite(root / "proj" / f"p_{k}.tif", img.astype(dtype))  # natural order: p_2 before p_10
    tifffile.imwrite(root / "dark.tif", dark.astype(dtype))
    # two flat frames whose mean is the flat field
    tifffile.imwrite(root / "flat.tif", np.stack([flat * 0.9, flat * 1.1]).astype(dtype))
    return flat, dark


def test_tiff_stack_gives_line_integrals(tmp_path, truth):
    _tiff_dir(tmp_path, truth)
    write_sidecar(tmp_path, projections="proj", dark="dark.tif", flat="flat.tif")
    s = read_sinogram_dir(tmp_path)
    assert s.data.shape == (ROWS, 1, N_ANGLES, N_DET)
    np.testing.assert_allclose(s.data[:, 0], truth, atol=1e-4)
    assert s.slice_names == ["row_0000", "row_0001", "row_0002"]
    assert s.acquisition["projections"]["source"] == "proj"


def test_uint16_tiffs_and_row_crop(tmp_path, truth):
    _tiff_dir(tmp_path, truth, dtype=np.uint16)
    write_sidecar(tmp_path, projections="proj", dark="dark.tif", flat="flat.tif", rows=[1, 3])
    s = read_sinogram_dir(tmp_path)
    assert s.slice_names == ["row_0001", "row_0002"]
    np.testing.assert_allclose(s.data[:, 0], truth[1:], atol=2e-3)  # integer rounding of the counts


def test_hdf5_data_exchange_with_interpolated_flats(tmp_path, truth):
    flat, dark = fields()
    drift = np.linspace(1.0, 1.2, N_ANGLES)[:, None, None]  # the beam brightens during the scan
    c = counts(truth, flat[None] * drift, dark[None])
    theta = np.arange(N_ANGLES) * 180.0 / N_ANGLES
    with h5py.File(tmp_path / "scan.h5", "w") as f:
        f["/exchange/data"] = c.astype(np.float32)
        f["/exchange/data_dark"] = np.stack([dark, dark])
        f["/exchange/data_white"] = np.stack([flat, flat, 1.2 * flat])
        f["/exchange/theta"] = theta  # degrees, as dxchange writes
    g = {"type": "parallel", "image_size": [48, 48], "pixel_size_mm": 1.0, "n_detectors": N_DET,
         "detector_spacing_mm": 1.0, "values": "counts", "projections": "scan.h5", "flat_at": [0, 0, N_ANGLES - 1]}
    (tmp_path / "geometry.json").write_text(json.dumps(g))
    s = read_sinogram_dir(tmp_path)
    np.testing.assert_allclose(s.angles, np.arange(N_ANGLES) * math.pi / N_ANGLES, atol=1e-12)
    np.testing.assert_allclose(s.data[:, 0], truth, atol=1e-4)
    assert s.acquisition["projections"]["flat_frames"] == "per projection"
    # averaging the flats instead leaves the drift in the data
    del g["flat_at"]
    (tmp_path / "geometry.json").write_text(json.dumps(g))
    assert np.abs(read_sinogram_dir(tmp_path).data[:, 0] - truth).max() > 0.05


def test_degrees_equal_radians_and_angle_files(tmp_path, truth):
    _tiff_dir(tmp_path, truth)
    deg = [180.0 * k / N_ANGLES for k in range(N_ANGLES)]
    write_sidecar(tmp_path, projections="proj", dark="dark.tif", flat="flat.tif", angles=deg, angle_unit="degree")
    a_deg = read_sinogram_dir(tmp_path).angles
    write_sidecar(tmp_path, projections="proj", dark="dark.tif", flat="flat.tif",
                  angles=[math.radians(x) for x in deg], angle_unit="radian")
    a_rad = read_sinogram_dir(tmp_path).angles
    np.testing.assert_allclose(a_deg, a_rad, atol=1e-12)
    # a text file that also logs the dark/flat angles: skip them
    (tmp_path / "angles.txt").write_text("\n".join(str(x) for x in [0.0, 0.0] + deg + [0.0]))
    write_sidecar(tmp_path, projections="proj", dark="dark.tif", flat="flat.tif",
                  angles={"file": "angles.txt", "skip": 2, "count": N_ANGLES}, angle_unit="degrees")
    np.testing.assert_allclose(read_sinogram_dir(tmp_path).angles, a_rad, atol=1e-12)
    np.save(tmp_path / "angles.npy", np.asarray(a_rad))
    write_sidecar(tmp_path, projections="proj", dark="dark.tif", flat="flat.tif", angles="angles.npy")
    np.testing.assert_allclose(read_sinogram_dir(tmp_path).angles, a_rad, atol=1e-12)


@pytest.mark.parametrize("change,named", [
    ({"dark": "missing_dark.tif"}, "missing_dark.tif"),
    ({"angle_unit": "gradian"}, "geometry.json"),
    ({"angles": {"start": 0.0, "stop": 3.14, "count": N_ANGLES + 1}}, "proj"),
    ({"flat": "low_flat.tif"}, "low_flat.tif"),
    ({"angles": "nope.txt"}, "nope.txt"),
    ({"projections": "absent"}, "absent"),
])
def test_bad_inputs_one_line_naming_the_file(tmp_path, truth, change, named):
    flat, dark = _tiff_dir(tmp_path, truth)
    tifffile.imwrite(tmp_path / "low_flat.tif", (dark - 1.0).astype(np.float32))  # flat below dark
    write_sidecar(tmp_path, **{"projections": "proj", "dark": "dark.tif", "flat": "flat.tif", **change})
    with pytest.raises(InputError) as e:
        read_sinogram_dir(tmp_path)
    msg = str(e.value)
    assert named in msg and "\n" not in msg


def test_units(tmp_path, truth):
    np.save(tmp_path / "sinogram.npy", truth.astype(np.float32))
    write_sidecar(tmp_path, values="line_integrals")
    s = read_sinogram_dir(tmp_path)
    assert s.units == "per_mm" and s.hu_calibrated
    write_sidecar(tmp_path, values="line_integrals", units="per_pixel")
    s = read_sinogram_dir(tmp_path)
    assert s.units == "per_pixel" and not s.hu_calibrated
    write_sidecar(tmp_path, values="line_integrals", units="HU")
    with pytest.raises(InputError, match="field 'units'") as e:
        read_sinogram_dir(tmp_path)
    assert "geometry.json" in str(e.value)


def test_frame_files_need_projections(tmp_path, truth):
    np.save(tmp_path / "sinogram.npy", np.exp(-truth).astype(np.float32))
    write_sidecar(tmp_path, dark="dark.tif", i0=1.0)
    with pytest.raises(InputError, match="need 'projections'") as e:
        read_sinogram_dir(tmp_path)
    assert "geometry.json" in str(e.value)
