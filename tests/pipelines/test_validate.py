"""``recon validate``: manifests, candidates, the gain table, resumption and bad input."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pytest

from pipelines import train as train_cmd
from pipelines import validate
from priors.checkpoint import save_checkpoint
from recon.errors import InputError
from tests.priors.helpers import synthetic_ct, tiny_prior

REPO = Path(__file__).resolve().parents[2]
SAMPLE = REPO / "data" / "sample" / "ct"


pytestmark = pytest.mark.usefixtures("one_thread")


def _manifest(tmp_path: Path, **over) -> Path:
    m = {
        "modality": "ct",
        "root": str(SAMPLE.parent),
        "inputs": [{"source": "sample", "files": ["ct/IM0001.dcm"]}, {"source": "sample", "path": "ct"}],
        "settings": {"views": [8], "doses": [1.0], "i0": 1e5},
        "max_slices": 1,
        "holdout_files": ["ct/IM0001.dcm", "ct/IM0002.dcm"],
    }
    m.update(over)
    path = tmp_path / "manifest.json"
    path.write_text(json.dumps(m))
    return path


def _run_dir(tmp_path: Path) -> Path:
    """A training run directory holding a checkpoint and one snapshot of a tiny prior."""
    run = tmp_path / "run"
    prior = tiny_prior()
    prior.metadata["training"] = {"steps": 4}
    save_checkpoint(prior, run / "checkpoint")
    save_checkpoint(tiny_prior(seed=1), run / "snapshots" / "step_0000002")
    return run


def test_manifest_errors_name_the_file(tmp_path):
    with pytest.raises(InputError, match="manifest.json: 'settings' lacks doses"):
        validate.load_manifest(_manifest(tmp_path, settings={"views": [8]}))
    with pytest.raises(InputError, match="inputs\\[0\\] needs exactly one of"):
        validate.load_manifest(_manifest(tmp_path, inputs=[{"source": "x"}]))
    with pytest.raises(InputError, match="absent"):
        validate.load_manifest(_manifest(tmp_path, inputs=[{"path": "no/such/series"}]))
    bad = tmp_path / "bad.json"
    bad.write_text("{")
    with pytest.raises(InputError, match="bad.json: invalid JSON"):
        validate.load_manifest(bad)


def test_run_directory_stands_for_snapshots_and_checkpoint(tmp_path):
    run = _run_dir(tmp_path)
    labels = [label for label, _ in validate.prior_candidates(str(run))]
    assert labels == ["run-step_0000002", "run-step_0000004"]
    assert validate.prior_candidates("ct") == [("ct", "ct")]


@pytest.mark.slow
def test_validation_ranks_candidates_against_tv_and_resumes(tmp_path):
    run = _run_dir(tmp_path)
    out = tmp_path / "val"
    m = validate.load_manifest(_manifest(tmp_path))
    result = validate.run_validation(m, [str(run)], out, nfe=2, progress=False)
    assert result["baseline"] == "tv"
    assert len(result["candidates"]) == 2
    gains = sorted(c["mean_psnr_gain"] for c in result["candidates"])
    assert [c["mean_psnr_gain"] for c in result["candidates"]] == gains[::-1]  # best first
    for c in result["candidates"]:
        (row,) = c["rows"]
        assert row["setting"] == "v0008_p1" and row["n_slices"] == 2
        assert row["psnr_gain"] == pytest.approx(row["psnr"] - row["baseline_psnr"])
        assert row["ssim_gain"] == pytest.approx(row["ssim"] - row["baseline_ssim"])
    assert result["best"] == result["candidates"][0]["label"]
    table = (out / "validation.md").read_text()
    assert "| TV PSNR / SSIM |" in table and "run-step_0000002" in table
    assert json.loads((out / "validation.json").read_text()) == json.loads(json.dumps(result))

    # A rerun reuses every finished cell; the baseline is shared by all candidates.
    cells = sorted(out.rglob("cells/*.json"))
    stamps = [p.stat().st_mtime_ns for p in cells]
    again = validate.run_validation(m, [str(run)], out, nfe=2, progress=False)
    assert [p.stat().st_mtime_ns for p in cells] == stamps
    assert again["candidates"] == result["candidates"]
    assert len(list((out / "baseline" / "cells").glob("*__tv.json"))) == 1


def test_train_takes_a_manifest_as_validation_data(tmp_path):
    # The manifest holds out two slices of the sample patient: its other two slices leave the
    # training data as well, and only the other patients' slices are trained on.
    others = tmp_path / "others"
    for i, img in enumerate(synthetic_ct(3, 40)):
        (others / f"patient{i}").mkdir(parents=True)
        np.save(others / f"patient{i}" / "slice.npy", img)
    out = tmp_path / "trainrun"
    parser = argparse.ArgumentParser()
    train_cmd.register(parser.add_subparsers())
    args = parser.parse_args(["train", str(SAMPLE), str(others), "--modality", "ct", "--size", "32", "--patch", "16",
                              "--steps", "1", "--batch", "2", "--out", str(out), "--preset", "tiny", "--device", "cpu",
                              "--samples", "0", "--no-progress", "--val-data", str(_manifest(tmp_path))])
    assert args.func(args) == 0
    data = json.loads((out / "checkpoint" / "config.json").read_text())["data"]
    assert (data["n_val_slices"], data["n_val_patients"]) == (2, 1)
    assert (data["n_train_slices"], data["n_train_patients"]) == (3, 3)
