"""Matplotlib figures of the dose-reduction benchmark: quality against dose, and image panels.

Everything renders off-screen (Agg) and is written atomically (temporary name, then rename), so a
report directory never holds a half-written figure. Colours are fixed per method (in the order
methods are given) so that the PSNR plot, the SSIM plot and the panels of one report agree.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from recon.io.atomic import atomic_path

__all__ = [
    "CT_DISPLAY_WINDOW",
    "method_colors",
    "dose_plot",
    "setting_panel",
    "display_range",
]

#: Soft-tissue display window (centre, width) in HU for CT panels: streaks and noise, the artefacts
#: that dose reduction causes, are visible there, while the metric window ([-1000, 1000] HU) would
#: hide them.
CT_DISPLAY_WINDOW: tuple[float, float] = (40.0, 400.0)
#: Full scale of the CT error maps in HU (|x - ref| is shown from 0 to this).
CT_ERROR_FULL_SCALE_HU = 200.0
#: Full scale of the MR error maps in units of the reference's 99.9th percentile.
MR_ERROR_FULL_SCALE = 0.25
#: Full scale of the MR images in units of the reference's 99.9th percentile.
MR_PERCENTILE = 99.9

_LINESTYLES = ("-", "--", ":", "-.")
_MARKERS = ("o", "s", "^", "D", "v", "P", "X")


def pyplot():
    """pyplot on the Agg backend (no display needed; safe in CI and on servers)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def method_colors(methods: Sequence[str]) -> dict[str, Any]:
    """A fixed colour per method, in the order given (tab10, then tab20 beyond ten methods)."""
    plt = pyplot()
    cmap = plt.get_cmap("tab10" if len(methods) <= 10 else "tab20")
    return {m: cmap(i % cmap.N) for i, m in enumerate(methods)}


def _save(fig: Any, stem: Path, formats: Sequence[str], dpi: int) -> list[Path]:
    paths = []
    for fmt in formats:
        path = stem.parent / f"{stem.name}.{fmt}"
        with atomic_path(path) as tmp:
            # an explicit format: the temporary name has no usable suffix
            fig.savefig(tmp, format=fmt, dpi=dpi, bbox_inches="tight", metadata=_metadata(fmt))
        paths.append(path)
    return paths


def save_png(fig: Any, path: Path, dpi: int) -> Path:
    """Write ``fig`` as a PNG atomically and close it."""
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=dpi, metadata=_metadata("png"))
    pyplot().close(fig)
    return path


def _metadata(fmt: str) -> dict[str, Any] | None:
    # No creation dates in the files: the same results give byte-identical figures.
    if fmt == "svg":
        return {"Date": None}
    if fmt == "png":
        return {"Software": None}
    return None


