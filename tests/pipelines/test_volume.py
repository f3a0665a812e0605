"""Volume mode of `recon reconstruct`: when it is on, how the stack is chunked, what is written."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipelines.cli import main
from pipelines.volume_plan import volume_chunks

SAMPLE = Path(__file__).resolve().parents[2] / "data" / "sample" / "ct"


@pytest.mark.parametrize("n,chunk,overlap", [(1, 4, 1), (7, 4, 1), (16, 16, 2), (48, 16, 2), (5, 3, 0)])
def test_chunks_keep_every_slice_once_with_neighbours(n, chunk, overlap):
    chunks = volume_chunks(n, chunk, overlap)
    kept = [i for _, keep in chunks for i in keep]
    assert kept == list(range(n))
    for run, keep in chunks:
        assert len(run) <= chunk and set(keep) <= set(run) and run == list(range(run[0], run[-1] + 1))
        # every kept slice has `overlap` neighbours on both sides inside its chunk, unless at an end
        assert run[0] == max(0, keep[0] - overlap) and run[-1] == min(n - 1, keep[-1] + overlap)


@pytest.fixture(scope="module")
def study(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("vol") / "study"
    assert main(["simulate", str(SAMPLE), "--modality", "ct", "--views", "16", "--size", "64", "--out", str(out)]) == 0
    return out


def _report(out: Path) -> dict:
    return json.loads((out / "report.json").read_text())


def test_contiguous_study_is_a_volume_by_default_and_resumes_per_chunk(study: Path, tmp_path: Path):
    out = tmp_path / "dds"
    args = ["reconstruct", str(study), "--out", str(out), "--nfe", "3", "--chunk", "3", "--no-progress"]
    assert main(args) == 0
    plan = _report(out)["settings"]["volume"]
    assert plan["on"] and plan["slice_spacing_mm"] == pytest.approx(5.0) and "contiguous" in plan["reason"]
    assert (out / "preview.png").stat().st_size > 0 and len(list((out / "dicom").glob("*.dcm"))) == 4
    report = _report(out)
    assert report["settings"]["samples"] > 1 and "calibrated" in report["std_calibration"]
    assert report["typicality"] is not None
    z = report["z_variation"]  # the simulated study carries its reference: z-consistency is measured
    assert z["unit"] == "HU" and z["reference"] > 0 and z["result"] > 0 and "start" in z
    # chunks of 3 with overlap 1 keep slices [0], [1], [2], [3]: lose slice 2 and rerun
    (out / "report.json").unlink()
    (out / ".slices" / "slice_0002.npz").unlink()
    kept = {i: (out / ".slices" / f"slice_{i:04d}.npz").stat().st_mtime_ns for i in (0, 1, 3)}
    assert main(args) == 0
    assert {i: (out / ".slices" / f"slice_{i:04d}.npz").stat().st_mtime_ns for i in (0, 1, 3)} == kept


def test_no_volume_and_impossible_volume(study: Path, tmp_path: Path, capsys):
    out = tmp_path / "apart"
    assert main(["reconstruct", str(study), "--out", str(out), "--nfe", "2", "--no-volume", "--no-progress"]) == 0
    assert _report(out)["settings"]["volume"]["on"] is False
    assert _report(out)["z_variation"]["result"] > 0  # a regular stack, even when reconstructed slice-wise
    capsys.readouterr()
    rc = main(["reconstruct", str(study), "--out", str(tmp_path / "x"), "--sampler", "dps", "--volume", "--no-progress"])
    err = capsys.readouterr().err.strip()
    assert rc != 0 and "--volume" in err and "dps" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "x").exists()
    # a classical method is slice-wise and says why
    out = tmp_path / "fbp"
    assert main(["reconstruct", str(study), "--out", str(out), "--method", "fbp", "--no-progress"]) == 0
    assert "no volume form" in _report(out)["settings"]["volume"]["reason"]


def test_std_series_uses_the_priors_calibration(tmp_path: Path):
    import numpy as np
    import torch

    from pipelines.reconstruct_dir import calibrated_std
    from priors import CT_WINDOW, EDMPrior, preset, save_checkpoint
    from priors.calibration import StdCalibration, save_std_calibration

    torch.manual_seed(0)
    ckpt = save_checkpoint(EDMPrior(net_config=preset("tiny"), modality="ct", normalization=CT_WINDOW), tmp_path / "p")
    std = np.full((2, 4, 4), 10.0, np.float32)
    raw, note = calibrated_std(std, str(ckpt), samples=4)
    assert note["calibrated"] is False and np.array_equal(raw, std)
    save_std_calibration(StdCalibration(scale=1.5, samples=4), ckpt)
    scaled, note = calibrated_std(std, str(ckpt), samples=2)
    assert note["calibrated"] and note["scale"] == 1.5 and "2" in note["warning"]
    assert np.allclose(scaled, 15.0)
