"""Pull and push against a real Orthanc, over DICOMweb and DIMSE (C-GET and C-MOVE)."""

from __future__ import annotations

from pathlib import Path

import pydicom
import pytest

from recon.io.pacs import MANIFEST, find_study, open_client, pull_study, push_files, read_manifest, resolve_config
from tests.pacs.conftest import IDENTITY, Orthanc, make_study, use_dimse


def _sop_uids(folder: Path) -> set[str]:
    return {str(pydicom.dcmread(f, stop_before_pixels=True).SOPInstanceUID) for f in folder.rglob("*.dcm")}


@pytest.mark.parametrize("protocol", ["dicomweb", "dimse-get", "dimse-move"])
def test_pull_finds_by_uid_and_accession_and_writes_the_study_atomically(
    protocol: str, uploaded: tuple[str, list[Path]], pacs: Orthanc, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    study_uid, files = uploaded
    if protocol != "dicomweb":
        use_dimse(monkeypatch, pacs, retrieve=protocol.split("-")[1])
    with open_client(resolve_config()) as client:
        study = find_study(client, study_uid)
        assert find_study(client, IDENTITY["AccessionNumber"]).study_uid == study_uid
        assert study.n_instances == len(files) and study.modalities == ("CT",)
        out = pull_study(client, study, tmp_path / "pulled")
    assert _sop_uids(out) == _sop_uids(files[0].parent)
    manifest = read_manifest(out)
    assert manifest is not None and manifest["study"] == study.label and manifest["instances"] == len(files)
    assert (out / manifest["series"][0]["series_uid"]).is_dir()
    assert not any(p.name.startswith(".") for p in tmp_path.iterdir())  # no partial folder left
    assert IDENTITY["PatientID"] not in (out / MANIFEST).read_text()


def test_a_completed_pull_is_reused_and_an_interrupted_one_resumes(
    uploaded: tuple[str, list[Path]], tmp_path: Path
) -> None:
    study_uid, files = uploaded
    dest = tmp_path / "pulled"
    with open_client(resolve_config()) as client:
        study = find_study(client, study_uid)
        calls: list[int] = []
        real = client.retrieve

        def counting(uid, wanted, sink):  # type: ignore[no-untyped-def]
            calls.append(len(wanted))
            return real(uid, wanted, sink)

        client.retrieve = counting  # type: ignore[method-assign]
        pull_study(client, study, dest)
        # simulate an interruption: the finished folder back to partial with one instance missing
        partial = tmp_path / ".pulled.partial"
        dest.rename(partial)
        (partial / MANIFEST).unlink()
        victim = sorted(partial.rglob("*.dcm"))[0]
        kept = sorted(partial.rglob("*.dcm"))[1]
        kept_inode = kept.stat().st_ino
        victim.unlink()
        pull_study(client, study, dest)
        assert calls == [len(files), 1]
        assert kept_inode == (dest / kept.relative_to(partial)).stat().st_ino
        pull_study(client, study, dest)  # complete: nothing fetched
        assert calls == [len(files), 1]


@pytest.mark.parametrize("protocol", ["dicomweb", "dimse"])
def test_push_stores_a_series_skips_what_is_there_and_verifies(
    protocol: str, uploaded: tuple[str, list[Path]], pacs: Orthanc, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    study_uid, files = uploaded
    if protocol == "dimse":
        use_dimse(monkeypatch, pacs)
    extra = make_study(tmp_path / "other", n=2)
    with open_client(resolve_config()) as client:
        result = push_files(client, [extra[0].parent])
        assert result.sent == 2 and result.skipped == 0
        assert [s.n_instances for s in result.series] == [2]
        again = push_files(client, [extra[0].parent])
        assert again.sent == 0 and again.skipped == 2
    assert pacs.count_instances() == len(files) + 2