def dose_plot(
    rows: Sequence[Mapping[str, Any]],
    metric: str,
    stem: str | Path,
    *,
    methods: Sequence[str],
    group_key: str,
    group_label: str,
    ylabel: str,
    levels: Sequence[float] = (),
    title: str = "",
    xlabel: str = "relative dose (fraction of the full-dose reference, log scale)",
    formats: Sequence[str] = ("png", "svg"),
    dpi: int = 110,
) -> list[Path]:
    """Plot ``metric`` (mean with a +-1 std bar over slices) against relative dose, one colour per method.

    Points of one method that share ``group_key`` (CT: the photon fraction; MR: the mask kind) are
    joined by a line, so a 2-D grid of settings (views x photons) reads as one curve per photon
    level rather than a zig-zag; line style and marker tell the groups apart.

    Args:
        rows: result rows with ``method``, ``relative_dose``, ``group_key``, ``{metric}_mean`` and
            ``{metric}_std``.
        metric: ``"psnr"`` or ``"ssim"`` (any key with ``_mean``/``_std`` columns works).
        stem: output path without suffix; one file per format is written.
        methods: methods in display order (sets the colours).
        group_key: row key that defines the lines within one method.
        group_label: legend title for the groups (e.g. ``"photons"``).
        ylabel: y-axis label.
        levels: quality levels drawn as dotted horizontal lines (the summary table's thresholds).
        title: figure title.
        xlabel: x-axis label.
        formats: file formats, ``("png", "svg")`` by default.
        dpi: raster resolution.

    Returns:
        The written paths, in ``formats`` order.
    """
    plt = pyplot()
    from matplotlib.lines import Line2D

    stem = Path(stem)
    colors = method_colors(methods)
    groups = sorted({r[group_key] for r in rows}, key=_sort_key, reverse=True)
    styles = {g: (_LINESTYLES[i % len(_LINESTYLES)], _MARKERS[i % len(_MARKERS)]) for i, g in enumerate(groups)}
    fig, ax = plt.subplots(figsize=(7.0, 4.6))
    # Methods share the x positions; a small multiplicative offset per method keeps their error
    # bars from hiding each other (a few percent on the log axis, far below the grid spacing).
    dodge = {m: 1.0 + 0.025 * (i - (len(methods) - 1) / 2) for i, m in enumerate(methods)}
    for m in methods:
        for g in groups:
            pts = sorted(
                (r for r in rows if r["method"] == m and r[group_key] == g and _finite(r.get(f"{metric}_mean"))),
                key=lambda r: r["relative_dose"],
            )
            if not pts:
                continue
            x = [r["relative_dose"] * dodge[m] for r in pts]
            y = [r[f"{metric}_mean"] for r in pts]
            e = [r.get(f"{metric}_std") or 0.0 for r in pts]
            ls, mk = styles[g]
            ax.errorbar(x, y, yerr=e, color=colors[m], linestyle=ls, marker=mk, markersize=5, capsize=2.5,
                        linewidth=1.4, elinewidth=0.8)
    for lv in levels:
        ax.axhline(lv, color="0.55", linestyle=":", linewidth=0.9, zorder=0)
    ax.set_xscale("log")
    doses = [r["relative_dose"] for r in rows if r.get("relative_dose")]
    if doses:
        # a span of at least a factor of 4, so that a single dose (or a narrow grid)
        # still gets readable 1-2-5 ticks instead of a zoomed-in axis
        lo, hi = min(doses), max(doses)
        pad = max(1.25, (4.0 * lo / hi) ** 0.5) if hi > 0 else 1.25
        ax.set_xlim(lo / pad, hi * pad)
    # ticks at 1-2-5 steps labelled as percentages: "2%" reads better than "2 x 10^-2"
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    ax.xaxis.set_major_locator(LogLocator(base=10.0, subs=(1.0, 2.0, 5.0)))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _pos: f"{100 * v:.3g}%"))
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    ax.grid(True, which="both", alpha=0.25)
    handles = [Line2D([], [], color=colors[m], marker="o", linestyle="-", label=m) for m in methods]
    legend = ax.legend(handles=handles, title="method", loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=9)
    if len(groups) > 1:
        ax.add_artist(legend)
        ghandles = [Line2D([], [], color="0.3", linestyle=styles[g][0], marker=styles[g][1], label=_group_text(g))
                    for g in groups]
        ax.legend(handles=ghandles, title=group_label, loc="lower left", bbox_to_anchor=(1.01, 0.0), fontsize=9)
    paths = _save(fig, stem, formats, dpi)
    plt.close(fig)
    return paths


def _sort_key(v: Any) -> tuple[int, Any]:
    return (0, float(v)) if isinstance(v, (int, float)) else (1, str(v))


def _group_text(g: Any) -> str:
    if isinstance(g, float):
        return f"{g:g}"
    return str(g)


def _finite(v: Any) -> bool:
    return isinstance(v, (int, float)) and np.isfinite(v)


def display_range(reference: np.ndarray, modality: str) -> tuple[float, float]:
    """Grey-scale range of a panel: the soft-tissue window for CT, ``[0, p99.9]`` of the reference for MR,
    ``[p0.5, p99.5]`` of the data for ``"attenuation"`` (CT data that are not HU-calibrated)."""
    if modality == "ct":
        c, w = CT_DISPLAY_WINDOW
        return c - w / 2, c + w / 2
    if modality == "attenuation":
        lo, hi = (float(v) for v in np.percentile(reference, [0.5, 99.5]))
        return lo, hi if hi > lo else lo + 1.0
    hi = float(np.percentile(np.abs(reference), MR_PERCENTILE))
    return 0.0, hi if hi > 0 else 1.0


