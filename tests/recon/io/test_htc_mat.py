"""HTC 2022 ``.mat`` files: the struct layout read into a fan-beam sinogram study, and every bad input refused."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import scipy.io
import torch

from operators.geometry import FanGeometry
from operators.radon import radon_from_geometry
from recon.errors import InputError
from recon.io import read_htc_mat, read_sinogram_dir, write_htc_sinogram_dir
from recon.io.sinogram_read import measurement_file

SO, SD, CELL, N_DET = 410.66, 553.74, 0.2, 48
MU = 0.03  # 1/mm, roughly the challenge's plastic at 45 kV


def _parameters(angles_deg: np.ndarray) -> dict:
    return {
        "projectName": "htc2022_test", "scanner": "synthetic", "geometryType": "Cone",
        "distanceSourceOrigin": SO, "distanceSourceDetector": SD, "distanceUnit": "mm",
        "geometricMagnification": SD / SO, "numberImages": np.uint8(angles_deg.size),
        "angles": angles_deg[None, :], "numDetectorsPost": np.uint16(N_DET), "pixelSizePost": CELL,
        "effectivePixelSizePost": CELL * SO / SD, "voltage": "45", "voltageUnit": "kV",
    }


def _disc_sinogram(angles_deg: np.ndarray) -> np.ndarray:
    """Line integrals [A, N_DET] of a centred disc of MU/mm filling 60% of the grid."""
    geo = FanGeometry((N_DET, N_DET), np.deg2rad(angles_deg), SO, SD - SO, pixel_size_mm=CELL * SO / SD,
                      n_detectors=N_DET, detector_spacing_mm=CELL)
    yy, xx = np.mgrid[:N_DET, :N_DET] - (N_DET - 1) / 2
    disc = (np.hypot(yy, xx) < 0.3 * N_DET).astype(np.float32) * MU
    with torch.no_grad():
        return radon_from_geometry(geo)(torch.from_numpy(disc)[None, None])[0, 0].double().numpy()


def write_mat(path: Path, angles_deg: np.ndarray | None = None, *, drop: str | None = None,
              sinogram: np.ndarray | None = None, struct: str = "CtDataLimited", **changes) -> Path:
    """A .mat in the challenge's layout (``scipy.io.savemat`` of nested dicts = MATLAB structs)."""
    angles_deg = np.arange(0.0, 60.5, 2.0) if angles_deg is None else angles_deg
    params = {**_parameters(angles_deg), **changes}
    if drop:
        params.pop(drop)
    sino = _disc_sinogram(angles_deg) if sinogram is None else sinogram
    scipy.io.savemat(path, {struct: {"type": "sinogram", "sinogram": sino, "parameters": params}})
    return path


def test_the_struct_becomes_a_fan_geometry_in_mm_without_hu(tmp_path: Path):
    mat = write_mat(tmp_path / "scan.mat")
    study = read_htc_mat(mat)
    g = study.geometry
    assert g["type"] == "fan" and g["n_detectors"] == N_DET and g["image_size"] == [N_DET, N_DET]
    assert g["source_origin_mm"] == pytest.approx(SO) and g["origin_detector_mm"] == pytest.approx(SD - SO)
    assert g["detector_spacing_mm"] == pytest.approx(CELL) and g["pixel_size_mm"] == pytest.approx(CELL * SO / SD)
    assert np.allclose(study.angles, np.deg2rad(np.arange(0.0, 60.5, 2.0)))
    assert study.data.shape == (1, 1, 31, N_DET) and study.data.dtype == np.float32
    assert study.units == "per_mm" and not study.hu_calibrated
    assert study.slice_names == ["scan"] and study.acquisition["source"]["struct"] == "CtDataLimited"
    assert study.acquisition["source"]["voltage"] == "45"


def test_the_sinogram_reader_recognises_the_file_and_a_directory_holding_it(tmp_path: Path):
    mat = write_mat(tmp_path / "scan.mat")
    assert measurement_file(mat) == mat and measurement_file(tmp_path) == mat
    for given in (mat, tmp_path):
        study = read_sinogram_dir(given)
        assert study.geometry == read_htc_mat(mat).geometry and not study.hu_calibrated
    (tmp_path / "geometry.json").write_text("{}")
    assert measurement_file(tmp_path) is None  # a sinogram directory is read as one


def test_other_length_units_are_converted(tmp_path: Path):
    mat = write_mat(tmp_path / "cm.mat", distanceSourceOrigin=SO / 10, distanceSourceDetector=SD / 10,
                    pixelSizePost=CELL / 10, effectivePixelSizePost=CELL * SO / SD / 10, distanceUnit="cm")
    g = read_htc_mat(mat).geometry
    assert g["source_origin_mm"] == pytest.approx(SO) and g["detector_spacing_mm"] == pytest.approx(CELL)


