"""Faults against a real Orthanc: each one clear line, nothing partial kept, a rerun resumes."""

from __future__ import annotations

from pathlib import Path

import pydicom
import pytest

from recon.io.pacs import (
    PacsRefused,
    PacsUnreachable,
    PushRejected,
    StudyNotFound,
    TransferInterrupted,
    find_study,
    open_client,
    pull_study,
    push_files,
    resolve_config,
)
from recon.io.pacs.errors import PacsError
from tests.pacs.conftest import (
    IDENTITY,
    ORTHANC_AET,
    DroppingProxy,
    Orthanc,
    free_port,
    make_study,
    use_dimse,
)


def _one_line(err: BaseException) -> str:
    text = str(err)
    assert "\n" not in text and text.startswith("PACS ")
    for leak in (IDENTITY["PatientID"], IDENTITY["AccessionNumber"], "pacs-test-secret"):
        assert leak not in text
    return text


@pytest.mark.parametrize("protocol", ["dicomweb", "dimse"])
def test_server_down(protocol: str, isolated_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    port = free_port()
    if protocol == "dicomweb":
        monkeypatch.setenv("RECON_PACS_URL", f"http://127.0.0.1:{port}/dicom-web")
    else:
        monkeypatch.setenv("RECON_PACS_DIMSE", f"127.0.0.1:{port}:{ORTHANC_AET}")
    monkeypatch.setenv("RECON_PACS_TIMEOUT", "3")
    with open_client(resolve_config()) as client, pytest.raises(PacsUnreachable) as err:
        find_study(client, "1.2.3.4")
    assert "cannot connect" in _one_line(err.value)


def test_wrong_called_ae_title(pacs: Orthanc, monkeypatch: pytest.MonkeyPatch) -> None:
    use_dimse(monkeypatch, pacs, dimse=f"127.0.0.1:{pacs.dicom_port}:NOTORTHANC")
    with open_client(resolve_config()) as client, pytest.raises(PacsRefused) as err:
        find_study(client, "1.2.3.4")
    assert "Called AE title not recognised" in _one_line(err.value)


def test_c_move_to_an_unregistered_ae_title(uploaded: tuple[str, list[Path]], pacs: Orthanc, tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    use_dimse(monkeypatch, pacs, retrieve="move")
    monkeypatch.setenv("RECON_PACS_CALLING_AET", "NOBODYKNOWS")
    with open_client(resolve_config()) as client:
        with pytest.raises(PacsError) as err:
            pull_study(client, find_study(client, uploaded[0]), tmp_path / "pulled")
    text = _one_line(err.value)
    assert "NOBODYKNOWS" in text or "rejected" in text
    assert not (tmp_path / "pulled").exists()


def test_wrong_password(pacs: Orthanc, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RECON_PACS_PASSWORD", "not-the-password")
    with open_client(resolve_config()) as client, pytest.raises(PacsRefused) as err:
        find_study(client, "1.2.3.4")
    assert "HTTP 401" in _one_line(err.value)


@pytest.mark.parametrize("protocol", ["dicomweb", "dimse"])
def test_study_not_found_does_not_repeat_the_key(protocol: str, uploaded: tuple[str, list[Path]], pacs: Orthanc,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    if protocol == "dimse":
        use_dimse(monkeypatch, pacs)
    with open_client(resolve_config()) as client:
        for key in ("1.2.826.0.1.3680043.99999.1", "ACC-NOT-THERE-77"):
            with pytest.raises(StudyNotFound) as err:
                find_study(client, key)
            assert key not in _one_line(err.value)


@pytest.mark.parametrize("protocol", ["dicomweb", "dimse"])
def test_push_rejected_leaves_nothing_on_the_server(protocol: str, pacs: Orthanc, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    if protocol == "dimse":
        use_dimse(monkeypatch, pacs)
    files = make_study(tmp_path / "bad", n=2, series_description="REJECT by policy")
    with open_client(resolve_config()) as client, pytest.raises(PushRejected) as err:
        push_files(client, [files[0].parent])
    assert "2 of 2 instances" in _one_line(err.value)
    assert pacs.count_instances() == 0


@pytest.mark.parametrize("protocol", ["dicomweb", "dimse"])
def test_connection_dropped_mid_pull_keeps_complete_files_and_resumes(
    protocol: str, uploaded: tuple[str, list[Path]], pacs: Orthanc, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    study_uid, files = uploaded
    if protocol == "dimse":
        use_dimse(monkeypatch, pacs)
    upstream = pacs.http_port if protocol == "dicomweb" else pacs.dicom_port
    with open_client(resolve_config()) as client:
        study = find_study(client, study_uid)
    dest = tmp_path / "pulled"
    with DroppingProxy(upstream, limit=60_000) as proxy:
        if protocol == "dicomweb":
            monkeypatch.setenv("RECON_PACS_URL", f"http://127.0.0.1:{proxy.port}/dicom-web")
        else:
            monkeypatch.setenv("RECON_PACS_DIMSE", f"127.0.0.1:{proxy.port}:{ORTHANC_AET}")
        with open_client(resolve_config()) as client, pytest.raises(TransferInterrupted) as err:
            pull_study(client, study, dest)
    assert "run the same command again" in _one_line(err.value)
    assert not dest.exists()
    partial = tmp_path / ".pulled.partial"
    kept = sorted(partial.rglob("*.dcm"))
    assert 0 < len(kept) < len(files)
    for f in kept:
        assert pydicom.dcmread(f).pixel_array.size  # every kept file is complete
    assert not [p for p in partial.rglob("*") if ".partial-" in p.name]
    # rerun straight to the server: only what is missing is fetched
    if protocol == "dicomweb":
        monkeypatch.setenv("RECON_PACS_URL", pacs.dicomweb)
    else:
        monkeypatch.setenv("RECON_PACS_DIMSE", pacs.dimse)
    with open_client(resolve_config()) as client:
        fetched: list[int] = []
        real = client.retrieve
        client.retrieve = lambda uid, wanted, sink: (fetched.append(len(wanted)), real(uid, wanted, sink))[1]  # type: ignore[method-assign]
        pull_study(client, study, dest)
    assert fetched == [len(files) - len(kept)]
    assert len(list(dest.rglob("*.dcm"))) == len(files) and not partial.exists()


def test_https_is_verified_against_the_configured_ca(https_orthanc: Orthanc, uploaded: tuple[str, list[Path]],
                                                     tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RECON_PACS_URL", https_orthanc.dicomweb)
    with open_client(resolve_config()) as client, pytest.raises(PacsRefused) as err:
        find_study(client, uploaded[0])  # a self-signed certificate is not trusted by default
    assert "TLS failed" in _one_line(err.value)
    monkeypatch.setenv("RECON_PACS_CA_BUNDLE", str(https_orthanc.ca_file))
    with open_client(resolve_config()) as client:
        out = pull_study(client, find_study(client, uploaded[0]), tmp_path / "over-tls")
    assert len(list(out.rglob("*.dcm"))) == len(uploaded[1])
