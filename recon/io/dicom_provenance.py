"""How a derived series says where it came from: software version, SeriesDescription, derivation text.

SeriesDescription (at most 64 characters) names method, prior, sampler, NFE, seed and version;
the full provenance goes to DerivationDescription and, as JSON, to ImageComments. All text is
kept to the default character repertoire (printable ASCII), so no Specific Character Set is needed.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from importlib import metadata
from pathlib import Path
from typing import Any

_PROVENANCE_ORDER = ("method", "prior", "sampler", "nfe", "seed", "version")


def software_version() -> str:
    """Installed version of the distribution, or ``"unknown"`` when running from a source tree."""
    try:
        return metadata.version("recon-diffusion")
    except metadata.PackageNotFoundError:
        return "unknown"


def ascii_text(text: str) -> str:
    """``text`` with anything outside printable ASCII replaced by ``?`` and ``\\`` (the DICOM value separator) by ``/``."""
    # Default character repertoire: descriptions must not force a Specific Character Set.
    return re.sub(r"[^\x20-\x7e]", "?", text).replace("\\", "/")


def provenance_description(extra: Mapping[str, Any] | None, max_len: int = 64) -> str:
    """A SeriesDescription (<= ``max_len`` chars) naming method, prior, sampler, NFE, seed, version.

    Example: ``"dds prior=ct sampler=dds nfe=50 seed=0 v0.1.0"``. Long values (a prior given as
    a path) are shortened to their last path component, then cut; the full provenance goes to
    DerivationDescription and ImageComments.
    """
    extra = dict(extra or {})
    parts: list[str] = []
    for key in _PROVENANCE_ORDER:
        if extra.get(key) in (None, ""):
            continue
        val = str(extra[key])
        if key == "prior":
            val = Path(val).name or val
        val = val[:20]
        parts.append(val if key == "method" else (f"v{val}" if key == "version" else f"{key}={val}"))
    text = " ".join(parts) or "reconstruction"
    return ascii_text(text)[:max_len]


def derivation_text(extra: Mapping[str, Any] | None) -> str:
    """DerivationDescription (<= 1024 chars): every non-empty provenance item as ``key=value``."""
    items = [f"{k}={v}" for k, v in (extra or {}).items() if v not in (None, "")]
    return ascii_text("Reconstructed from reduced measurements by recon" + (": " + "; ".join(items) if items else ""))[:1024]


def provenance_json(extra: Mapping[str, Any]) -> str:
    """ImageComments (<= 10240 chars): the full provenance as JSON with sorted keys."""
    return ascii_text(json.dumps(dict(extra), sort_keys=True, default=str))[:10240]
