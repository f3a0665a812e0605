"""Typicality of a reconstruction's input and output under its prior, for the report and a warning.

Every ``recon reconstruct`` with a prior scores, per slice, the classical image the sampler started
from (is the measured anatomy like the prior's training data?) and the result (did the sampler
land on a typical image?) with :func:`priors.typicality.score_images` against the reference
statistics shipped with the prior. Slices flagged out of distribution are named in a warning, in
``report.json`` and in the DICOM provenance, so nobody reads a flagged reconstruction unaware.
"""

from __future__ import annotations

import sys
from typing import Any

import numpy as np

from priors.errors import PriorError
from priors.typicality import load_reference, score_images

__all__ = ["TURNED_OFF", "TURNED_OFF_WARNING", "clinical_prior_warning", "flagged_warnings", "provenance_summary",
           "typicality_report", "warn_flagged"]

#: The report's ``typicality`` when the check is turned off, and the warning that says so.
TURNED_OFF = {"available": False, "reason": "turned off (--no-typicality)"}
TURNED_OFF_WARNING = ("typicality check turned off (--no-typicality): no slice was screened for being out of the "
                      "prior's distribution")


def typicality_report(prior: Any, prior_name: str, images: dict[str, np.ndarray | None],
                      slice_names: list[str], *, progress: bool = False) -> dict[str, Any]:
    """``{"method", "unit", "level", "flagged", "slices": [{"slice", <kind>: {score, p_value, flag}}]}``.

    ``images``: ``{"start": [n, H, W] or None, "result": [n, H, W]}`` in the prior's physical units;
    ``progress``: a bar on stderr (two scores per slice are a few seconds each on a CPU).
    A prior without reference statistics gives ``{"available": False, "reason": ...}``.
    """
    from tqdm import tqdm

    try:
        reference = load_reference(prior_name)
    except PriorError as e:
        return {"available": False, "reason": str(e)}
    todo = {kind: imgs for kind, imgs in images.items() if imgs is not None}
    with tqdm(total=sum(len(v) for v in todo.values()), unit="slice", desc="typicality", disable=not progress) as bar:
        scored = {kind: score_images(prior, imgs, reference, progress=bar.update) for kind, imgs in todo.items()}
    first = next(iter(scored.values()))
    rows = []
    for i, name in enumerate(slice_names):
        row: dict[str, Any] = {"slice": name}
        for kind, s in scored.items():
            row[kind] = {"score": float(s.score[i]), "p_value": float(s.p_value[i]), "flag": bool(s.flag[i])}
        rows.append(row)
    flagged = {kind: [slice_names[i] for i in s.flagged()] for kind, s in scored.items()}
    return {"available": True, "method": first.method, "unit": first.unit, "level": first.level,
            "flagged": flagged, "slices": rows}


def flagged_warnings(report: dict[str, Any]) -> list[str]:
    """One warning text per scored image kind with flagged slices (empty when none or not scored)."""
    if not report.get("available"):
        return []
    lines = []
    for kind, names in report["flagged"].items():
        if names:
            what = "classical start image" if kind == "start" else "reconstruction"
            lines.append(f"{len(names)} slice(s) OUT OF DISTRIBUTION for the prior ({what}): "
                         f"{', '.join(names)}; see report.json 'typicality'")
    return lines


def warn_flagged(report: dict[str, Any]) -> None:
    """One warning line per scored image kind with flagged slices (to stderr)."""
    for line in flagged_warnings(report):
        print(f"recon: warning: {line}", file=sys.stderr)


def clinical_prior_warning(prior: Any, prior_name: str, hu_calibrated: bool, units: str) -> str | None:
    """The warning for a clinical prior applied to CT data that are not HU-calibrated, or None.

    A prior whose normalisation is in HU (the bundled ``ct`` prior) learnt patient anatomy in
    Hounsfield units of water-calibrated clinical scanners; on attenuation of another scale (a
    laboratory or synchrotron source, ``units`` ``per_pixel``) its normalisation maps the data onto
    the wrong part of its range, and the result is a guess from the wrong distribution.
    """
    normalization = getattr(prior, "normalization", None)
    if hu_calibrated or getattr(normalization, "unit", None) != "HU":
        return None
    return (f"the clinical CT prior '{prior_name}' (trained on HU-calibrated patient scans) is applied to data "
            f"that are not HU-calibrated (units {units}); the result is in attenuation units and is not a "
            "clinical image")


def provenance_summary(report: dict[str, Any]) -> str | None:
    """``"2/48 flagged"`` for the result's slices, or None when not scored."""
    if not report.get("available"):
        return None
    names = report["flagged"].get("result", [])
    return f"{len(names)}/{len(report['slices'])} flagged"
