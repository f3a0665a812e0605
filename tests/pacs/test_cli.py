"""``recon pacs find|pull|push`` and the pipeline options through the ``recon`` command's main."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipelines import cli, pacs, reconstruct_dir, simulate
from tests.pacs.conftest import IDENTITY, LEAK_STRINGS, Orthanc, free_port, make_study


@pytest.fixture
def recon(monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    """``recon`` with the ``pacs`` subcommand registered."""
    monkeypatch.setattr(cli, "SUBCOMMAND_MODULES", (reconstruct_dir, simulate, pacs))
    return cli.main


def _no_leaks(text: str) -> None:
    assert [s for s in LEAK_STRINGS if s in text] == []


def test_find_pull_push(recon, uploaded: tuple[str, list[Path]], pacs: Orthanc, tmp_path: Path,  # type: ignore[no-untyped-def]
                        capsys: pytest.CaptureFixture[str]) -> None:
    study_uid, files = uploaded
    assert recon(["pacs", "find", IDENTITY["AccessionNumber"]]) == 0
    out = capsys.readouterr().out
    assert study_uid in out and "1 study" in out and "study-" in out
    assert recon(["pacs", "find", "--modality", "CT"]) == 0
    assert study_uid in capsys.readouterr().out
    assert recon(["pacs", "find", "--date", "20240301-20240331"]) == 0
    assert study_uid in capsys.readouterr().out
    assert recon(["pacs", "find", "--date", "20230101-20230131"]) == 0
    assert "0 studies" in capsys.readouterr().out
    assert recon(["pacs", "pull", study_uid, "--out", str(tmp_path / "pulled"), "--no-progress"]) == 0
    assert len(list((tmp_path / "pulled").rglob("*.dcm"))) == len(files)
    extra = make_study(tmp_path / "extra", n=2)
    assert recon(["pacs", "push", str(extra[0].parent), "--no-progress"]) == 0
    assert pacs.count_instances() == len(files) + 2
    captured = capsys.readouterr()
    assert "pushed 2 instances" in captured.out
    _no_leaks(captured.out + captured.err)


def test_deidentified_export_with_a_mapping_only_when_asked(recon, uploaded: tuple[str, list[Path]],  # type: ignore[no-untyped-def]
                                                           pacs: Orthanc, tmp_path: Path,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    study_uid, files = uploaded
    export = tmp_path / "export"
    assert recon(["pacs", "pull", study_uid, "--out", str(export), "--deidentify", "--no-progress"]) == 0
    assert not list(tmp_path.rglob("*.json")) or all(p.name == "pacs-study.json" for p in tmp_path.rglob("*.json"))
    for f in export.rglob("*"):
        if f.is_file():
            _no_leaks(f.read_bytes().decode("latin-1"))
    mapping = tmp_path / "private" / "map.json"
    assert recon(["pacs", "pull", study_uid, "--out", str(export), "--deidentify", "--deid-map", str(mapping),
                  "--no-progress"]) == 0
    assert IDENTITY["PatientID"] in mapping.read_text()  # the mapping (asked for) is what re-identifies
    # a de-identified push is a new, pseudonymous study next to the original
    assert recon(["pacs", "push", str(files[0].parent), "--deidentify", "--no-progress"]) == 0
    assert len(pacs.get("/studies")) == 2  # type: ignore[arg-type]
    captured = capsys.readouterr()
    _no_leaks(captured.out + captured.err)


@pytest.mark.parametrize("fault", ["down", "not-found", "credentials-on-the-command-line"])
def test_faults_are_one_line_with_status_2(recon, fault: str, uploaded: tuple[str, list[Path]], tmp_path: Path,  # type: ignore[no-untyped-def]
                                           capsys: pytest.CaptureFixture[str]) -> None:
    argv = {
        "down": ["pacs", "pull", "1.2.3.4", "--out", str(tmp_path / "x"), "--pacs", f"http://127.0.0.1:{free_port()}"],
        "not-found": ["simulate", "--from-pacs", "ACC-NOT-HERE-1", "--modality", "ct", "--out", str(tmp_path / "m")],
        "credentials-on-the-command-line": ["pacs", "find", "1.2.3", "--pacs", "http://u:pw@127.0.0.1:1/dicom-web"],
    }[fault]
    assert recon(argv) == cli.EXIT_INPUT_ERROR
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("recon: error:")
    assert "ACC-NOT-HERE-1" not in err[0] and "pw@" not in err[0]
    assert not (tmp_path / "x").exists() and not (tmp_path / "m").exists()
