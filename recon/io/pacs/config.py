"""Which PACS to talk to, and how: resolved from the environment and a config file.

The server is, in order of precedence:

1. ``server`` given by the caller (``recon pacs --pacs``): a DICOMweb base URL or ``host:port:AET``;
2. ``RECON_PACS_URL``: a DICOMweb base URL, e.g. ``http://localhost:8042/dicom-web``;
3. ``RECON_PACS_DIMSE``: ``host:port:AET`` of a DIMSE (C-FIND / C-MOVE / C-GET / C-STORE) service;
4. the ``[pacs]`` table of the config file: ``RECON_PACS_CONFIG``, else
   ``$XDG_CONFIG_HOME/recon/pacs.toml`` (default ``~/.config/recon/pacs.toml``)::

       [pacs]
       url = "https://pacs.example.org/dicom-web"   # or: dimse = "pacs.example.org:11112:PACS"
       username = "reader"                            # DICOMweb basic auth (or ~/.netrc)
       password = "..."                               # only in a file readable by you alone
       ca_bundle = "/etc/ssl/certs/hospital-ca.pem"   # TLS trust for https:// and DIMSE TLS
       calling_aet = "RECON"                          # our AE title (DIMSE)
       retrieve = "move"                              # DIMSE retrieval: "get" (C-GET) or "move" (C-MOVE)
       move_port = 11113                              # where our storage SCP listens for C-MOVE
       tls = false                                    # DIMSE over TLS
       timeout = 30                                   # seconds per network operation

Every setting except the server may also come from ``RECON_PACS_<NAME>`` (``RECON_PACS_USERNAME``,
``RECON_PACS_PASSWORD``, ``RECON_PACS_CALLING_AET``, ``RECON_PACS_RETRIEVE``,
``RECON_PACS_MOVE_PORT``, ``RECON_PACS_CA_BUNDLE``, ``RECON_PACS_TLS``, ``RECON_PACS_TIMEOUT``),
which wins over the file. Credentials are never taken from the command line: a ``--pacs`` URL with
``user:password@`` is refused. Without a username, DICOMweb requests use ``~/.netrc`` when it has
an entry for the host. A config file holding a password must not be readable by group or others.
"""

from __future__ import annotations

import os
import re
import stat
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from recon.errors import InputError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

__all__ = ["PacsConfig", "resolve_config", "config_file_path", "user_config_dir", "ENV_URL", "ENV_DIMSE", "ENV_CONFIG"]

ENV_URL = "RECON_PACS_URL"
ENV_DIMSE = "RECON_PACS_DIMSE"
ENV_CONFIG = "RECON_PACS_CONFIG"
_ENV_PREFIX = "RECON_PACS_"
_SETTINGS = ("username", "password", "ca_bundle", "calling_aet", "retrieve", "move_port", "tls", "timeout")
_AET = re.compile(r"^[\x20-\x7e]{1,16}$")
DEFAULT_CALLING_AET = "RECON"
DEFAULT_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class PacsConfig:
    """A resolved PACS connection. ``protocol`` is ``"dicomweb"`` (``url``) or ``"dimse"`` (``host``,
    ``port``, ``called_aet``); credentials are kept out of ``repr`` and :attr:`server`."""

    protocol: str
    url: str | None = None
    host: str | None = None
    port: int | None = None
    called_aet: str | None = None
    calling_aet: str = DEFAULT_CALLING_AET
    retrieve: str = "get"
    move_port: int | None = None
    username: str | None = field(default=None, repr=False)
    password: str | None = field(default=None, repr=False)
    ca_bundle: Path | None = None
    tls: bool = False
    timeout: float = DEFAULT_TIMEOUT_S

    @property
    def server(self) -> str:
        """The server as shown in messages: the URL without credentials, or ``host:port:AET``."""
        if self.protocol == "dicomweb":
            return str(self.url)
        return f"{self.host}:{self.port}:{self.called_aet}"


def user_config_dir(env: Mapping[str, str] | None = None) -> Path:
    """``$XDG_CONFIG_HOME/recon`` (default ``~/.config/recon``): the PACS config and the de-identification key."""
    env = os.environ if env is None else env
    base = Path(env["XDG_CONFIG_HOME"]) if env.get("XDG_CONFIG_HOME") else Path.home() / ".config"
    return base / "recon"


def config_file_path(env: Mapping[str, str] | None = None) -> Path:
    """The config file consulted: ``RECON_PACS_CONFIG``, else ``$XDG_CONFIG_HOME/recon/pacs.toml``."""
    env = os.environ if env is None else env
    if env.get(ENV_CONFIG):
        return Path(env[ENV_CONFIG]).expanduser()
    return user_config_dir(env) / "pacs.toml"


