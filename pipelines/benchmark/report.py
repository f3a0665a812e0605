"""The benchmark's report: ``results.csv``, ``results.json``, plots, image panels and ``report.html``.

Everything here is derived from the finished cells in ``cells/``; writing it again (say with other
quality levels) recomputes nothing.
"""

from __future__ import annotations

import csv
import io
import json
import math
import platform
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pipelines import plots
from pipelines.benchmark.grid import BenchmarkConfig, Setting, percent
from pipelines.benchmark.layout import (
    CELLS_DIR,
    CSV_FILE,
    HTML_FILE,
    JSON_FILE,
    PANELS_DIR,
    PLOTS_DIR,
    REFERENCE_FILE,
    cell_paths,
)
from pipelines.benchmark.summary import cell_row, headlines, level_name, metric_text, result_columns, summarize
from pipelines.benchmark.volumes import Volume
from pipelines.report_html import ReportContent, write_report
from pipelines.simulate import FULL_VIEWS
from recon.io.atomic import atomic_write_json, atomic_write_text

__all__ = ["write_outputs"]


def _write_csv(path: Path, rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> None:
    """``rows`` as CSV (floats in full precision, None as empty), written atomically."""
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(columns), extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: ("" if r.get(k) is None else (repr(r[k]) if isinstance(r[k], float) else r[k])) for k in columns})
    atomic_write_text(path, buf.getvalue())


def _versions(device: Any) -> dict[str, str]:
    """The software the figures were computed with (all of it required by the package)."""
    import astra
    import matplotlib
    import nibabel
    import pydicom
    import scipy
    import skimage

    from recon.io.dicom_provenance import software_version

    v = {"recon": software_version(), "python": platform.python_version(), "platform": platform.platform()}
    for name, mod in (("torch", torch), ("numpy", np), ("scipy", scipy), ("skimage", skimage), ("astra", astra),
                      ("pydicom", pydicom), ("nibabel", nibabel), ("matplotlib", matplotlib)):
        v[name] = str(getattr(mod, "__version__", "unknown"))
    v["device"] = str(device)
    v["torch threads"] = str(torch.get_num_threads())
    return v


