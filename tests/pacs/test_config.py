"""Which PACS: environment, config file, precedence, credentials kept off the command line (no server)."""

from __future__ import annotations

from pathlib import Path

import pytest

from recon.errors import InputError
from recon.io.pacs import resolve_config


def test_dicomweb_url_from_the_environment_keeps_credentials_out_of_the_name(isolated_env: Path,
                                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RECON_PACS_URL", "https://reader:s3cret@pacs.example.org:8443/dicom-web/")
    cfg = resolve_config()
    assert (cfg.protocol, cfg.url, cfg.username, cfg.password) == (
        "dicomweb", "https://pacs.example.org:8443/dicom-web", "reader", "s3cret")
    assert "s3cret" not in cfg.server and "s3cret" not in repr(cfg)


def test_dimse_and_precedence(isolated_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RECON_PACS_DIMSE", "pacs.example.org:11112:HOSPACS")
    cfg = resolve_config()
    assert (cfg.protocol, cfg.host, cfg.port, cfg.called_aet, cfg.retrieve) == ("dimse", "pacs.example.org", 11112,
                                                                               "HOSPACS", "get")
    monkeypatch.setenv("RECON_PACS_URL", "http://localhost:8042/dicom-web")
    assert resolve_config().protocol == "dicomweb"  # the URL wins over DIMSE
    assert resolve_config("other.example.org:104:OTHER").host == "other.example.org"  # --pacs wins over both


def test_config_file_with_settings_and_environment_overrides(isolated_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = isolated_env / "config" / "recon" / "pacs.toml"
    path.parent.mkdir(parents=True)
    path.write_text('[pacs]\ndimse = "10.1.2.3:104:MAIN"\ncalling_aet = "RECONWS"\nretrieve = "move"\nmove_port = 11113\n'
                    'timeout = 5\n')
    cfg = resolve_config()
    assert (cfg.host, cfg.calling_aet, cfg.retrieve, cfg.move_port, cfg.timeout) == ("10.1.2.3", "RECONWS", "move", 11113, 5)
    monkeypatch.setenv("RECON_PACS_CALLING_AET", "FROMENV")
    assert resolve_config().calling_aet == "FROMENV"


def test_a_password_in_a_readable_config_file_is_refused(isolated_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = isolated_env / "pacs.toml"
    path.write_text('[pacs]\nurl = "https://pacs.example.org/dicom-web"\nusername = "u"\npassword = "p"\n')
    path.chmod(0o644)
    monkeypatch.setenv("RECON_PACS_CONFIG", str(path))
    with pytest.raises(InputError, match="chmod 600"):
        resolve_config()
    path.chmod(0o600)
    assert resolve_config().password == "p"


@pytest.mark.parametrize(("server", "match"), [
    ("https://u:p@pacs.example.org/dicom-web", "must not carry credentials"),
    ("pacs.example.org:104", "host:port:AET"),
    ("ftp://pacs.example.org/", "DICOMweb base URL"),
])
def test_bad_servers_are_one_line_errors(server: str, match: str, isolated_env: Path) -> None:
    with pytest.raises(InputError, match=match) as err:
        resolve_config(server)
    assert "\n" not in str(err.value)


def test_nothing_configured_says_how(isolated_env: Path) -> None:
    with pytest.raises(InputError, match="RECON_PACS_URL"):
        resolve_config()


def test_move_needs_a_port(isolated_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RECON_PACS_DIMSE", "localhost:4242:ORTHANC")
    monkeypatch.setenv("RECON_PACS_RETRIEVE", "move")
    with pytest.raises(InputError, match="move_port"):
        resolve_config()
