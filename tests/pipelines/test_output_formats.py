"""``recon reconstruct --format dicom|tiff|nifti`` (CT and MR) and the path for data without HU calibration."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import tifffile
import torch

from operators import CartesianFourier, ParallelBeam, hu_to_mu, uniform_angles
from pipelines.cli import main
from pipelines.reconstruct_dir import reconstruct_directory
from recon.io import write_sinogram_dir

SIZE, VIEWS, PX, MU = 32, 24, 1.5, 0.02


def _study(root: Path, **extra) -> Path:
    """Two slices of a disc of MU/mm (parallel beam, noise-free line integrals)."""
    op = ParallelBeam(SIZE, uniform_angles(VIEWS), pixel_size_mm=PX)
    yy, xx = np.mgrid[:SIZE, :SIZE] - (SIZE - 1) / 2
    disc = torch.from_numpy((np.hypot(yy, xx) < 0.35 * SIZE).astype(np.float32) * MU)
    with torch.no_grad():
        y = op(torch.stack([disc, 0.5 * disc])[:, None])
    geometry = {"type": "parallel", "image_size": [SIZE, SIZE], "pixel_size_mm": PX,
                "angles": uniform_angles(VIEWS).tolist(), "n_detectors": op.geometry.n_detectors,
                "detector_spacing_mm": PX}
    return write_sinogram_dir(root, y, geometry, extra=extra or None)


def _slices(out: Path) -> np.ndarray:
    return np.stack([np.load(p)["mean"] for p in sorted((out / ".slices").glob("slice_*.npz"))])


def _run(study: Path, out: Path, **kw) -> dict:
    return reconstruct_directory(study, out, device="cpu", progress=False, **kw)


def test_tiff_holds_the_slices_as_float32_with_the_pixel_size(tmp_path: Path):
    out = tmp_path / "out"
    report = _run(_study(tmp_path / "study"), out, method="fbp", output_format="tiff")
    assert report["outputs"]["tiff"] == "recon.tif" and report["outputs"]["tiff_std"] is None
    assert not (out / "dicom").exists() and report["unit"] == "HU"
    with tifffile.TiffFile(out / "recon.tif") as tif:
        images = tif.asarray()
        page = tif.pages[0]
        num, den = page.tags["XResolution"].value
        assert page.tags["ResolutionUnit"].value == 3  # centimetre
        meta = json.loads(page.description)
    assert images.dtype == np.float32 and images.shape == (2, SIZE, SIZE)
    assert np.array_equal(images, _slices(out))
    assert num / den == pytest.approx(10.0 / PX, rel=1e-6)
    assert meta["unit"] == "HU" and meta["pixel_size_mm"] == PX and meta["method"] == "fbp"


def test_nifti_affine_from_pixel_size_and_slice_spacing(tmp_path: Path):
    out = tmp_path / "out"
    report = _run(_study(tmp_path / "study", slice_spacing_mm=2.5), out, method="tv", output_format="nifti",
                  options={"n_iter": 20})
    assert report["outputs"]["nifti"] == "recon.nii.gz"
    img = nib.load(out / "recon.nii.gz")
    assert img.get_data_dtype() == np.float32 and img.shape == (SIZE, SIZE, 2)
    assert np.allclose(np.diag(img.affine), [PX, PX, 2.5, 1.0])
    assert np.allclose(img.affine[:3, 3], [-(SIZE - 1) / 2 * PX, -(SIZE - 1) / 2 * PX, 0.0])
    assert img.header.get_xyzt_units()[0] == "mm" and b"unit=HU" in bytes(img.header["descrip"])
    data = np.asarray(img.dataobj)
    # voxel (i, j, k) = column i, row H-1-j, slice k
    assert np.array_equal(data.transpose(2, 1, 0)[:, ::-1, :], _slices(out))


def test_auto_writes_dicom_with_hu_and_tiff_in_attenuation_without(tmp_path: Path):
    calibrated = _run(_study(tmp_path / "hu"), tmp_path / "hu_out", method="fbp")
    assert calibrated["outputs"]["format"] == "dicom" and (tmp_path / "hu_out" / "dicom" / "IM0001.dcm").is_file()
    study = _study(tmp_path / "px", units="per_pixel")
    report = _run(study, tmp_path / "px_out", method="fbp")
    assert report["outputs"]["format"] == "tiff" and report["unit"] == "1/pixel"
    assert report["calibration"] == {"hu_calibrated": False, "units": "per_pixel", "output_unit": "1/pixel"}
    with tifffile.TiffFile(tmp_path / "px_out" / "recon.tif") as tif:
        images = tif.asarray()
        assert tif.pages[0].tags["ResolutionUnit"].value == 1  # no unit: the pixel size is unknown
    # attenuation per pixel, not HU: the disc's centre is MU/mm times the pixel size
    centre = images[0, SIZE // 2 - 3:SIZE // 2 + 3, SIZE // 2 - 3:SIZE // 2 + 3].mean()
    assert centre == pytest.approx(MU * PX, rel=0.05)
    assert not (tmp_path / "hu_out" / "recon.tif").exists()


def test_dicom_is_refused_for_data_without_hu(tmp_path: Path, capsys):
    study = _study(tmp_path / "px", units="per_pixel")
    out = tmp_path / "out"
    assert main(["reconstruct", str(study), "--out", str(out), "--method", "fbp", "--format", "dicom", "--no-progress"]) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(study) in err[0] and "not HU-calibrated" in err[0] and "--format tiff" in err[0]
    assert not out.exists()
    study_mm = _study(tmp_path / "mm", hu_calibrated=False)
    assert main(["reconstruct", str(study_mm), "--out", str(out), "--method", "fbp", "--format", "dicom", "--no-progress"]) != 0
    assert "hu_calibrated false" in capsys.readouterr().err and not out.exists()


def test_push_needs_dicom(tmp_path: Path, capsys):
    out = tmp_path / "out"
    rc = main(["reconstruct", str(_study(tmp_path / "s")), "--out", str(out), "--method", "fbp", "--format", "tiff",
               "--push", "--no-progress"])
    assert rc != 0 and "--push" in capsys.readouterr().err and not out.exists()


def test_the_warning_and_a_typicality_flag_reach_the_report(tmp_path: Path, capsys, monkeypatch, one_thread):
    """The plumbing, with the (slow) typicality scoring replaced by a report that flags slice 1."""
    import pipelines.reconstruct_dir as rd

    seen = {}

    def fake_report(prior, name, images, names, **kw):
        seen.update(images)
        return {"available": True, "method": "msma", "unit": "u", "level": 0.01,
                "flagged": {"result": [names[1]]},
                "slices": [{"slice": n, "result": {"score": 1.0, "p_value": 0.5 if i == 0 else 0.001, "flag": i == 1}}
                           for i, n in enumerate(names)]}

    monkeypatch.setattr(rd, "typicality_report", fake_report)
    out = tmp_path / "out"
    _run(_study(tmp_path / "mm", hu_calibrated=False), out, prior="ct", sampler="dds", nfe=2, samples=1,
         output_format="nifti", options={"init": "none"})
    err = capsys.readouterr().err
    assert "warning: the clinical CT prior 'ct'" in err and "OUT OF DISTRIBUTION" in err and "slice_0001" in err
    saved = json.loads((out / "report.json").read_text())
    assert saved["unit"] == "1/mm" and len(saved["warnings"]) == 2 and "slice_0001" in saved["warnings"][1]
    assert saved["typicality"]["flagged"]["result"] == ["slice_0001"]
    # scored in the prior's HU, converted from the attenuation the slices hold
    assert np.allclose(hu_to_mu(seen["result"]), _slices(out), atol=1e-6)


def test_no_typicality_skips_the_scores_and_says_so(tmp_path: Path, capsys, monkeypatch, one_thread):
    import pipelines.reconstruct_dir as rd

    def never(*a, **kw):
        raise AssertionError("scored although --no-typicality")

    monkeypatch.setattr(rd, "typicality_report", never)
    out = tmp_path / "out"
    rc = main(["reconstruct", str(_study(tmp_path / "s")), "--out", str(out), "--prior", "ct", "--nfe", "2",
               "--samples", "1", "--set", "init=none", "--format", "nifti", "--no-typicality", "--no-progress"])
    assert rc == 0
    assert "typicality check turned off (--no-typicality)" in capsys.readouterr().err
    saved = json.loads((out / "report.json").read_text())
    assert saved["typicality"] == {"available": False, "reason": "turned off (--no-typicality)"}
    assert any("--no-typicality" in w for w in saved["warnings"])


@pytest.mark.slow
def test_a_clinical_prior_on_data_without_hu_warns_and_the_report_keeps_it(tmp_path: Path, capsys, one_thread):
    out = tmp_path / "out"
    report = _run(_study(tmp_path / "px", units="per_pixel"), out, prior="ct", sampler="dds", nfe=2, samples=2,
                  output_format="tiff")
    err = capsys.readouterr().err
    assert "warning: the clinical CT prior 'ct'" in err and "not HU-calibrated (units per_pixel)" in err
    assert report["warnings"][0].startswith("the clinical CT prior 'ct'")
    saved = json.loads((out / "report.json").read_text())
    assert saved["warnings"] == report["warnings"] and saved["unit"] == "1/pixel"
    # the typicality check scored the slices (in the prior's HU) and its flags are in the report
    assert saved["typicality"]["available"] and len(saved["typicality"]["slices"]) == 2
    assert all(isinstance(row["result"]["flag"], bool) for row in saved["typicality"]["slices"])
    assert saved["typicality"]["result_image"].startswith("the first posterior sample")  # 2 samples
    flagged = saved["typicality"]["flagged"]["result"]
    assert all(any(name in w for w in saved["warnings"]) for name in flagged)
    std = tifffile.imread(out / "recon_std.tif")
    assert std.shape == (2, SIZE, SIZE) and std.dtype == np.float32 and (std >= 0).all()


def test_clinical_prior_warning_only_without_hu():
    from pipelines.typicality_check import clinical_prior_warning
    from priors import load_prior

    prior = load_prior("ct")
    assert clinical_prior_warning(prior, "ct", True, "per_mm") is None
    assert "units per_mm" in clinical_prior_warning(prior, "ct", False, "per_mm")


def test_the_api_keeps_attenuation_without_hu():
    from recon.api import reconstruct

    op = ParallelBeam(SIZE, uniform_angles(VIEWS), pixel_size_mm=PX)
    x = torch.full((1, 1, SIZE, SIZE), MU)
    with torch.no_grad():
        y = op(x)
    hu = reconstruct(y, op, method="fbp", device="cpu")
    mu = reconstruct(y, op, method="fbp", device="cpu", hu=False)
    assert hu.unit == "HU" and mu.unit == "1/mm" and mu.settings["hu"] is False
    assert torch.allclose(mu.mean, hu_to_mu(hu.mean), atol=1e-6)
    with pytest.raises(ValueError, match="CT operators only"):
        reconstruct(torch.zeros(1, 1, 8, 8, dtype=torch.complex64), CartesianFourier(torch.ones(8, 8, dtype=torch.bool)),
                    method="zero_filled", hu=False)


def test_an_htc_mat_file_reconstructs_directly(tmp_path: Path, capsys):
    from tests.recon.io.test_htc_mat import CELL, SD, SO, write_mat

    mat = write_mat(tmp_path / "scan.mat")
    out = tmp_path / "out"
    assert main(["reconstruct", str(mat), "--out", str(out), "--method", "fbp", "--format", "nifti", "--no-progress"]) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["unit"] == "1/mm" and report["acquisition"]["type"] == "fan" and report["outputs"]["format"] == "nifti"
    assert np.allclose(np.diag(nib.load(out / "recon.nii.gz").affine)[:2], CELL * SO / SD)
    bad = write_mat(tmp_path / "bad.mat", drop="distanceSourceDetector")
    capsys.readouterr()
    assert main(["reconstruct", str(bad), "--out", str(tmp_path / "bad_out"), "--method", "fbp", "--no-progress"]) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(bad) in err[0] and "distanceSourceDetector" in err[0]
    assert not (tmp_path / "bad_out").exists()


def _mr_study(root: Path) -> tuple[Path, torch.Tensor, CartesianFourier]:
    """Two single-coil slices of a complex disc (phase ramp), every other k-space column kept
    plus the centre; returns the directory, the k-space and the operator."""
    from recon.io import write_kspace_dir

    yy, xx = np.mgrid[:SIZE, :SIZE] - (SIZE - 1) / 2
    disc = (np.hypot(yy, xx) < 0.35 * SIZE) * np.exp(0.05j * xx)
    x = torch.from_numpy(np.stack([disc, 0.5 * disc])[:, None].astype(np.complex64))
    mask = torch.zeros(SIZE, dtype=torch.bool)
    mask[::2] = True
    mask[SIZE // 2 - 3:SIZE // 2 + 3] = True
    op = CartesianFourier(mask, image_shape=(SIZE, SIZE))
    with torch.no_grad():
        k = op(x)
    return write_kspace_dir(root, k, mask=mask.numpy(), meta={"pixel_spacing_mm": [PX, PX]}), k, op


@pytest.mark.parametrize("fmt", ["tiff", "nifti"])
def test_mr_stacks_hold_the_magnitude_of_the_reconstruction(tmp_path: Path, fmt: str):
    from recon.api import reconstruct
    from recon.io.dicom_read import read_series

    study, k, op = _mr_study(tmp_path / "mr")
    report = _run(study, tmp_path / fmt, method="zero_filled", output_format=fmt)
    assert report["modality"] == "mr" and report["unit"] == "magnitude"
    assert report["outputs"]["format"] == fmt and not (tmp_path / fmt / "dicom").exists()
    if fmt == "tiff":
        with tifffile.TiffFile(tmp_path / fmt / "recon.tif") as tif:
            images = tif.asarray()
            num, den = tif.pages[0].tags["XResolution"].value
            meta = json.loads(tif.pages[0].description)
        assert num / den == pytest.approx(10.0 / PX, rel=1e-6) and meta["unit"] == "magnitude"
    else:
        img = nib.load(tmp_path / fmt / "recon.nii.gz")
        assert img.shape == (SIZE, SIZE, 2) and img.get_data_dtype() == np.float32
        assert np.allclose(np.diag(img.affine)[:2], PX) and b"unit=magnitude" in bytes(img.header["descrip"])
        images = np.asarray(img.dataobj).transpose(2, 1, 0)[:, ::-1, :]
    assert images.dtype == np.float32 and images.shape == (2, SIZE, SIZE) and (images >= 0).all()
    # the magnitude of the API's complex result, and the DICOM series' values to its quantisation
    expected = reconstruct(k, op, method="zero_filled", device="cpu").mean[:, 0].abs().numpy()
    assert np.allclose(images, expected, atol=1e-5)
    _run(study, tmp_path / "dicom", method="zero_filled", output_format="dicom")
    series = read_series(tmp_path / "dicom" / "dicom")
    assert np.allclose(images, series.pixels, atol=1e-3 * float(expected.max()))