def test_conversion_to_a_sinogram_directory_reads_back_the_same(tmp_path: Path):
    mat = write_mat(tmp_path / "scan.mat")
    out = write_htc_sinogram_dir(mat, tmp_path / "study")
    a, b = read_htc_mat(mat), read_sinogram_dir(out)
    assert b.geometry == a.geometry and np.array_equal(a.data, b.data)
    assert not b.hu_calibrated and b.units == "per_mm" and b.sidecar["source"]["format"] == "htc2022_mat"
    with pytest.raises(InputError, match="--overwrite"):
        write_htc_sinogram_dir(mat, tmp_path / "study")


def test_reconstructions_are_attenuation_in_per_mm(tmp_path: Path):
    from recon.api import reconstruct

    full = np.arange(0.0, 360.0, 4.0)
    study = read_htc_mat(write_mat(tmp_path / "full.mat", full))
    op = radon_from_geometry(study.geometry_object())
    result = reconstruct(torch.from_numpy(study.data), op, method="fbp", hu=False, device="cpu")
    centre = result.mean[0, 0, N_DET // 2 - 4:N_DET // 2 + 4, N_DET // 2 - 4:N_DET // 2 + 4]
    assert result.unit == "1/mm" and float(centre.mean()) == pytest.approx(MU, rel=0.05)


def test_a_limited_arc_fbp_weights_every_view(tmp_path: Path):
    """60 degrees is far below a short scan (pi + fan angle): no ray is measured twice, Parker's
    weights are all 1, and the first view counts like any other."""
    from operators.radon.fbp import parker_weights

    study = read_htc_mat(write_mat(tmp_path / "scan.mat"))
    geo = study.geometry_object()
    gamma = np.arctan((np.arange(N_DET) - (N_DET - 1) / 2) * CELL / SD)
    assert np.array_equal(parker_weights(study.angles - study.angles[0], gamma, math.radians(60)),
                          np.ones((study.angles.size, N_DET)))
    short = parker_weights(np.linspace(0, math.pi + 2 * geo.fan_half_angle, 50), gamma, math.pi + 2 * geo.fan_half_angle)
    assert short[0].max() < 1e-6  # a short scan still feathers its ends
    op = radon_from_geometry(geo)
    y = torch.from_numpy(study.data)
    y_first = torch.zeros_like(y)
    y_first[..., 0, :] = y[..., 0, :]
    assert float(op.pinv(y_first).abs().max()) > 0.01 * float(op.pinv(y).abs().max())


@pytest.mark.parametrize(("change", "problem"), [
    ({"drop": "distanceSourceOrigin"}, "parameters lack field 'distanceSourceOrigin'"),
    ({"drop": "angles"}, "parameters lack field 'angles'"),
    ({"drop": "pixelSizePost"}, "parameters lack field 'pixelSizePost'"),
    ({"angles_deg": np.arange(0.0, 60.5, 2.0), "numberImages": 30}, "numberImages is 30"),
    ({"sinogram": np.ones((30, N_DET))}, "31 angles but CtDataLimited.sinogram has 30 rows"),
    ({"sinogram": np.ones((31, N_DET - 2))}, "numDetectorsPost is 48 but CtDataLimited.sinogram has 46 columns"),
    ({"distanceUnit": "inch"}, "distanceUnit is 'inch', expected 'mm', 'cm' or 'm'"),
    ({"geometryType": "Parallel"}, "geometryType is 'Parallel'"),
    ({"distanceSourceDetector": 300.0}, "not beyond distanceSourceOrigin"),
    ({"distanceSourceOrigin": -1.0}, "distanceSourceOrigin is -1.0, expected one number > 0"),
    ({"sinogram": np.full((31, N_DET), np.nan)}, "NaN/inf"),
])
def test_bad_files_are_one_line_naming_the_file(tmp_path: Path, change: dict, problem: str):
    mat = write_mat(tmp_path / "bad.mat", **change)
    with pytest.raises(InputError) as err:
        read_sinogram_dir(mat)
    msg = str(err.value)
    assert str(mat) in msg and problem in msg and "\n" not in msg


def test_files_without_the_layout_are_refused(tmp_path: Path):
    other = tmp_path / "other.mat"
    scipy.io.savemat(other, {"x": np.ones(3)})
    with pytest.raises(InputError, match="no struct with fields 'sinogram' and 'parameters'.*variables: x"):
        read_htc_mat(other)
    text = tmp_path / "text.mat"
    text.write_text("not a mat file")
    with pytest.raises(InputError, match="not a readable MATLAB .mat file"):
        read_htc_mat(text)
    with pytest.raises(InputError, match="no such file"):
        read_htc_mat(tmp_path / "missing.mat")


@pytest.mark.shared_data
def test_the_challenge_file(shared_data):
    mat = shared_data("ct_raw_htc2022_limited_angle", "htc2022_ta_sparse_example.mat")
    study = read_sinogram_dir(mat.parent)
    g = study.geometry
    assert study.data.shape == (1, 1, 121, 560) and np.isfinite(study.data).all()
    assert np.allclose(np.rad2deg(study.angles), np.arange(0.0, 60.25, 0.5))
    assert g["source_origin_mm"] == pytest.approx(410.66) and g["origin_detector_mm"] == pytest.approx(143.08)
    assert g["detector_spacing_mm"] == pytest.approx(0.2) and g["pixel_size_mm"] == pytest.approx(0.148322, rel=1e-5)
    assert not study.hu_calibrated and study.acquisition["source"]["struct"] == "CtDataLimited"
    op = radon_from_geometry(study.geometry_object())
    op.check_range(torch.from_numpy(study.data))  # the operator takes the data as they are


# The challenge's segmentation of sample ta (htc2022_ta_full_recon_fbp_seg.png, 512 x 512 on the
# grid of effective pixels, HTC 2022, CC BY 4.0) as ellipses in coordinates of that grid scaled to
# [-1, 1], rows down: the acrylic disc (centre row, centre column, radius) and its eight holes
# (centre row, centre column, semi-axes, major axis in degrees from the column axis towards rows).
# Rasterised at 512 it correlates 0.99 with the segmentation.
_TA_DISC = (0.026, -0.017, 0.921)
_TA_HOLES = ((-0.507, -0.266, 0.175, 0.105, -18), (-0.308, 0.268, 0.178, 0.112, -19),
             (-0.209, -0.587, 0.143, 0.103, -31), (-0.159, -0.216, 0.165, 0.108, -23),
             (0.073, 0.389, 0.180, 0.111, -19), (0.128, -0.619, 0.144, 0.107, -17),
             (0.337, -0.214, 0.179, 0.112, -20), (0.523, 0.216, 0.178, 0.112, -20))


def _ta_segmentation(n: int) -> np.ndarray:
    """The ground-truth material mask of sample ta on an ``n x n`` grid (1 = acrylic)."""
    c = np.linspace(-1.0, 1.0, n)
    y, x = np.meshgrid(c, c, indexing="ij")
    mask = np.hypot(y - _TA_DISC[0], x - _TA_DISC[1]) < _TA_DISC[2]
    for cy, cx, a, b, deg in _TA_HOLES:
        t = math.radians(deg)
        u = (x - cx) * math.cos(t) + (y - cy) * math.sin(t)
        w = -(x - cx) * math.sin(t) + (y - cy) * math.cos(t)
        mask &= (u / a) ** 2 + (w / b) ** 2 >= 1
    return mask.astype(np.float64)


def _correlation(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a - a.mean(), b - b.mean()
    return float((a * b).sum() / math.sqrt((a * a).sum() * (b * b).sum()))


@pytest.mark.shared_data
def test_the_challenge_file_reconstructs_in_the_ground_truths_orientation(shared_data):
    """FBP of the 0-60 degree arc, on a 128 x 128 grid spanning the segmentation's 512 effective
    pixels and a detector binned by 4, correlates with the challenge's segmentation as it is (no flip
    or rotation); the detector read the other way round comes out rotated by 180 degrees."""
    study = read_htc_mat(shared_data("ct_raw_htc2022_limited_angle", "htc2022_ta_sparse_example.mat"))
    g, n, binning = study.geometry, 128, 4
    geo = FanGeometry((n, n), study.angles, g["source_origin_mm"], g["origin_detector_mm"],
                      pixel_size_mm=g["pixel_size_mm"] * 512 / n, n_detectors=g["n_detectors"] // binning,
                      detector_spacing_mm=g["detector_spacing_mm"] * binning)
    op = radon_from_geometry(geo)
    y = torch.from_numpy(study.data.reshape(*study.data.shape[:-1], -1, binning).mean(-1))
    truth = _ta_segmentation(n)
    with torch.no_grad():
        as_read = op.pinv(y)[0, 0].double().numpy()
        flipped = op.pinv(torch.flip(y, dims=[-1]))[0, 0].double().numpy()
    assert _correlation(as_read, truth) > 0.5
    assert _correlation(as_read, truth) > _correlation(flipped, truth) + 0.1
    assert _correlation(flipped, truth[::-1, ::-1]) > _correlation(flipped, truth)
