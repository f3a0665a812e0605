"""``--push`` on the pipeline commands, on a real Orthanc: ``simulate`` and ``reconstruct`` file
their derived series into the source study (checked by querying the server), ``benchmark`` refuses."""

from __future__ import annotations

import argparse
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pydicom
import pytest

from pipelines.benchmark import cli as benchmark_cli
from pipelines.reconstruct_dir import register as register_reconstruct
from pipelines.simulate import register as register_simulate
from recon.errors import InputError
from tests.pacs.conftest import Orthanc


def _parse(register: Any, argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers(dest="command"))
    return parser.parse_args(argv)


def _dciodvfy_errors(files: list[Path]) -> list[str]:
    errors = []
    for f in files:
        run = subprocess.run(["dciodvfy", str(f)], capture_output=True, text=True)
        errors += [f"{f.name}: {line}" for line in (run.stdout + run.stderr).splitlines() if line.startswith("Error")]
    return errors


@pytest.mark.timeout(300)
def test_simulate_and_reconstruct_push_their_series_into_the_source_study(
    uploaded: tuple[str, list[Path]], pacs: Orthanc, tmp_path: Path, capsys: pytest.CaptureFixture[str],
    one_thread: None,
) -> None:
    from recon.io.pacs import open_client, resolve_config

    study_uid, files = uploaded
    source_sops = {str(pydicom.dcmread(f, stop_before_pixels=True).SOPInstanceUID) for f in files}
    meas, out = tmp_path / "meas", tmp_path / "recon"
    args = _parse(register_simulate, ["simulate", "--from-pacs", study_uid, "--modality", "ct", "--views", "16",
                                      "--dose", "0.25", "--size", "64", "--out", str(meas), "--push", "--no-progress"])
    assert args.func(args) == 0
    simulated = sorted((meas / "dicom").glob("*.dcm"))
    assert len(simulated) == len(files)
    args = _parse(register_reconstruct, ["reconstruct", str(meas), "--method", "fbp", "--out", str(out), "--push",
                                         "--no-progress"])
    assert args.func(args) == 0
    printed = capsys.readouterr().out
    assert printed.count("pushed ") == 2 and "simulated" in printed

    with open_client(resolve_config()) as client:
        listed = {s.series_uid: s for s in client.list_series(study_uid)}
        assert len(listed) == 3  # source, simulated acquisition, reconstruction
        for folder in (meas / "dicom", out / "dicom"):
            header = pydicom.dcmread(sorted(folder.glob("*.dcm"))[0], stop_before_pixels=True)
            assert str(header.StudyInstanceUID) == study_uid
            series = listed[str(header.SeriesInstanceUID)]
            assert series.n_instances == len(files)
            got: list[pydicom.Dataset] = []
            client.retrieve(study_uid, client.list_instances(study_uid, series.series_uid)[:1], got.append)
            assert {str(i.ReferencedSOPInstanceUID) for i in got[0].SourceImageSequence} <= source_sops
            assert "DERIVED" in list(got[0].ImageType)
        sim_series = listed[str(pydicom.dcmread(simulated[0], stop_before_pixels=True).SeriesInstanceUID)]
        assert sim_series.description.startswith("simulated low-dose CT 16 views")
        numbers = sorted(s.number for s in listed.values() if s.number is not None)
        assert len(set(numbers)) == 3  # the derived series do not share a SeriesNumber
    if shutil.which("dciodvfy"):
        assert _dciodvfy_errors(simulated) == []


def test_simulate_push_without_a_pacs_fails_before_any_work(isolated_env: Path, tmp_path: Path) -> None:
    from tests.pacs.conftest import make_study

    files = make_study(tmp_path / "src", n=2, size=64)
    args = _parse(register_simulate, ["simulate", str(files[0].parent), "--modality", "ct", "--views", "8",
                                      "--size", "32", "--out", str(tmp_path / "meas"), "--push"])
    with pytest.raises(InputError, match="no PACS configured"):
        args.func(args)
    assert not (tmp_path / "meas").exists() and not list(tmp_path.glob("*.partial"))


def test_simulate_dicom_writes_the_series_without_a_pacs(isolated_env: Path, tmp_path: Path) -> None:
    from tests.pacs.conftest import make_study

    files = make_study(tmp_path / "src", n=2, size=64)
    meas = tmp_path / "meas"
    args = _parse(register_simulate, ["simulate", str(files[0].parent), "--modality", "ct", "--views", "8",
                                      "--size", "32", "--out", str(meas), "--dicom"])
    assert args.func(args) == 0
    written = sorted((meas / "dicom").glob("*.dcm"))
    assert len(written) == 2
    ds = pydicom.dcmread(written[0])
    source = pydicom.dcmread(files[0], stop_before_pixels=True)
    assert ds.StudyInstanceUID == source.StudyInstanceUID and ds.SeriesInstanceUID != source.SeriesInstanceUID
    assert ds.pixel_array.shape == (32, 32) and str(ds.Modality) == "CT"


def test_benchmark_refuses_push_in_one_line_before_any_work(pacs: Orthanc, uploaded: tuple[str, list[Path]],
                                                            tmp_path: Path) -> None:
    before = pacs.count_instances()
    out = tmp_path / "bench"
    args = _parse(benchmark_cli.register, ["benchmark", "--from-pacs", uploaded[0], "--modality", "ct", "--out",
                                           str(out), "--push"])
    with pytest.raises(InputError) as err:
        args.func(args)
    assert "\n" not in str(err.value) and "not DICOM series" in str(err.value)
    assert not out.exists() and pacs.count_instances() == before
