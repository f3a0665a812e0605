"""The benchmark's tables: one row per cell, and per method the lowest dose that reaches each level.

A row holds the mean and population std over slices of each metric; the summary gives, per method
and quality level, the lowest relative dose (CT) or scan-time fraction (MR) at which the method's
mean reaches the level, and the headlines say it in one sentence per method.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = ["cell_row", "result_columns", "summarize", "headlines", "level_name", "metric_text"]


def cell_row(cell: dict[str, Any], modality: str) -> dict[str, Any]:
    """The results row of one cell's JSON (:func:`result_columns` names its columns)."""
    s = cell["setting"]
    sl = cell["slices"]

    def stat(key: str) -> tuple[float | None, float | None]:
        vals = [r[key] for r in sl if r.get(key) is not None]
        if not vals:
            return None, None
        a = np.asarray(vals, dtype=np.float64)
        return float(a.mean()), float(a.std())  # population std over slices (ddof=0)

    row: dict[str, Any] = {"setting": s["key"], "label": s["label"]}
    if modality == "ct":
        row.update(views=s["views"], photons=s["photons"])
    else:
        row.update(accel=s["accel"], mask=s["mask"],
                   sampled_fraction=cell.get("simulation", {}).get("sampled_fraction"))
    row.update(relative_dose=s["relative_dose"], method=cell["method"], n_slices=len(sl))
    for key in ("psnr", "ssim"):
        row[f"{key}_mean"], row[f"{key}_std"] = stat(key)
    rkey = "rmse_hu" if modality == "ct" else "rmse"
    row[f"{rkey}_mean"], row[f"{rkey}_std"] = stat("rmse")
    row["nfe"] = cell["nfe"]
    row["samples"] = cell["samples"]
    row["seconds_per_slice_mean"], row["seconds_per_slice_std"] = stat("seconds")
    row["residual_mean"], _ = stat("residual")
    row["seed"] = cell["seed"]
    return row


def result_columns(modality: str) -> list[str]:
    """The columns of ``results.csv``, in order (RMSE in HU for CT)."""
    axes = ["views", "photons"] if modality == "ct" else ["accel", "mask", "sampled_fraction"]
    rkey = "rmse_hu" if modality == "ct" else "rmse"
    return (["setting", "label", *axes, "relative_dose", "method", "n_slices", "psnr_mean", "psnr_std",
             "ssim_mean", "ssim_std", f"{rkey}_mean", f"{rkey}_std", "nfe", "samples", "seconds_per_slice_mean",
             "seconds_per_slice_std", "residual_mean", "seed"])


def summarize(rows: Sequence[dict[str, Any]], methods: Sequence[str], psnr_levels: Sequence[float],
              ssim_levels: Sequence[float]) -> list[dict[str, Any]]:
    """Per method and quality level, the lowest relative dose whose mean quality reaches the level.

    Returns one dict per method: ``{"method", "levels": [{"metric", "level", "relative_dose",
    "setting", "label", "value"} ...], "best": {metric: (value, relative_dose, label)}}`` with
    ``relative_dose`` None when no setting reaches the level. Ties in dose go to the better value.
    """
    out = []
    for m in methods:
        mrows = [r for r in rows if r["method"] == m]
        levels = []
        best: dict[str, Any] = {}
        for metric, lvls in (("psnr", psnr_levels), ("ssim", ssim_levels)):
            vals = [r for r in mrows if r.get(f"{metric}_mean") is not None]
            if vals:
                b = max(vals, key=lambda r: (r[f"{metric}_mean"], -r["relative_dose"]))
                best[metric] = {"value": b[f"{metric}_mean"], "relative_dose": b["relative_dose"], "label": b["label"]}
            for lv in lvls:
                ok = [r for r in vals if r[f"{metric}_mean"] >= lv]
                entry: dict[str, Any] = {"metric": metric, "level": float(lv), "relative_dose": None}
                if ok:
                    r = min(ok, key=lambda r: (r["relative_dose"], -r[f"{metric}_mean"]))
                    entry.update(relative_dose=r["relative_dose"], setting=r["setting"], label=r["label"],
                                 value=r[f"{metric}_mean"])
                levels.append(entry)
        out.append({"method": m, "levels": levels, "best": best})
    return out


def level_name(metric: str, level: float) -> str:
    """``"PSNR >= 30 dB"`` / ``"SSIM >= 0.8"``."""
    return f"PSNR >= {level:g} dB" if metric == "psnr" else f"SSIM >= {level:g}"


def headlines(summary: Sequence[dict[str, Any]], modality: str) -> list[str]:
    """One sentence per method: the strictest PSNR and SSIM levels it reaches and at which dose, or
    its best value where it reaches none."""
    dose_word = "of the full dose" if modality == "ct" else "of the full scan time"
    lines = []
    for s in summary:
        reached, missed = [], []
        for metric in ("psnr", "ssim"):
            hits = [e for e in s["levels"] if e["metric"] == metric and e["relative_dose"] is not None]
            if hits:
                e = max(hits, key=lambda e: e["level"])
                reached.append(f"{level_name(metric, e['level'])} at {100 * e['relative_dose']:.3g}% {dose_word} "
                               f"({e['label']}: {metric_text(metric, e['value'])})")
            elif metric in s["best"]:
                b = s["best"][metric]
                lowest = min((e["level"] for e in s["levels"] if e["metric"] == metric), default=None)
                if lowest is not None:
                    missed.append(f"{level_name(metric, lowest)} (best {metric_text(metric, b['value'])} at "
                                  f"{100 * b['relative_dose']:.3g}%, {b['label']})")
        parts = []
        if reached:
            parts.append("reaches " + " and ".join(reached))
        if missed:
            parts.append("does not reach " + " or ".join(missed))
        if parts:
            lines.append(f"{s['method']} " + "; ".join(parts) + ".")
    return lines


def metric_text(metric: str, v: float) -> str:
    """A PSNR in dB with two decimals, an SSIM with three."""
    return f"{v:.2f} dB" if metric == "psnr" else f"{v:.3f}"
