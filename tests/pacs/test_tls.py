"""TLS on a real Orthanc: DIMSE over DICOM TLS and DICOMweb over HTTPS, each verified against the
CA the user configures (config file or ``RECON_PACS_CA_BUNDLE``); a wrong CA is one clear line."""

from __future__ import annotations

import stat
from pathlib import Path

import pydicom
import pytest

from pipelines import cli, pacs, reconstruct_dir, simulate
from recon.io.pacs import PacsRefused, PacsUnreachable, find_study, open_client, pull_study, push_files, resolve_config
from tests.pacs.conftest import PASSWORD, SCU_AET, USER, Certificates, Orthanc, make_study


@pytest.fixture
def dicom_tls(dicom_tls_orthanc: tuple[Orthanc, Certificates], isolated_env: Path,
              monkeypatch: pytest.MonkeyPatch) -> tuple[Orthanc, Certificates]:
    """The DICOM TLS server, emptied, configured through a config file (TLS on, our CA)."""
    server, certs = dicom_tls_orthanc
    server.clear()
    config = isolated_env / "config" / "recon" / "pacs.toml"
    config.parent.mkdir(parents=True, exist_ok=True)
    config.write_text(f'[pacs]\ndimse = "{server.dimse}"\ntls = true\nca_bundle = "{certs.ca}"\n'
                      f'calling_aet = "{SCU_AET}"\ntimeout = 10\n')
    config.chmod(stat.S_IRUSR | stat.S_IWUSR)
    return server, certs


def _one_line(err: BaseException) -> str:
    text = str(err)
    assert "\n" not in text
    return text


def test_dimse_tls_push_find_pull_verified_against_the_configured_ca(dicom_tls: tuple[Orthanc, Certificates],
                                                                    tmp_path: Path) -> None:
    server, _ = dicom_tls
    files = make_study(tmp_path / "source", n=2, size=64)
    study_uid = str(pydicom.dcmread(files[0], stop_before_pixels=True).StudyInstanceUID)
    config = resolve_config()
    assert config.tls and config.protocol == "dimse"
    with open_client(config) as client:
        pushed = push_files(client, [files[0].parent])
        assert pushed.sent == 2 and pushed.study_uid == study_uid
        study = find_study(client, study_uid)
        out = pull_study(client, study, tmp_path / "pulled")
    assert len(list(out.rglob("*.dcm"))) == 2
    assert server.count_instances() == 2  # stored over TLS, as the server's REST API confirms


def test_dimse_tls_with_a_wrong_ca_is_one_clear_line(dicom_tls: tuple[Orthanc, Certificates],
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    _, certs = dicom_tls
    monkeypatch.setenv("RECON_PACS_CA_BUNDLE", str(certs.other_ca))  # the environment wins over the file
    with open_client(resolve_config()) as client, pytest.raises(PacsRefused) as err:
        client.find_studies({"StudyInstanceUID": "1.2.3"})
    line = _one_line(err.value)
    assert "TLS failed" in line and "certificate verify failed" in line and "ca_bundle" in line


def test_dimse_tls_errors_through_the_command(dicom_tls: tuple[Orthanc, Certificates], monkeypatch: pytest.MonkeyPatch,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    _, certs = dicom_tls
    monkeypatch.setattr(cli, "SUBCOMMAND_MODULES", (reconstruct_dir, simulate, pacs))
    monkeypatch.setenv("RECON_PACS_CA_BUNDLE", str(certs.other_ca))
    assert cli.main(["pacs", "find", "--modality", "CT"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "TLS failed" in err
    monkeypatch.setenv("RECON_PACS_TLS", "false")  # plain DIMSE to a TLS-only port
    assert cli.main(["pacs", "find", "--modality", "CT"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "cannot connect" in err


def test_dimse_tls_to_a_plain_port_is_one_clear_line(orthanc: Orthanc, dicom_tls: tuple[Orthanc, Certificates],
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RECON_PACS_DIMSE", orthanc.dimse)  # the plain server, with tls = true from the file
    with open_client(resolve_config()) as client, pytest.raises(PacsRefused) as err:
        client.find_studies({"StudyInstanceUID": "1.2.3"})
    assert "does the server speak DICOM TLS" in _one_line(err.value)


def test_a_ca_bundle_that_is_no_certificate_is_refused(dicom_tls: tuple[Orthanc, Certificates],
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    _, certs = dicom_tls
    monkeypatch.setenv("RECON_PACS_CA_BUNDLE", str(certs.key.with_name("san.cnf")))
    with open_client(resolve_config()) as client, pytest.raises(Exception) as err:
        client.find_studies({"StudyInstanceUID": "1.2.3"})
    assert "holds no PEM certificate" in _one_line(err.value)


def test_native_https_verified_against_the_configured_ca(native_https_orthanc: tuple[Orthanc, Certificates],
                                                         isolated_env: Path, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    server, certs = native_https_orthanc
    server.clear()
    for name, value in (("URL", server.dicomweb), ("USERNAME", USER), ("PASSWORD", PASSWORD), ("TIMEOUT", "10")):
        monkeypatch.setenv(f"RECON_PACS_{name}", value)
    files = make_study(tmp_path / "source", n=2, size=64)
    monkeypatch.setenv("RECON_PACS_CA_BUNDLE", str(certs.other_ca))
    with open_client(resolve_config()) as client, pytest.raises((PacsRefused, PacsUnreachable)) as err:
        push_files(client, [files[0].parent])
    assert "TLS failed" in _one_line(err.value)
    monkeypatch.setenv("RECON_PACS_CA_BUNDLE", str(certs.ca))
    with open_client(resolve_config()) as client:
        assert push_files(client, [files[0].parent]).sent == 2
