"""The `recon simulate` -> `recon reconstruct` round trip as a user runs it, on the bundled sample."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pydicom
import pytest

from pipelines.cli import main
from recon.metrics import ct_metrics

SAMPLE = Path(__file__).resolve().parents[2] / "data" / "sample" / "ct"


@pytest.fixture(scope="module")
def ct_study(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("sim") / "study"
    rc = main(["simulate", str(SAMPLE), "--modality", "ct", "--views", "24", "--dose", "0.5", "--size", "64", "--out", str(out)])
    assert rc == 0
    return out


def test_simulate_writes_a_complete_study(ct_study: Path):
    sidecar = json.loads((ct_study / "geometry.json").read_text())
    assert sidecar["type"] == "parallel"
    assert sidecar["image_size"] == [64, 64]
    assert sidecar["simulation"]["views"] == 24
    assert sidecar["noise"]["i0"] == pytest.approx(0.5e5)
    sino = np.load(ct_study / "sinogram.npy")
    assert sino.shape[:2] == (4, 24) and np.isfinite(sino).all()
    truth = np.load(ct_study / "ground_truth.npy")
    assert truth.shape == (4, 64, 64)
    assert not (ct_study.parent / "study.partial").exists()


def test_simulate_refuses_to_overwrite(ct_study: Path, capsys):
    rc = main(["simulate", str(SAMPLE), "--modality", "ct", "--out", str(ct_study)])
    assert rc != 0
    err = capsys.readouterr().err
    assert str(ct_study) in err and "--overwrite" in err and len(err.strip().splitlines()) == 1


def test_simulate_wrong_modality_is_one_line(tmp_path: Path, capsys):
    rc = main(["simulate", str(SAMPLE), "--modality", "mr", "--out", str(tmp_path / "x")])
    assert rc != 0
    err = capsys.readouterr().err.strip()
    assert "modality" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "x").exists()


def test_reconstruct_fbp_and_tv_write_dicom_report_and_metrics(ct_study: Path, tmp_path: Path):
    fbp, tv = tmp_path / "fbp", tmp_path / "tv"
    assert main(["reconstruct", str(ct_study), "--out", str(fbp), "--method", "fbp", "--no-progress"]) == 0
    assert main(["reconstruct", str(ct_study), "--out", str(tv), "--method", "tv", "--no-progress"]) == 0
    for out in (fbp, tv):
        report = json.loads((out / "report.json").read_text())
        assert report["n_slices"] == 4 and len(report["slices"]) == 4
        # simulated Poisson counts carry their noise level: the misfit in noise units is finite
        assert all(0.0 < row["noise_residual"] < 50.0 for row in report["slices"])
        assert (out / "preview.png").stat().st_size > 0
        files = sorted((out / "dicom").glob("*.dcm"))
        assert len(files) == 4
        ds = pydicom.dcmread(files[0])
        assert list(ds.ImageType)[:2] == ["DERIVED", "SECONDARY"]
        assert ds.Rows == 64 and ds.Modality == "CT"
    # the report's metrics are recon.metrics on the saved images
    truth = np.load(ct_study / "ground_truth.npy")
    img = np.load(fbp / ".slices" / "slice_0002.npz")["mean"]
    report = json.loads((fbp / "report.json").read_text())
    assert report["slices"][2]["psnr"] == pytest.approx(float(ct_metrics(img, truth[2])["psnr"]), abs=1e-6)
    # TV beats FBP on sparse, noisy data
    assert json.loads((tv / "report.json").read_text())["mean_psnr"] > report["mean_psnr"]


def test_reconstruct_resumes_and_never_overwrites(ct_study: Path, tmp_path: Path, capsys):
    out = tmp_path / "fbp"
    assert main(["reconstruct", str(ct_study), "--out", str(out), "--method", "fbp", "--no-progress"]) == 0
    # simulate an interruption: two slices and the outputs gone
    (out / "report.json").unlink()
    for i in (1, 3):
        (out / ".slices" / f"slice_{i:04d}.npz").unlink()
    kept = (out / ".slices" / "slice_0000.npz").stat().st_mtime_ns
    assert main(["reconstruct", str(ct_study), "--out", str(out), "--method", "fbp", "--no-progress"]) == 0
    assert (out / ".slices" / "slice_0000.npz").stat().st_mtime_ns == kept  # not redone
    assert len(list((out / ".slices").glob("*.npz"))) == 4
    capsys.readouterr()
    # finished: a rerun, or other settings, need --overwrite
    assert main(["reconstruct", str(ct_study), "--out", str(out), "--method", "fbp", "--no-progress"]) != 0
    assert "--overwrite" in capsys.readouterr().err
    assert main(["reconstruct", str(ct_study), "--out", str(out), "--method", "sirt", "--no-progress"]) != 0
    assert main(["reconstruct", str(ct_study), "--out", str(out), "--method", "sirt", "--no-progress", "--overwrite"]) == 0
    assert json.loads((out / "report.json").read_text())["settings"]["method"] == "sirt"


@pytest.mark.parametrize(
    "breakage, expected",
    [
        (lambda d: (d / "geometry.json").write_text("{not json"), "geometry.json"),
        (lambda d: (d / "geometry.json").unlink(), "geometry.json"),
        (lambda d: np.save(d / "sinogram.npy", np.full((4, 24, 7), np.nan, np.float32)), "sinogram.npy"),
    ],
)
def test_bad_measurement_directory_is_one_line(ct_study: Path, tmp_path: Path, capsys, breakage, expected):
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(ct_study, broken)
    breakage(broken)
    out = tmp_path / "out"
    rc = main(["reconstruct", str(broken), "--out", str(out), "--method", "fbp", "--no-progress"])
    assert rc != 0
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and expected in err and "Traceback" not in err
    assert not (out / "report.json").exists()


def test_unwritable_output_is_refused(ct_study: Path, tmp_path: Path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    rc = main(["reconstruct", str(ct_study), "--out", str(blocker / "out"), "--method", "fbp", "--no-progress"])
    assert rc != 0
    assert str(blocker) in capsys.readouterr().err


def test_prior_of_the_wrong_modality_is_refused(ct_study: Path, tmp_path: Path, capsys):
    from priors import MR_PERCENTILE, EDMPrior, preset, save_checkpoint

    mr_prior = tmp_path / "mr_prior"
    save_checkpoint(EDMPrior(net_config=preset("tiny"), modality="mr", normalization=MR_PERCENTILE), mr_prior)
    rc = main(["reconstruct", str(ct_study), "--out", str(tmp_path / "o"), "--prior", str(mr_prior), "--no-progress"])
    assert rc != 0
    err = capsys.readouterr().err
    assert "MR" in err and "CT" in err


def test_method_options_from_the_command_line(ct_study: Path, tmp_path: Path, capsys):
    out = tmp_path / "sirt"
    assert main(["reconstruct", str(ct_study), "--out", str(out), "--method", "sirt", "--set", "n_iter=3",
                 "--no-progress"]) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["settings"]["options"] == {"n_iter": 3}
    # an option the method does not take: one line listing the valid ones, nothing written
    bad = tmp_path / "bad"
    rc = main(["reconstruct", str(ct_study), "--out", str(bad), "--method", "fbp", "--set", "zeta=10", "--no-progress"])
    assert rc != 0 and not bad.exists()
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "zeta" in err[0] and "filter" in err[0]


def test_uncalibrated_data_are_reported_and_windowed_from_the_data(ct_study: Path, tmp_path: Path):
    import shutil

    from pipelines.plots import display_range

    study = tmp_path / "per_pixel"
    shutil.copytree(ct_study, study)
    sidecar = json.loads((study / "geometry.json").read_text())
    sidecar["units"] = "per_pixel"
    (study / "geometry.json").write_text(json.dumps(sidecar))
    out = tmp_path / "fbp"
    assert main(["reconstruct", str(study), "--out", str(out), "--method", "fbp", "--no-progress"]) == 0
    acquisition = json.loads((out / "report.json").read_text())["acquisition"]
    assert acquisition["hu_calibrated"] is False and acquisition["units"] == "per_pixel"
    img = np.load(out / ".slices" / "slice_0000.npz")["mean"]
    lo, hi = display_range(img, "attenuation")
    assert lo == pytest.approx(np.percentile(img, 0.5)) and hi == pytest.approx(np.percentile(img, 99.5))