def resolve_config(server: str | None = None, env: Mapping[str, str] | None = None) -> PacsConfig:
    """The PACS to use (see the module docstring for the order); :class:`InputError` if none or malformed."""
    env = os.environ if env is None else env
    path = config_file_path(env)
    table = _read_file(path, required=bool(env.get(ENV_CONFIG)))
    settings: dict[str, Any] = {k: table[k] for k in _SETTINGS if k in table}
    for key in _SETTINGS:
        if env.get(_ENV_PREFIX + key.upper()):
            settings[key] = env[_ENV_PREFIX + key.upper()]
    if server is not None:
        if urlsplit(server).password is not None or "@" in urlsplit(server).netloc:
            raise InputError(None, "--pacs must not carry credentials; set RECON_PACS_USERNAME/RECON_PACS_PASSWORD, "
                                   "the config file or ~/.netrc")
        where = "--pacs"
        base = _parse_server(server, where)
    elif env.get(ENV_URL):
        where = ENV_URL
        base = _parse_url(env[ENV_URL], where)
    elif env.get(ENV_DIMSE):
        where = ENV_DIMSE
        base = _parse_dimse(env[ENV_DIMSE], where)
    elif "url" in table or "dimse" in table:
        where = str(path)
        base = _parse_url(str(table["url"]), where) if "url" in table else _parse_dimse(str(table["dimse"]), where)
    else:
        raise InputError(None, f"no PACS configured: set {ENV_URL} (a DICOMweb base URL) or {ENV_DIMSE} "
                               f"(host:port:AET), or write {path}")
    # credentials embedded in an environment or file URL become the defaults, never part of the name
    for key in ("username", "password"):
        if base.get(key) and key not in settings:
            settings[key] = base[key]
        base.pop(key, None)
    return _build(base, settings, where)


def _read_file(path: Path, *, required: bool) -> dict[str, Any]:
    if not path.is_file():
        if required:
            raise InputError(path, f"PACS config file not found ({ENV_CONFIG} names it)")
        return {}
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as e:
        raise InputError(path, f"unreadable PACS config file ({e})") from None
    table = data.get("pacs", data)
    if not isinstance(table, dict):
        raise InputError(path, "the [pacs] entry must be a table")
    if table.get("password") and path.stat().st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise InputError(path, "holds a password but is readable by group or others; run chmod 600 on it")
    return table


def _parse_server(text: str, where: str) -> dict[str, Any]:
    if "://" in text:
        return _parse_url(text, where)
    return _parse_dimse(text, where)


def _parse_url(text: str, where: str) -> dict[str, Any]:
    parts = urlsplit(text.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InputError(None, f"{where}: expected a DICOMweb base URL such as http://localhost:8042/dicom-web")
    netloc = parts.hostname if parts.port is None else f"{parts.hostname}:{parts.port}"
    if ":" in (parts.hostname or ""):
        netloc = f"[{parts.hostname}]" + ("" if parts.port is None else f":{parts.port}")
    url = urlunsplit((parts.scheme, netloc, parts.path.rstrip("/"), "", ""))
    return {"protocol": "dicomweb", "url": url, "username": parts.username, "password": parts.password}


def _parse_dimse(text: str, where: str) -> dict[str, Any]:
    host, sep, rest = text.strip().rpartition(":")
    # host:port:AET; the AE title itself has no colon, the host may (IPv6 in brackets)
    host, sep2, port = host.rpartition(":")
    aet = rest.strip()
    host = host.strip("[]")
    if not (sep and sep2 and host and port.isdigit() and _AET.match(aet) and 0 < int(port) < 65536):
        raise InputError(None, f"{where}: expected host:port:AET, e.g. pacs.example.org:11112:PACS")
    return {"protocol": "dimse", "host": host, "port": int(port), "called_aet": aet}


def _build(base: dict[str, Any], settings: dict[str, Any], where: str) -> PacsConfig:
    kwargs: dict[str, Any] = dict(base)
    try:
        if settings.get("username"):
            kwargs["username"] = str(settings["username"])
        if settings.get("password"):
            kwargs["password"] = str(settings["password"])
        if settings.get("ca_bundle"):
            kwargs["ca_bundle"] = Path(str(settings["ca_bundle"])).expanduser()
        if settings.get("calling_aet"):
            kwargs["calling_aet"] = str(settings["calling_aet"])
        if "timeout" in settings:
            kwargs["timeout"] = float(settings["timeout"])
        if "tls" in settings:
            kwargs["tls"] = _bool(settings["tls"])
        if settings.get("move_port") not in (None, ""):
            kwargs["move_port"] = int(settings["move_port"])
        retrieve = str(settings.get("retrieve") or ("move" if kwargs.get("move_port") else "get")).lower()
    except (TypeError, ValueError) as e:
        raise InputError(None, f"PACS settings from {where} and {_ENV_PREFIX}*: {e}") from None
    if retrieve not in ("get", "move"):
        raise InputError(None, f"PACS retrieve is {retrieve!r}; expected 'get' (C-GET) or 'move' (C-MOVE)")
    if retrieve == "move" and not kwargs.get("move_port"):
        raise InputError(None, "PACS retrieve 'move' needs move_port (RECON_PACS_MOVE_PORT): the port our storage SCP "
                               "listens on, registered on the PACS under our AE title")
    if not _AET.match(kwargs.get("calling_aet", DEFAULT_CALLING_AET)):
        raise InputError(None, "PACS calling_aet must be 1-16 printable ASCII characters")
    if kwargs.get("ca_bundle") is not None and not kwargs["ca_bundle"].is_file():
        raise InputError(kwargs["ca_bundle"], "PACS CA bundle not found")
    if not kwargs.get("timeout", DEFAULT_TIMEOUT_S) > 0:
        raise InputError(None, "PACS timeout must be positive (seconds)")
    kwargs["retrieve"] = retrieve
    return PacsConfig(**kwargs)


def _bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off", ""):
        return False
    raise ValueError(f"expected true or false, got {value!r}")
