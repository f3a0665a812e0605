"""The hospital round trip on a real Orthanc: ``simulate --from-pacs`` -> reconstruct -> ``--push``;
the derived series (mean and posterior std) land in the source study, and no output of the run
names the patient."""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pydicom
import pytest

from pipelines.benchmark import cli as benchmark_cli
from pipelines.pacs_options import add_pacs_options, push_outputs
from pipelines.reconstruct_dir import reconstruct_directory
from pipelines.simulate import register as register_simulate
from recon.errors import InputError
from tests.pacs.conftest import LEAK_STRINGS, PASSWORD, USER, Orthanc, make_study

SIDE_CAR_WITH_IDENTITY = {"geometry.json", "kspace.json"}  # the identity that files derived series into the study


def _parse(register: Any, argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers(dest="command"))
    return parser.parse_args(argv)


@pytest.fixture
def figure_texts(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every text drawn in every figure the run saves (titles, labels, legends, annotations)."""
    import matplotlib.figure
    import matplotlib.text

    texts: list[str] = []
    real = matplotlib.figure.Figure.savefig

    def recording(fig: Any, *args: Any, **kwargs: Any) -> Any:
        texts.extend(t.get_text() for t in fig.findobj(matplotlib.text.Text))
        return real(fig, *args, **kwargs)

    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", recording)
    return texts


def _leaks(text: str) -> list[str]:
    return [s for s in LEAK_STRINGS if s.lower() in text.lower()]


def _scan(roots: list[Path]) -> dict[str, list[str]]:
    """Identifier hits per file under ``roots``, except DICOM files and the measurement sidecars."""
    hits = {}
    for root in roots:
        for f in root.rglob("*"):
            if f.is_file() and f.suffix != ".dcm" and f.name not in SIDE_CAR_WITH_IDENTITY:
                found = _leaks(f.read_bytes().decode("latin-1"))
                if found:
                    hits[str(f)] = found
    return hits


@pytest.mark.timeout(300)
def test_simulate_from_pacs_reconstruct_push_lands_in_the_source_study_and_names_no_patient(
    uploaded: tuple[str, list[Path]], pacs: Orthanc, tmp_path: Path, capsys: pytest.CaptureFixture[str],
    figure_texts: list[str], one_thread: None,
) -> None:
    study_uid, files = uploaded
    source_sops = {str(pydicom.dcmread(f, stop_before_pixels=True).SOPInstanceUID) for f in files}
    meas, out = tmp_path / "meas", tmp_path / "recon"
    # the accession number on the command line must not come back in any output
    args = _parse(register_simulate, ["simulate", "--from-pacs", "ACC99812QZ", "--modality", "ct", "--views", "16",
                                      "--size", "64", "--out", str(meas)])
    assert args.func(args) == 0
    reconstruct_directory(meas, out, sampler="dds", nfe=2, samples=2, batch=4, device="cpu", progress=False)
    pushed = push_outputs(argparse.Namespace(push=True), [out / "dicom", out / "dicom_std"], progress=False)

    # on the server: the source study now holds the source series, the mean and the std
    assert [r.study_uid for r in pushed] == [study_uid, study_uid]
    series = pacs.get(f"/studies/{_orthanc_study(pacs, study_uid)}/series")
    assert len(series) == 3  # type: ignore[arg-type]
    from recon.io.pacs import open_client, resolve_config

    with open_client(resolve_config()) as client:
        listed = client.list_series(study_uid)
        derived = [s for s in listed if s.series_uid in {p.series[0].series_uid for p in pushed}]
        assert sorted(s.n_instances for s in derived) == [len(files), len(files)]
        assert any(s.description.endswith("posterior std") for s in derived)
        for s in derived:
            (ref,) = [r for r in client.list_instances(study_uid, s.series_uid)][:1]
            got: list[pydicom.Dataset] = []
            client.retrieve(study_uid, [ref], got.append)
            refs = {str(i.ReferencedSOPInstanceUID) for i in got[0].SourceImageSequence}
            assert refs <= source_sops and str(got[0].StudyInstanceUID) == study_uid
            assert str(got[0].FrameOfReferenceUID) == str(pydicom.dcmread(files[0], stop_before_pixels=True).FrameOfReferenceUID)
            assert str(got[0].PatientID) == "PID-7731-XQZ"  # the derived series belongs to the patient

    # nothing the run printed, reported or drew names the patient
    captured = capsys.readouterr()
    assert _leaks(captured.out + captured.err) == []
    assert figure_texts and all(not _leaks(t) for t in figure_texts)
    assert _leaks((out / "report.json").read_text()) == []
    cache = tmp_path / "cache"
    assert _scan([meas, out, cache]) == {}
    assert "study-" in captured.out


def _orthanc_study(pacs: Orthanc, study_uid: str) -> str:
    """Orthanc's own ID of a study (its REST API addresses studies by it)."""
    import requests

    r = requests.post(pacs.rest + "/tools/lookup", data=study_uid, auth=(USER, PASSWORD), timeout=10)
    r.raise_for_status()
    return str(r.json()[0]["ID"])


@pytest.mark.timeout(300)
def test_benchmark_from_pacs_names_no_patient(uploaded: tuple[str, list[Path]], tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str], figure_texts: list[str],
                                               one_thread: None) -> None:
    out = tmp_path / "bench"
    args = _parse(benchmark_cli.register, ["benchmark", "--from-pacs", uploaded[0], "--modality", "ct", "--views", "8",
                                           "--dose", "1", "--methods", "fbp", "--size", "64", "--max-slices", "2",
                                           "--out", str(out), "--no-progress"])
    assert args.func(args) == 0
    captured = capsys.readouterr()
    assert _leaks(captured.out + captured.err) == []
    assert figure_texts and all(not _leaks(t) for t in figure_texts)
    assert (out / "report.html").is_file()
    assert _scan([out, tmp_path / "cache"]) == {}