def setting_panel(
    path: str | Path,
    reference: np.ndarray,
    images: Mapping[str, np.ndarray],
    *,
    modality: str,
    stds: Mapping[str, np.ndarray | None] | None = None,
    captions: Mapping[str, str] | None = None,
    title: str = "",
    dpi: int = 80,
) -> Path:
    """One PNG comparing the methods of one setting on one slice.

    Row 1: the reference and each method's reconstruction (same grey scale). Row 2: absolute error
    ``|x - ref|`` (CT: 0-200 HU; MR: 0-0.25 of the reference's 99.9th percentile). Row 3, only when
    some method has one: the pixel-wise posterior std over samples on the error maps' scale, so
    the predicted uncertainty can be compared with the actual error.

    Args:
        path: the PNG to write.
        reference: ``[H, W]`` reference (HU or magnitude).
        images: ``{method: [H, W]}`` reconstructions in the reference's units.
        modality: ``"ct"`` or ``"mr"``.
        stds: ``{method: [H, W] or None}`` posterior std maps.
        captions: ``{method: text}`` under each method's name (e.g. the slice's PSNR/SSIM).
        title: figure title.
        dpi: raster resolution.

    Returns:
        ``path``.
    """
    plt = pyplot()
    path = Path(path)
    stds = {m: s for m, s in (stds or {}).items() if s is not None}
    methods = list(images)
    cols = 1 + len(methods)
    rows = 3 if stds else 2
    vmin, vmax = display_range(reference, modality)
    if modality == "ct":
        err_scale = CT_ERROR_FULL_SCALE_HU
    else:
        # MR in units of the reference's 99.9th percentile (the metrics' normalisation), so the
        # colour bar reads as a fraction of the image's bright level
        reference = reference / vmax
        images = {m: im / vmax for m, im in images.items()}
        stds = {m: sd / vmax for m, sd in stds.items()}
        vmin, vmax, err_scale = 0.0, 1.0, MR_ERROR_FULL_SCALE
    # constrained layout: the shared colour bar takes its space without overlapping the images
    fig, axes = plt.subplots(rows, cols, figsize=(2.6 * cols + 0.6, 2.75 * rows), squeeze=False, layout="constrained")
    axes[0, 0].imshow(reference, cmap="gray", vmin=vmin, vmax=vmax)
    axes[0, 0].set_title("reference", fontsize=9)
    for r in range(1, rows):
        axes[r, 0].set_visible(False)
    err_im = std_im = None
    for c, m in enumerate(methods, start=1):
        img = images[m]
        axes[0, c].imshow(img, cmap="gray", vmin=vmin, vmax=vmax)
        cap = (captions or {}).get(m, "")
        axes[0, c].set_title(m + ("\n" + cap if cap else ""), fontsize=9)
        err_im = axes[1, c].imshow(np.abs(img - reference), cmap="inferno", vmin=0.0, vmax=err_scale)
        axes[1, c].set_title(f"|error| ({m})", fontsize=8)
        if rows == 3:
            if m in stds:
                std_im = axes[2, c].imshow(stds[m], cmap="inferno", vmin=0.0, vmax=err_scale)
                axes[2, c].set_title(f"posterior std ({m})", fontsize=8)
            else:
                axes[2, c].set_visible(False)
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
    if title:
        fig.suptitle(title, fontsize=10)
    scale_text = "HU" if modality == "ct" else "fraction of reference p99.9"
    if err_im is not None:
        cb = fig.colorbar(err_im, ax=axes[1:, :], fraction=0.03, pad=0.01, shrink=0.9)
        cb.set_label(f"|error|{', std' if std_im is not None else ''} ({scale_text})", fontsize=8)
        cb.ax.tick_params(labelsize=7)
    return save_png(fig, path, dpi)
