"""``recon benchmark``: the subcommand's arguments, and the run that prints the headlines.

``--push`` is refused: a benchmark's outputs are a report (metrics, plots, image panels), not DICOM
series. Its images are a few slices per volume (``--max-slices``), on the grid ``--size``, for every
setting x method of the grid (tens of them), possibly from several studies; filed into a patient's
study they would be clutter, not something to read. The images of one chosen setting go to the PACS
with ``recon simulate ... --push`` (the simulated acquisition) and ``recon reconstruct ... --push``.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from pipelines.benchmark.grid import DEFAULT_CT_METHODS, DEFAULT_MR_METHODS, DEFAULT_PSNR_LEVELS, DEFAULT_SSIM_LEVELS
from pipelines.benchmark.layout import HTML_FILE
from pipelines.benchmark.runner import run_benchmark
from pipelines.pacs_options import add_pacs_options, resolve_input
from pipelines.sampler_options import add_estimator_arguments, add_set_argument, parse_options
from pipelines.simulate import FULL_DOSE_I0
from priors.precision import add_precision_argument
from recon.errors import InputError

__all__ = ["register", "run"]


def _floats(text: str) -> list[float]:
    """``"1,0.25"`` -> ``[1.0, 0.25]``."""
    try:
        return [float(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None


def _ints(text: str) -> list[int]:
    """``"8,16"`` -> ``[8, 16]``."""
    try:
        return [int(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None


def _names(text: str) -> list[str]:
    """``"FBP, tv"`` -> ``["fbp", "tv"]``."""
    return [t.strip().lower() for t in text.split(",") if t.strip()]


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``benchmark`` subcommand."""
    p = subparsers.add_parser(
        "benchmark",
        help="dose / scan-time reduction benchmark of several methods, with plots and an HTML report",
        description=(
            "Simulate reduced-dose CT (views x photons) or undersampled MR (acceleration x mask) from DICOM "
            "series (MR: also NIfTI volumes), reconstruct with every method, and report PSNR/SSIM against "
            "relative dose: results.csv/json, plots, image panels and a self-contained report.html. "
            "Resumable: rerun the same command after an interruption."
        ),
    )
    p.add_argument("inputs", nargs="*", type=Path, metavar="INPUT",
                   help="DICOM series directory (MR: also a NIfTI volume or a directory of them); or --from-pacs STUDY")
    p.add_argument("--modality", choices=("ct", "mr"), required=True)
    p.add_argument("--out", type=Path, required=True, help="report directory")
    p.add_argument("--methods", type=_names, default=None,
                   help=f"comma-separated (default CT: {DEFAULT_CT_METHODS}; MR: {DEFAULT_MR_METHODS})")
    ct = p.add_argument_group("CT")
    ct.add_argument("--views", type=_ints, default=[8, 16, 32, 64, 128], help="projection views (default 8,16,32,64,128)")
    ct.add_argument("--dose", type=_floats, default=[1.0, 0.5, 0.25, 0.1],
                    help="photon fractions of the full-dose I0 (default 1,0.5,0.25,0.1)")
    ct.add_argument("--geometry", choices=("parallel", "fan"), default="parallel")
    ct.add_argument("--i0", type=float, default=FULL_DOSE_I0,
                    help=f"full-dose photons per detector element (default {FULL_DOSE_I0:g})")
    mr = p.add_argument_group("MR")
    mr.add_argument("--accel", type=_floats, default=[4.0, 8.0, 12.0], help="accelerations (default 4,8,12)")
    mr.add_argument("--mask", type=_names, default=["equispaced", "poisson"], help="mask kinds (default equispaced,poisson)")
    mr.add_argument("--center-fraction", type=float, default=0.08, help="fully sampled centre fraction (default 0.08)")
    mr.add_argument("--coils", type=int, default=1, help="simulated receive coils (default 1)")
    g = p.add_argument_group("slices and reconstruction")
    g.add_argument("--slices", default="all", help="per volume: 'all', 'start:stop[:step]' or '10,20,30' (default all)")
    g.add_argument("--max-slices", type=int, default=8,
                   help="at most this many slices per volume, evenly spread over the selection; 0 = no limit (default 8)")
    g.add_argument("--size", type=int, default=256, help="reconstruction grid, pixels per side (default 256)")
    add_estimator_arguments(g, "posterior samples averaged per slice; > 1 adds std maps")
    g.add_argument("--prior", default="auto", help="bundled prior name or checkpoint directory (default: by modality)")
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--device", default="auto", help="auto, cpu or cuda[:N]")
    add_precision_argument(g)
    add_set_argument(g)
    g.add_argument("--batch", type=int, default=4,
                   help="slices a classical method reconstructs together (samplers: one slice per call, own seed; default 4)")
    r = p.add_argument_group("report")
    r.add_argument("--psnr-levels", type=_floats, default=list(DEFAULT_PSNR_LEVELS),
                   help="PSNR levels (dB) of the summary table (default 30,35)")
    r.add_argument("--ssim-levels", type=_floats, default=list(DEFAULT_SSIM_LEVELS),
                   help="SSIM levels of the summary table (default 0.8,0.9)")
    c = p.add_argument_group("Dask cluster (one task per setting; the report directory must be shared)")
    where = c.add_mutually_exclusive_group()
    where.add_argument("--workers", type=int, default=None, metavar="N",
                       help="run the settings on a local cluster of N worker processes")
    where.add_argument("--scheduler", default=None, metavar="ADDRESS",
                       help="run the settings on an existing Dask cluster (tcp://HOST:PORT); see docs/cluster.md")
    p.add_argument("--overwrite", action="store_true", help="replace a report directory that holds another benchmark")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_pacs_options(p)
    p.set_defaults(func=run)


PUSH_REFUSED = ("--push: recon benchmark writes a report (metrics, plots, panels of a few slices per setting), not "
                "DICOM series; push one setting's images with 'recon simulate --push' and 'recon reconstruct --push'")


def run(args: argparse.Namespace) -> int:
    """Run ``recon benchmark`` from parsed arguments; prints the headline and the report path."""
    if args.push:
        raise InputError(None, PUSH_REFUSED)
    methods = args.methods or _names(DEFAULT_CT_METHODS if args.modality == "ct" else DEFAULT_MR_METHODS)
    t0 = time.perf_counter()
    inputs = list(args.inputs)
    if args.from_pacs is not None or args.deidentify or not inputs:
        inputs.append(resolve_input(args, None))
    result = run_benchmark(
        inputs, args.out, modality=args.modality, methods=methods, views=args.views, doses=args.dose,
        accels=args.accel, masks=args.mask, geometry=args.geometry, i0=args.i0,
        center_fraction=args.center_fraction, coils=args.coils, nfe=args.nfe, samples=args.samples, seed=args.seed,
        prior=args.prior, device=args.device, precision=args.precision, options=parse_options(args.options),
        slices=args.slices, max_slices=args.max_slices, size=args.size,
        batch=args.batch, psnr_levels=args.psnr_levels, ssim_levels=args.ssim_levels, overwrite=args.overwrite,
        progress=not args.no_progress, workers=args.workers, scheduler=args.scheduler,
        threads=getattr(args, "threads", None) if (args.workers or args.scheduler) else None,
    )
    for line in result["headlines"]:
        print(line)
    print(f"benchmark: {len(result['rows'])} cells in {time.perf_counter() - t0:.1f} s -> {Path(args.out) / HTML_FILE}")
    return 0
