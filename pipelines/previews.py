"""The ``preview.png`` of a reconstruction: what a reader looks at before opening the DICOM.

Slice-wise studies show a few evenly spread slices (and their posterior std); volumes show the
axial, coronal and sagittal reformats through the centre of the stack, the reconstruction beside
the classical image the sampler started from, with the slice spacing setting the aspect, so
slice-to-slice flicker is as visible as it would be in a viewer. Titles carry slice numbers and
method names only, never patient identifiers.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pipelines.plots import display_range, pyplot, save_png

__all__ = ["slice_preview", "volume_preview"]


def slice_preview(path: Path, mean: np.ndarray, std: np.ndarray | None, modality: str) -> Path:
    """Up to four evenly spread slices of ``mean [n, H, W]`` (and ``std``, same shape) in one PNG.

    ``modality``: ``"ct"`` (HU, soft-tissue window), ``"mr"`` (magnitude) or ``"attenuation"``
    (uncalibrated CT, windowed from the data): :func:`pipelines.plots.display_range`.
    """
    plt = pyplot()
    n = mean.shape[0]
    picks = sorted(set(np.linspace(0, n - 1, min(4, n)).round().astype(int).tolist()))
    rows = 2 if std is not None else 1
    fig, axes = plt.subplots(rows, len(picks), figsize=(3 * len(picks), 3 * rows), squeeze=False)
    vmin, vmax = display_range(mean, modality)
    for col, i in enumerate(picks):
        axes[0, col].imshow(mean[i], cmap="gray", vmin=vmin, vmax=vmax)
        axes[0, col].set_title(f"slice {i}")
        if std is not None:
            axes[1, col].imshow(std[i], cmap="magma")
            axes[1, col].set_title("posterior std")
    for ax in axes.ravel():
        ax.axis("off")
    fig.tight_layout()
    return save_png(fig, path, dpi=80)


def reformats(volume: np.ndarray) -> dict[str, np.ndarray]:
    """Axial, coronal and sagittal planes through the centre of ``volume [n, H, W]`` (z first):
    ``{"axial": [H, W], "coronal": [n, W], "sagittal": [n, H]}``, head-first slices at the top."""
    n, h, w = volume.shape
    return {"axial": volume[n // 2], "coronal": volume[:, h // 2, :], "sagittal": volume[:, :, w // 2]}


def volume_preview(
    path: Path,
    rows: dict[str, np.ndarray],
    modality: str,
    *,
    slice_spacing_mm: float,
    pixel_spacing_mm: float,
) -> Path:
    """One row of reformats (:func:`reformats`) per entry of ``rows`` (label -> ``[n, H, W]``), on
    one grey scale; reformats are stretched by ``slice_spacing_mm / pixel_spacing_mm`` along z."""
    plt = pyplot()
    labels = list(rows)
    vmin, vmax = display_range(next(iter(rows.values())), modality)
    aspect = float(slice_spacing_mm) / float(pixel_spacing_mm)
    fig, axes = plt.subplots(len(labels), 3, figsize=(9, 3 * len(labels)), squeeze=False)
    for r, label in enumerate(labels):
        for c, (plane, image) in enumerate(reformats(rows[label]).items()):
            ax = axes[r, c]
            ax.imshow(image, cmap="gray", vmin=vmin, vmax=vmax, aspect=1.0 if plane == "axial" else aspect)
            ax.set_title(f"{label}: {plane}")
            ax.axis("off")
    fig.tight_layout()
    return save_png(fig, path, dpi=80)
