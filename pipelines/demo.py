"""``recon demo``: the whole product in one command, on the sample study shipped in ``data/``.

Simulates a sparse-view, reduced-dose CT acquisition from the bundled sample series, reconstructs it
with FBP, TV and the bundled CT prior (DDS), writes each result as a DICOM series and a side-by-side
PNG with PSNR/SSIM against the full-dose reference.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from pipelines.sampler_options import add_estimator_arguments
from priors.precision import add_precision_argument
from priors.registry import bundled_data_dir
from recon.errors import InputError

SAMPLE_SERIES = ("sample", "ct")
DEMO_METHODS = ("fbp", "tv", "dds")


def sample_study_dir() -> Path:
    """The bundled sample CT series (inside the installed package or the source tree)."""
    path = bundled_data_dir().joinpath(*SAMPLE_SERIES)
    if not path.is_dir():
        raise InputError(path, "the bundled sample study is missing from this installation")
    return path


def run_demo(out: Path, *, views: int, dose: float, nfe: int | None, overwrite: bool, device: str, progress: bool,
             precision: str = "auto", samples: int | None = None) -> dict:
    from pipelines.reconstruct_dir import reconstruct_directory
    from pipelines.simulate import CTSimulation, write_ct_study
    from recon.io.atomic import ensure_output_dir
    from recon.io.dicom_read import read_series

    out = ensure_output_dir(out, overwrite=overwrite, resume=not overwrite)
    source = sample_study_dir()
    series = read_series(source)
    study = out / "measurements"
    if not (study / "geometry.json").is_file():
        write_ct_study(series, CTSimulation(views=views, dose=dose, size=256, seed=0), study, source)
    print(f"simulated {series.n_slices} slices: {views} views at {dose:g} x full-dose photons -> {study}")
    reports = {}
    reconstructed = False  # whether any method ran now: only then is the comparison stale
    for method in DEMO_METHODS:
        t0 = time.perf_counter()
        target = out / method
        if (target / "report.json").is_file() and not overwrite:
            reports[method] = json.loads((target / "report.json").read_text())
        else:
            kwargs = ({"method": None, "sampler": "dds", "nfe": nfe, "samples": samples, "precision": precision}
                      if method == "dds"
                      else {"method": method})
            reports[method] = reconstruct_directory(
                study, target, overwrite=overwrite, device=device, progress=progress, **kwargs
            )
            reconstructed = True
        r = reports[method]
        print(f"{method:>4}: PSNR {r.get('mean_psnr', float('nan')):6.2f} dB  SSIM {r.get('mean_ssim', float('nan')):.3f}"
              f"  ({time.perf_counter() - t0:5.1f} s)  DICOM -> {target / 'dicom'}")
    panel = out / "comparison.png"
    if reconstructed or not panel.is_file():
        _comparison_png(panel, study, out, reports)
    print(f"side-by-side comparison -> {panel}")
    return reports


def _comparison_png(path: Path, study: Path, out: Path, reports: dict) -> None:
    from pipelines.plots import pyplot, save_png

    plt = pyplot()

    truth = np.load(study / "ground_truth.npy")
    n = truth.shape[0]
    rows = min(n, 2)
    cols = 1 + len(reports)
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 3.4 * rows), squeeze=False)
    vmin, vmax = -160.0, 240.0  # soft-tissue window, HU
    for r in range(rows):
        axes[r, 0].imshow(truth[r], cmap="gray", vmin=vmin, vmax=vmax)
        axes[r, 0].set_title("full-dose reference")
        for c, (method, rep) in enumerate(reports.items(), start=1):
            img = np.load(out / method / ".slices" / f"slice_{r:04d}.npz")["mean"]
            row = rep["slices"][r]
            axes[r, c].imshow(img, cmap="gray", vmin=vmin, vmax=vmax)
            psnr, ssim = row.get("psnr", float("nan")), row.get("ssim", float("nan"))
            axes[r, c].set_title(f"{method.upper()}  {psnr:.1f} dB / {ssim:.3f}")
    for ax in axes.ravel():
        ax.axis("off")
    fig.tight_layout()
    save_png(fig, path, dpi=90)


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "demo",
        help="simulate and reconstruct the bundled sample study (FBP, TV, diffusion prior)",
        description="Simulate a sparse-view low-dose CT study from the bundled sample and reconstruct it three ways.",
    )
    p.add_argument("--out", type=Path, default=Path("recon-demo"), help="output directory (default ./recon-demo)")
    p.add_argument("--views", type=int, default=32)
    p.add_argument("--dose", type=float, default=0.25, help="photon fraction of the full dose")
    add_estimator_arguments(p, "posterior samples averaged per slice")
    p.add_argument("--device", default="auto")
    add_precision_argument(p)
    p.add_argument("--overwrite", action="store_true")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    run_demo(args.out, views=args.views, dose=args.dose, nfe=args.nfe, samples=args.samples, overwrite=args.overwrite,
             device=args.device, progress=not args.no_progress, precision=args.precision)
    return 0