def write_outputs(out: Path, cfg: BenchmarkConfig, settings: Sequence[Setting], volumes: Sequence[Volume],
                  psnr_levels: Sequence[float], ssim_levels: Sequence[float], device: Any,
                  wall_seconds: float) -> dict[str, Any]:
    """Write every report file from the finished cells of ``settings`` x ``cfg.methods``.

    Returns the contents of ``results.json``.
    """
    modality = cfg.modality
    cells = {}
    for s in settings:
        for m in cfg.methods:
            js, _ = cell_paths(out, s, m)
            cells[(s.key, m)] = json.loads(js.read_text())
    rows = [cell_row(cells[(s.key, m)], modality) for s in settings for m in cfg.methods]
    columns = result_columns(modality)
    summary = summarize(rows, cfg.methods, psnr_levels, ssim_levels)
    heads = headlines(summary, modality)
    compute = sum(c["cell_seconds"] for c in cells.values())
    compute += sum(max(cells[(s.key, m)]["simulation_seconds"] for m in cfg.methods) for s in settings)
    versions = _versions(device)
    _write_csv(out / CSV_FILE, rows, columns)

    # plots
    (out / PLOTS_DIR).mkdir(exist_ok=True)
    prow = [dict(r, group=(r["photons"] if modality == "ct" else r["mask"])) for r in rows]
    group_label = "photon fraction" if modality == "ct" else "mask"
    dose_name = "dose" if modality == "ct" else "scan time"
    xlabel = ("relative dose (views / full-dose views x photon fraction, log scale)" if modality == "ct"
              else "relative scan time (1 / acceleration, log scale)")
    psnr_plot = plots.dose_plot(prow, "psnr", out / PLOTS_DIR / "psnr_vs_dose", methods=cfg.methods,
                                group_key="group", group_label=group_label, ylabel="PSNR (dB)",
                                levels=psnr_levels, title=f"PSNR against relative {dose_name}", xlabel=xlabel)
    ssim_plot = plots.dose_plot(prow, "ssim", out / PLOTS_DIR / "ssim_vs_dose", methods=cfg.methods,
                                group_key="group", group_label=group_label, ylabel="SSIM",
                                levels=ssim_levels, title=f"SSIM against relative {dose_name}", xlabel=xlabel)

    # panels: the middle slice of the pooled selection, the same slice for every setting
    (out / PANELS_DIR).mkdir(exist_ok=True)
    ref_all = np.load(out / CELLS_DIR / REFERENCE_FILE)["reference"]
    j = ref_all.shape[0] // 2
    labels = [(v.name, i) for v in volumes for i in v.slice_indices]
    panels = []
    for s in sorted(settings, key=lambda s: -s.relative_dose):
        images, stds, caps = {}, {}, {}
        for m in cfg.methods:
            _, npz = cell_paths(out, s, m)
            with np.load(npz) as z:
                images[m] = z["mean"][j]
                stds[m] = z["std"][j] if "std" in z.files else None
            sl = cells[(s.key, m)]["slices"][j]
            psnr = sl.get("psnr")
            caps[m] = (f"{psnr:.2f} dB / {sl['ssim']:.3f}" if psnr is not None else f"exact / {sl['ssim']:.3f}")
        title = f"{s.label} (relative {dose_name} {percent(s.relative_dose)}); {labels[j][0]} slice {labels[j][1]}"
        p = plots.setting_panel(out / PANELS_DIR / f"{s.key}.png", ref_all[j], images, modality=modality,
                                stds=stds, captions=caps, title=title)
        panels.append((p, f"{s.label}: relative {dose_name} {percent(s.relative_dose)}; slice PSNR / SSIM under each method"))

    result = {
        "config": cfg.to_dict(),
        "thresholds": {"psnr": list(psnr_levels), "ssim": list(ssim_levels)},
        "rows": rows,
        "summary": summary,
        "headlines": heads,
        "versions": versions,
        "compute_seconds": compute,
        "wall_seconds_this_run": wall_seconds,
        "outputs": {"csv": CSV_FILE, "plots": [str(p.relative_to(out)) for p in psnr_plot + ssim_plot],
                    "panels": [str(p.relative_to(out)) for p, _ in panels], "html": HTML_FILE},
    }
    atomic_write_json(out / JSON_FILE, _finite_json(result))

    # HTML
    level_cols = [("psnr", lv) for lv in psnr_levels] + [("ssim", lv) for lv in ssim_levels]
    srows = []
    for s in summary:
        row: list[str | None] = [s["method"]]
        for metric, lv in level_cols:
            e = next(e for e in s["levels"] if e["metric"] == metric and e["level"] == float(lv))
            row.append(None if e["relative_dose"] is None
                       else f"{percent(e['relative_dose'])} ({e['label']}; {metric_text(metric, e['value'])})")
        srows.append(row)
    n_slices = sum(v.n_slices for v in volumes)
    header = [
        ("modality", modality.upper()),
        ("inputs", "; ".join(f"{v.name} ({v.kind}, {v.n_slices} of {v.n_available} slices: "
                             f"{_index_text(v.slice_indices)})" for v in volumes)),
        ("slices", f"{n_slices} in total, reconstruction grid {cfg.size} x {cfg.size}"),
    ]
    if modality == "ct":
        header += [
            ("views", ", ".join(str(v) for v in cfg.views)),
            ("photon fractions", ", ".join(f"{d:g}" for d in cfg.doses)),
            ("full-dose reference", f"{FULL_VIEWS[cfg.geometry]} {cfg.geometry}-beam views at I0 = {cfg.i0:g} photons "
                                    "per detector element"),
        ]
    else:
        header += [
            ("accelerations", ", ".join(f"{a:g}" for a in cfg.accels)),
            ("masks", ", ".join(cfg.masks) + f" (centre fraction {cfg.center_fraction:g}, {cfg.coils} coil(s))"),
        ]
    header += [
        ("methods", ", ".join(cfg.methods)),
        ("sampler settings", f"NFE {cfg.nfe}, {cfg.samples} sample(s) per slice, prior {cfg.prior or '-'}"),
        ("seed", str(cfg.seed)),
        ("compute time", f"{compute:.1f} s (simulation and reconstruction of all cells; this invocation "
                         f"{wall_seconds:.1f} s wall)"),
        ("generated", time.strftime("%Y-%m-%d %H:%M:%S")),
    ]
    if modality == "ct":
        notes = [
            "Relative dose = views / full-dose views x photon fraction (Poisson transmission noise at I0 x photon "
            "fraction). Quality: PSNR, SSIM and RMSE in HU on the window [-1000, 1000] HU (data range 2000), "
            "mean over slices; the table gives the lowest dose at which the mean reaches each level.",
        ]
    else:
        notes = [
            "Relative scan time = 1 / acceleration (nominal; the achieved sampled fraction is in the results "
            "table). Quality: PSNR and SSIM on magnitude normalised to the reference's 99.9th percentile "
            "(data range 1), mean over slices; the table gives the lowest scan-time fraction at which the mean "
            "reaches each level.",
        ]
    content = ReportContent(
        title=f"Dose-reduction benchmark ({modality.upper()})",
        subtitle=f"{len(settings)} settings x {len(cfg.methods)} methods on {n_slices} slices",
        header=header,
        versions=list(versions.items()),
        headlines=heads,
        summary_columns=["method"] + [f"lowest {dose_name} for {level_name(m, lv)}" for m, lv in level_cols],
        summary_rows=srows,
        plots=[(psnr_plot[0], f"PSNR against relative {dose_name} (mean +- std over slices)"),
               (ssim_plot[0], f"SSIM against relative {dose_name} (mean +- std over slices)")],
        panels=panels,
        result_columns=columns,
        result_rows=rows,
        notes=notes,
    )
    write_report(out / HTML_FILE, content)
    return result


def _index_text(idx: Sequence[int]) -> str:
    """Slice indices for the report header, the middle elided past eight."""
    if len(idx) <= 8:
        return ",".join(str(i) for i in idx)
    return ",".join(str(i) for i in idx[:4]) + ",...," + ",".join(str(i) for i in idx[-2:])


def _finite_json(obj: Any) -> Any:
    """``obj`` with inf/NaN floats as None, which JSON can hold."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _finite_json(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite_json(v) for v in obj]
    return obj
