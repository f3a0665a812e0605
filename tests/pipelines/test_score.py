"""``recon score``: one line per slice, the JSON report, fitting reference statistics, and a clear
error for a prior without them."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pytest

from pipelines import cli
from pipelines import score as score_cmd
from priors.checkpoint import save_checkpoint
from recon.errors import InputError
from tests.priors.helpers import synthetic_ct, tiny_prior


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    yield


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="recon")
    score_cmd.register(parser.add_subparsers(dest="command"))
    return parser.parse_args(["score", *argv])


@pytest.fixture
def tiny_prior_dir(tmp_path: Path) -> Path:
    return save_checkpoint(tiny_prior(), tmp_path / "prior")


def _npy_patients(folder: Path, n_patients: int, per_patient: int, seed: int) -> Path:
    folder.mkdir(parents=True)
    slices = synthetic_ct(n_patients * per_patient, size=32, seed=seed)
    for p in range(n_patients):
        np.save(folder / f"case{p}.npy", np.stack(slices[p * per_patient:(p + 1) * per_patient]))
    return folder


def test_fit_then_score_prints_one_line_per_slice_and_writes_json(tmp_path, tiny_prior_dir, capsys):
    data = _npy_patients(tmp_path / "val", 4, 2, seed=0)
    score_cmd.run(_parse(["--fit-reference", str(data), "--prior", str(tiny_prior_dir), "--no-progress"]))
    ref = json.loads((tiny_prior_dir / "typicality.json").read_text())
    assert ref["methods"]["msma"]["n_slices"] == 8 and ref["methods"]["msma"]["n_patients"] == 4
    assert "case0" not in json.dumps(ref)  # file names (patient labels) are not written
    capsys.readouterr()

    stack = tmp_path / "study.npy"
    np.save(stack, np.stack(synthetic_ct(3, size=32, seed=9)))
    out = tmp_path / "report.json"
    assert score_cmd.run(_parse([str(stack), "--prior", str(tiny_prior_dir), "--out", str(out), "--no-progress"])) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 3
    for i, line in enumerate(lines):
        assert line.split()[0] == str(i)
        assert line.endswith(("in distribution", "OUT OF DISTRIBUTION"))
    report = json.loads(out.read_text())
    assert report["n_slices"] == 3 and report["method"] == "msma" and report["level"] == 0.01
    for row in report["slices"]:
        assert {"score", "p_value", "flag"} <= set(row) and 0.0 < row["p_value"] <= 1.0
        assert isinstance(row["flag"], bool)


def test_fit_refuses_to_overwrite_and_score_refuses_a_stale_out(tmp_path, tiny_prior_dir):
    data = _npy_patients(tmp_path / "val", 2, 2, seed=0)
    args = ["--fit-reference", str(data), "--prior", str(tiny_prior_dir), "--no-progress"]
    score_cmd.run(_parse(args))
    with pytest.raises(InputError, match="--overwrite"):
        score_cmd.run(_parse(args))
    score_cmd.run(_parse([*args, "--overwrite"]))
    out = tmp_path / "r.json"
    out.write_text("{}")
    with pytest.raises(InputError, match="--overwrite"):
        score_cmd.run(_parse([str(data), "--prior", str(tiny_prior_dir), "--out", str(out)]))


def test_missing_reference_is_one_line_and_a_non_zero_exit(tmp_path, tiny_prior_dir, capsys):
    stack = tmp_path / "study.npy"
    np.save(stack, np.stack(synthetic_ct(2, size=32)))
    code = cli.main(["score", str(stack), "--prior", str(tiny_prior_dir), "--no-progress"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code != 0
    assert len(err) == 1 and "no reference statistics" in err[0] and "recon score --fit-reference" in err[0]


def test_patient_identifiers_stay_out_of_stdout_and_json(tmp_path, tiny_prior_dir, capsys):
    # The bundled sample series carries a name and an ID; neither may reach the output.
    from pipelines.demo import sample_study_dir
    from recon.io.dicom_read import read_series

    identity = read_series(sample_study_dir()).identity
    data = _npy_patients(tmp_path / "val", 2, 2, seed=0)
    score_cmd.run(_parse(["--fit-reference", str(data), "--prior", str(tiny_prior_dir), "--no-progress"]))
    out = tmp_path / "r.json"
    score_cmd.run(_parse([str(sample_study_dir()), "--prior", str(tiny_prior_dir), "--out", str(out), "--no-progress"]))
    text = capsys.readouterr().out + out.read_text()
    for key in ("PatientName", "PatientID", "PatientBirthDate", "AccessionNumber"):
        value = str(identity.get(key, "") or "")
        if len(value) >= 3:
            assert value not in text, key


@pytest.mark.slow
def test_bundled_ct_prior_scores_its_sample_study(tmp_path, capsys):
    from pipelines.demo import sample_study_dir

    out = tmp_path / "r.json"
    score_cmd.run(_parse([str(sample_study_dir()), "--prior", "ct", "--out", str(out), "--device", "cpu", "--no-progress"]))
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 4 and all(line.endswith("in distribution") for line in lines)
    assert all(r["p_value"] > 0.01 for r in json.loads(out.read_text())["slices"])
