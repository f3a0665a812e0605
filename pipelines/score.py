"""``recon score``: how typical is each slice of an image series under a prior?

::

    recon score DICOM_DIR --prior ct [--out report.json]          # NIfTI, .npy, .png inputs too
    recon score --fit-reference benchmarks/validation/ct.json --prior ct

Each slice gets a score, a p-value against the prior's reference statistics (high = typical) and
``in distribution`` / ``OUT OF DISTRIBUTION`` (p-value below the level, 0.01), one line per slice
on stdout; ``--out`` writes the same as JSON (``slices``: ``index``, ``score``, ``p_value``,
``flag``). The default score is the multiscale score statistic (MSMA, Mahmood et al. 2021);
``--method ode`` uses probability-flow ODE bits/dim (Song et al. 2021), some 40 times slower. See
``docs/typicality.md``.

Inputs are read as for ``recon train`` (:func:`pipelines.training_data.load_training_slices`):
DICOM series of ``--modality`` (default: the prior's) in physical units, NIfTI volumes (non-empty
slices only: indices count those), ``.npy`` stacks and ``.png`` images. Slice indices follow the
series order; nothing that identifies a patient is printed or written.

``--fit-reference DATA...`` fits the reference statistics on held-out slices (files, folders, or a
validation manifest, whose ``holdout_files`` are used) and writes ``typicality.json`` into the
prior's directory (a bundled name: its data folder).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from pipelines.training_data import load_training_slices
from pipelines.validate import load_manifest
from priors.checkpoint import read_config
from priors.registry import load_prior
from priors.typicality import (
    DEFAULT_ODE_STEPS,
    METHODS,
    REFERENCE_FILE,
    TypicalityScores,
    fit_reference,
    load_reference,
    prior_directory,
    save_reference,
    score_images,
)
from recon.errors import InputError
from recon.io.atomic import atomic_write_json

__all__ = ["register", "run", "score_input", "fit_input", "report"]


def _progress_bar(total: int, enabled: bool, desc: str):
    from tqdm import tqdm

    return tqdm(total=total, unit="slice", desc=desc, disable=not enabled, file=sys.stderr)


def _data_modality(prior_modality: str, modality: str | None) -> str:
    mod = modality or prior_modality
    if mod not in ("ct", "mr"):
        raise InputError(None, "the prior models any modality: say which the input is with --modality ct|mr")
    return mod


def report(scores: TypicalityScores, prior: str) -> dict[str, Any]:
    """The ``--out`` JSON: per slice ``index``, ``score``, ``p_value``, ``flag`` (True = out of distribution)."""
    return {"prior": prior, "method": scores.method, "unit": scores.unit, "level": scores.level,
            "n_slices": len(scores), "n_flagged": len(scores.flagged()), "flagged": scores.flagged(),
            "slices": scores.rows()}


def score_input(input_path: Path, prior_spec: str, *, method: str | None = None, level: float | None = None,
                modality: str | None = None, device: str = "auto", batch: int = 4,
                progress: bool = True) -> TypicalityScores:
    """Score every slice of ``input_path`` under the prior ``prior_spec`` (bundled name or directory)."""
    prior = load_prior(prior_spec, device)
    reference = load_reference(prior_spec)
    data = load_training_slices([input_path], _data_modality(prior.modality, modality))
    with _progress_bar(len(data), progress, "score") as bar:
        return score_images(prior, data.slices, reference, method=method, level=level, batch_size=batch,
                            progress=bar.update)


def _fit_inputs(data: list[Path]) -> tuple[list[Path], dict[str, Any]]:
    """Paths to read and what the reference file says about them: a manifest's name, description
    and sources; for plain paths their number only (folder names may be patient identifiers)."""
    paths: list[Path] = []
    info: dict[str, Any] = {}
    for p in data:
        if p.suffix.lower() == ".json" and p.is_file():
            m = load_manifest(p)
            if not m.holdout_files:
                raise InputError(p, "the manifest lists no 'holdout_files'")
            paths += [m.root / f for f in m.holdout_files]
            info.setdefault("manifests", []).append(
                {"manifest": p.name, "description": m.description,
                 "sources": sorted({str(i.get("source", "")) for i in m.inputs} - {""})})
        else:
            paths.append(p)
            info["n_other_inputs"] = info.get("n_other_inputs", 0) + 1
    return paths, info


def fit_input(data: list[Path], prior_spec: str, *, methods: list[str], ode_steps: int = DEFAULT_ODE_STEPS,
              seed: int = 0, modality: str | None = None, device: str = "auto", batch: int = 4,
              stride: int = 1, overwrite: bool = False, progress: bool = True) -> Path:
    """Fit reference statistics of ``prior_spec`` on ``data``; write ``typicality.json`` beside its weights.

    ``stride`` keeps every ``stride``-th slice in reading order: neighbouring slices of a volume are
    nearly the same image, so a thinned reference costs a fraction and loses little."""
    directory = prior_directory(prior_spec)
    target = directory / REFERENCE_FILE
    if target.exists() and not overwrite:
        raise InputError(target, "exists; use --overwrite to replace it")
    prior = load_prior(prior_spec, device)
    paths, info = _fit_inputs(data)
    slices = load_training_slices(paths, _data_modality(prior.modality, modality))
    if stride > 1:
        slices = slices.subset(range(0, len(slices), stride))
        info["slice_stride"] = stride
    sha = (read_config(directory).get("weights") or {}).get("sha256")
    with _progress_bar(len(slices) * len(methods), progress, "fit reference") as bar:
        ref = fit_reference(prior, slices.slices, slices.patient_ids, methods=methods, ode_steps=ode_steps, seed=seed,
                            batch_size=batch, progress=bar.update, prior_info={"weights_sha256": sha},
                            data_info=info)
    return save_reference(ref, target)


def _methods(text: str) -> list[str]:
    out = [m.strip() for m in text.split(",") if m.strip()]
    bad = [m for m in out if m not in METHODS]
    if bad or not out:
        raise InputError(None, f"--method {text!r}: choose from {', '.join(METHODS)} (comma-separated to fit several)")
    return out


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "score",
        help="per-slice typicality of a series under a prior: score, p-value, out-of-distribution flag",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("input", nargs="?", type=Path, help="DICOM series folder, NIfTI volume, .npy stack or .png image")
    p.add_argument("--prior", required=True, help="bundled prior name (ct, mr) or checkpoint directory")
    p.add_argument("--out", type=Path, default=None, help="write the per-slice report as JSON")
    p.add_argument("--method", default=None,
                   help="msma (default: multiscale score statistic) or ode (probability-flow ODE bits/dim); "
                        "with --fit-reference a comma-separated list (default msma)")
    p.add_argument("--level", type=float, default=None,
                   help="flag slices with a p-value below this (default: the reference's, 0.01)")
    p.add_argument("--modality", choices=("ct", "mr"), default=None,
                   help="which DICOM series to read (default: the prior's modality)")
    p.add_argument("--fit-reference", nargs="+", type=Path, default=None, metavar="DATA",
                   help="fit the prior's reference statistics on these held-out slices (files, folders or a "
                        "validation manifest) and write typicality.json into the prior's directory")
    p.add_argument("--ode-steps", type=int, default=DEFAULT_ODE_STEPS,
                   help=f"--fit-reference --method ode: solver steps (default {DEFAULT_ODE_STEPS})")
    p.add_argument("--seed", type=int, default=0, help="--fit-reference --method ode: Hutchinson probe seed")
    p.add_argument("--stride", type=int, default=1, metavar="K",
                   help="--fit-reference: use every K-th slice in reading order (default 1: all)")
    p.add_argument("--batch", type=int, default=4, help="slices per network call (default 4)")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda[:N]")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out or typicality.json")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.batch < 1 or args.stride < 1:
        raise InputError(None, "--batch and --stride must be positive integers")
    if args.fit_reference is not None:
        if args.input is not None:
            raise InputError(args.input, "give either an INPUT to score or --fit-reference DATA..., not both")
        target = fit_input(args.fit_reference, args.prior, methods=_methods(args.method or "msma"),
                           ode_steps=args.ode_steps, seed=args.seed, modality=args.modality, device=args.device,
                           batch=args.batch, stride=args.stride, overwrite=args.overwrite, progress=not args.no_progress)
        print(f"reference statistics -> {target}")
        return 0
    if args.input is None:
        raise InputError(None, "recon score needs an INPUT (or --fit-reference DATA...)")
    if args.method is not None and args.method not in METHODS:
        raise InputError(None, f"--method {args.method!r}: choose from {', '.join(METHODS)}")
    if args.out is not None and args.out.exists() and not args.overwrite:
        raise InputError(args.out, "exists; use --overwrite to replace it")
    scores = score_input(args.input, args.prior, method=args.method, level=args.level, modality=args.modality,
                         device=args.device, batch=args.batch, progress=not args.no_progress)
    for row in scores.rows():
        print(f"{row['index']:4d}  score {row['score']:10.3f}  p {row['p_value']:.4f}  {row['label']}")
    flagged = scores.flagged()
    print(f"{len(flagged)} of {len(scores)} slices out of distribution (p < {scores.level:g}, {scores.method})",
          file=sys.stderr)
    if args.out is not None:
        atomic_write_json(args.out, report(scores, args.prior))
    return 0