def test_deidentified_pull_feeds_simulate_and_keeps_no_identifier(uploaded: tuple[str, list[Path]], tmp_path: Path,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    meas = tmp_path / "meas"
    args = _parse(register_simulate, ["simulate", "--from-pacs", uploaded[0], "--deidentify", "--modality", "ct",
                                      "--views", "8", "--size", "32", "--out", str(meas), "--no-progress"])
    assert args.func(args) == 0
    # with --deidentify even the sidecar and the pulled DICOM hold no identifier
    for f in [*meas.rglob("*"), *(tmp_path / "cache").rglob("*")]:
        if f.is_file():
            assert _leaks(f.read_bytes().decode("latin-1")) == [], f
    identity = json.loads((meas / "geometry.json").read_text())["identity"]
    assert identity["PatientID"].startswith("ANON") and identity["StudyInstanceUID"] != uploaded[0]
    assert not list(tmp_path.rglob("*map*.json"))  # no mapping unless asked for
    assert _leaks(capsys.readouterr().out) == []


def test_push_refuses_a_series_whose_study_is_not_on_the_pacs(pacs: Orthanc, tmp_path: Path) -> None:
    files = make_study(tmp_path / "elsewhere", n=2)
    with pytest.raises(InputError, match="not on the PACS"):
        push_outputs(argparse.Namespace(push=True), [files[0].parent], progress=False)
    assert pacs.count_instances() == 0


def test_pacs_options_parse_and_check_their_combinations(tmp_path: Path) -> None:
    from pipelines.pacs_options import resolve_input

    parser = argparse.ArgumentParser()
    add_pacs_options(parser)
    args = parser.parse_args(["--from-pacs", "1.2.3", "--deidentify", "--push"])
    assert (args.from_pacs, args.deidentify, args.push, args.deid_map) == ("1.2.3", True, True, None)
    with pytest.raises(InputError, match="not both"):
        resolve_input(args, tmp_path)
    plain = parser.parse_args(["--deidentify"])
    with pytest.raises(InputError, match="applies to --from-pacs"):
        resolve_input(plain, tmp_path)
    assert resolve_input(parser.parse_args([]), tmp_path) == tmp_path


@pytest.mark.skipif(shutil.which("dciodvfy") is None, reason="dciodvfy (dicom3tools) is not installed")
def test_pulled_deidentified_study_passes_dciodvfy(uploaded: tuple[str, list[Path]], tmp_path: Path) -> None:
    from pipelines.pacs_options import pull_into

    folder = pull_into(uploaded[0], tmp_path / "export", deidentify=True, progress=False)
    for f in sorted(folder.rglob("*.dcm")):
        run = subprocess.run(["dciodvfy", str(f)], capture_output=True, text=True)
        errors = [line for line in (run.stdout + run.stderr).splitlines() if line.startswith("Error")]
        assert errors == [], f
