"""JSON sidecars of measurement directories (``geometry.json``, ``kspace.json``): parsing, identity, reference.

A sidecar may carry an inline ``identity`` (DICOM keyword -> string) and a ``reference``: a path,
relative to the directory, to the DICOM series the measurements belong to or to an identity JSON.
Writers store that reference relative to the directory when they can.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from recon.errors import InputError

log = logging.getLogger(__name__)


def load_json(path: Path, what: str = "JSON file") -> Any:
    """Parse a JSON file; InputError with the line and column of a syntax error."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError(path, f"missing {what}") from None
    except (OSError, UnicodeDecodeError) as e:
        raise InputError(path, f"cannot read {what} ({e})") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise InputError(path, f"invalid JSON at line {e.lineno} column {e.colno}: {e.msg}") from None


def load_json_object(path: Path, what: str) -> dict[str, Any]:
    """:func:`load_json` for a file that must hold one JSON object (a sidecar)."""
    loaded = load_json(path, what)
    if not isinstance(loaded, dict):
        raise InputError(path, f"expected a JSON object, got {type(loaded).__name__}")
    return loaded


def identity_and_reference(root: Path, sidecar: Mapping[str, Any], spath: Path) -> tuple[dict[str, str] | None, Path | None]:
    """Patient/study identity and reference DICOM directory named by a sidecar.

    ``identity`` is an inline object of DICOM keyword -> string; ``reference`` a path (relative to
    ``root``) to the DICOM series the measurements belong to, or to an identity JSON whose fields
    fill in what the inline identity lacks. A reference that no longer exists is reported and
    ignored, so a study stays readable after its source series was moved.
    """
    identity: dict[str, str] | None = None
    reference: Path | None = None
    if sidecar.get("identity") is not None:
        if not isinstance(sidecar["identity"], dict):
            raise InputError(spath, "field 'identity' must be an object of DICOM keyword -> string")
        identity = {str(k): str(v) for k, v in sidecar["identity"].items()}
    ref = sidecar.get("reference")
    if ref is not None:
        if not isinstance(ref, str):
            raise InputError(spath, "field 'reference' must be a path (DICOM directory or identity .json)")
        rpath = (root / ref).resolve() if not Path(ref).is_absolute() else Path(ref)
        if not rpath.exists():
            log.warning("%s: reference '%s' does not exist; writing derived series without it", spath, ref)
        elif rpath.is_file() and rpath.suffix.lower() == ".json":
            ident = load_json(rpath, "identity JSON")
            if not isinstance(ident, dict):
                raise InputError(rpath, "identity JSON must be an object of DICOM keyword -> string")
            identity = {**{str(k): str(v) for k, v in ident.items()}, **(identity or {})}
        else:
            reference = rpath
    return identity, reference


def reference_text(reference: str | Path, root: Path) -> str:
    """How a sidecar in ``root`` stores ``reference``: relative to ``root``, else absolute (another drive)."""
    try:
        return os.path.relpath(Path(reference).resolve(), root.resolve())
    except ValueError:
        return str(Path(reference).resolve())
