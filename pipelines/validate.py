"""``recon validate``: judge priors by what they reconstruct on patients they never saw.

A prior's denoising loss and the quality of the reconstructions it gives are known to disagree, so
checkpoints are chosen here by reconstruction quality: every prior named is run through the same
simulated acquisitions of a fixed validation set as the classical baseline (TV for CT, CS-TV for
MR), and the table reports PSNR / SSIM and the gain over the baseline per setting::

    recon validate --manifest benchmarks/validation/ct.json --prior ct --prior runs/ct --out val/ct

``--prior`` takes a bundled name, a checkpoint directory, or a training run directory, which
stands for its current checkpoint and every weights snapshot in ``snapshots/``. The simulation,
metrics and resumable cells are those of :func:`pipelines.benchmark.run_benchmark`: the baseline
is computed once in ``OUT/baseline`` and each prior gets ``OUT/priors/<label>``, so adding a
checkpoint to a finished validation only runs that checkpoint.

A **manifest** (JSON) fixes the validation set and its acquisitions::

    {
      "modality": "ct",
      "root": "../../../shared/data",     # data root, relative to the manifest; RECON_SHARED_DATA wins
      "inputs": [
        {"source": "ct_tcga_luad", "files": ["ct_tcga_luad/dicom/ID_0048_....dcm"]},
        {"source": "ct_covid_sbu", "path": "ct_covid_sbu/dicom/A002304"}
      ],
      "settings": {"views": [8, 16], "doses": [1.0, 0.1], "i0": 1e5},   # MR: "accels", "masks"
      "max_slices": 2,
      "seed": 0,
      "holdout_files": ["ct_tcga_luad/dicom/ID_0048_....dcm", "..."]
    }

Each input is one volume: a DICOM series directory or NIfTI volume (``path``), or a list of DICOM
files of one series (``files``, staged as links in ``OUT/inputs``). Volumes are labelled by their
position in the manifest, never by a patient identifier. ``"holdout_files"`` (optional) lists every
slice of the set's patients, for ``recon train --val-data``, which keeps all of them out of training.

Outputs: ``OUT/validation.json`` (every row, the ranking) and ``OUT/validation.md`` (the table).
The ranking key is the mean PSNR gain over the baseline across settings; the SSIM gain is shown
beside it because a prior can win PSNR by smoothing.
"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from pipelines.benchmark import run_benchmark
from pipelines.sampler_options import add_estimator_arguments, add_set_argument, parse_options
from priors.precision import add_precision_argument
from recon.api import default_estimator
from recon.errors import InputError
from recon.io.atomic import atomic_write_json, atomic_write_text

__all__ = ["Manifest", "load_manifest", "prior_candidates", "run_validation", "register", "run"]

BASELINE = {"ct": "tv", "mr": "cs_tv"}
SHARED_DATA_ENV = "RECON_SHARED_DATA"


@dataclass
class Manifest:
    """A validation set and the acquisitions it is simulated at (see the module docstring)."""

    path: Path
    modality: str
    root: Path
    inputs: list[dict[str, Any]]
    settings: dict[str, Any]
    max_slices: int = 2
    seed: int = 0
    description: str = ""
    holdout_files: list[str] = field(default_factory=list)

    def input_paths(self) -> list[Path]:
        """Every file or folder the manifest names, resolved against :attr:`root`."""
        out = []
        for item in self.inputs:
            out += [self.root / f for f in item.get("files", [])]
            if "path" in item:
                out.append(self.root / item["path"])
        return out


def load_manifest(path: str | Path) -> Manifest:
    """Read and check a manifest; every file it names must exist.

    Raises:
        InputError: unreadable JSON, a missing key, an unknown modality, a missing data file.
    """
    path = Path(path)
    try:
        raw = json.loads(path.read_text())
    except FileNotFoundError:
        raise InputError(path, "no such file") from None
    except json.JSONDecodeError as e:
        raise InputError(path, f"invalid JSON: {e}") from None
    modality = raw.get("modality")
    if modality not in BASELINE:
        raise InputError(path, f"'modality' must be 'ct' or 'mr', got {modality!r}")
    inputs = raw.get("inputs")
    if not isinstance(inputs, list) or not inputs:
        raise InputError(path, "'inputs' must be a non-empty list")
    for k, item in enumerate(inputs):
        if not isinstance(item, dict) or not (("files" in item) ^ ("path" in item)):
            raise InputError(path, f"inputs[{k}] needs exactly one of 'files' (a list) or 'path'")
    settings = raw.get("settings") or {}
    needed = ("views", "doses") if modality == "ct" else ("accels", "masks")
    missing = [k for k in needed if not settings.get(k)]
    if missing:
        raise InputError(path, f"'settings' lacks {', '.join(missing)}")
    env = os.environ.get(SHARED_DATA_ENV)
    root = Path(env) if env else (path.parent / raw.get("root", ".")).resolve()
    m = Manifest(path=path, modality=modality, root=root, inputs=inputs, settings=dict(settings),
                 max_slices=int(raw.get("max_slices", 2)), seed=int(raw.get("seed", 0)),
                 description=str(raw.get("description", "")), holdout_files=list(raw.get("holdout_files", [])))
    absent = [p for p in m.input_paths() if not p.exists()]
    if absent:
        raise InputError(absent[0], f"named by {path} but absent ({len(absent)} missing; set {SHARED_DATA_ENV}?)")
    return m


def stage_inputs(manifest: Manifest, folder: Path) -> list[Path]:
    """One benchmark input per manifest entry: ``path`` as is, ``files`` linked into ``folder/vNN``."""
    staged = []
    for k, item in enumerate(manifest.inputs):
        if "path" in item:
            staged.append(manifest.root / item["path"])
            continue
        d = folder / f"v{k:02d}"
        d.mkdir(parents=True, exist_ok=True)
        links = {d / f"{j:03d}.dcm": (manifest.root / f).resolve() for j, f in enumerate(item["files"])}
        for old in d.iterdir():
            if old not in links or not old.is_symlink() or old.resolve() != links[old]:
                old.unlink()
        for link, target in links.items():
            if not link.is_symlink():
                link.symlink_to(target)
        staged.append(d)
    return staged


def prior_candidates(spec: str) -> list[tuple[str, str]]:
    """``[(label, prior)]`` for a ``--prior`` value.

    A training run directory (one with ``checkpoint/``) stands for its snapshots, oldest first, and
    its current checkpoint; anything else (bundled name, checkpoint directory) for itself.
    """
    p = Path(spec)
    if (p / "checkpoint" / "config.json").is_file():
        out = [(f"{p.name}-{s.name}", str(s)) for s in sorted((p / "snapshots").glob("step_*")) if (s / "config.json").is_file()]
        steps = json.loads((p / "checkpoint" / "config.json").read_text()).get("training", {}).get("steps")
        label = f"{p.name}-step_{int(steps):07d}" if steps is not None else f"{p.name}-checkpoint"
        if label not in {lab for lab, _ in out}:
            out.append((label, str(p / "checkpoint")))
        return out
    return [(p.name if p.exists() else spec, spec)]


def _rows_by_setting(result: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {r["setting"]: r for r in result["rows"]}


def _gain_rows(base: dict[str, dict[str, Any]], cand: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    rows = []
    for key, b in base.items():
        c = cand[key]
        rows.append({
            "setting": key, "label": b["label"],
            "baseline_psnr": b["psnr_mean"], "baseline_ssim": b["ssim_mean"],
            "psnr": c["psnr_mean"], "ssim": c["ssim_mean"],
            "psnr_gain": c["psnr_mean"] - b["psnr_mean"], "ssim_gain": c["ssim_mean"] - b["ssim_mean"],
            "seconds_per_slice": c["seconds_per_slice_mean"], "n_slices": c["n_slices"],
        })
    return rows


def run_validation(
    manifest: Manifest,
    priors: Sequence[str],
    out: str | Path,
    *,
    sampler: str = "dds",
    nfe: int | None = None,
    samples: int | None = None,
    options: dict[str, Any] | None = None,
    device: str = "auto",
    precision: str = "auto",
    max_slices: int | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Validate every candidate of ``priors`` against the manifest's baseline; write the table.

    Returns the contents of ``validation.json``: ``{"baseline", "candidates": [{"label", "prior",
    "rows", "mean_psnr_gain", "mean_ssim_gain"}], "best"}`` with candidates ranked best first.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    default_nfe, default_samples = default_estimator(manifest.modality)
    nfe = default_nfe if nfe is None else nfe
    samples = default_samples if samples is None else samples
    inputs = stage_inputs(manifest, out / "inputs")
    s = manifest.settings
    common: dict[str, Any] = dict(
        modality=manifest.modality, seed=manifest.seed, device=device, progress=progress,
        max_slices=manifest.max_slices if max_slices is None else max_slices,
    )
    if manifest.modality == "ct":
        common.update(views=[int(v) for v in s["views"]], doses=[float(d) for d in s["doses"]],
                      i0=s.get("i0"), geometry=s.get("geometry", "parallel"))
    else:
        common.update(accels=[float(a) for a in s["accels"]], masks=list(s["masks"]),
                      center_fraction=float(s.get("center_fraction", 0.08)), coils=int(s.get("coils", 1)))
    baseline = BASELINE[manifest.modality]
    base = _rows_by_setting(run_benchmark(inputs, out / "baseline", methods=[baseline], **common))
    candidates = []
    for spec in priors:
        for label, prior in prior_candidates(spec):
            res = run_benchmark(inputs, out / "priors" / label, methods=[sampler], prior=prior, nfe=nfe,
                                samples=samples, options=dict(options or {}), precision=precision, **common)
            rows = _gain_rows(base, _rows_by_setting(res))
            candidates.append({
                "label": label, "prior": prior, "rows": rows,
                "mean_psnr_gain": float(np.mean([r["psnr_gain"] for r in rows])),
                "mean_ssim_gain": float(np.mean([r["ssim_gain"] for r in rows])),
            })
    candidates.sort(key=lambda c: c["mean_psnr_gain"], reverse=True)
    result = {
        "manifest": str(manifest.path), "modality": manifest.modality, "baseline": baseline,
        "sampler": sampler, "nfe": nfe, "samples": samples, "options": dict(options or {}),
        "candidates": candidates, "best": candidates[0]["label"] if candidates else None,
    }
    atomic_write_json(out / "validation.json", result)
    atomic_write_text(out / "validation.md", validation_table(result))
    return result


def validation_table(result: dict[str, Any]) -> str:
    """A Markdown table: one row per candidate and setting, baseline and gain beside it."""
    base = result["baseline"].upper().replace("_", "-")
    sampler = result["sampler"].upper()
    head = (f"| prior | setting | {base} PSNR / SSIM | {sampler} PSNR / SSIM | gain dB | gain SSIM | s / slice |\n"
            "|---|---|---|---|---|---|---|\n")
    lines = []
    for c in result["candidates"]:
        for r in c["rows"]:
            lines.append(f"| {c['label']} | {r['label']} | {r['baseline_psnr']:.2f} / {r['baseline_ssim']:.3f} | "
                         f"{r['psnr']:.2f} / {r['ssim']:.3f} | {r['psnr_gain']:+.2f} | {r['ssim_gain']:+.3f} | "
                         f"{r['seconds_per_slice']:.1f} |")
        lines.append(f"| {c['label']} | **mean** | | | **{c['mean_psnr_gain']:+.2f}** | **{c['mean_ssim_gain']:+.3f}** | |")
    cfg = f"{result['sampler']}, {result['nfe']} NFE x {result['samples']} sample(s)"
    if result["options"]:
        cfg += ", " + ", ".join(f"{k}={v}" for k, v in sorted(result["options"].items()))
    return f"Validation ({cfg}); best: {result['best']}\n\n" + head + "\n".join(lines) + "\n"


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``validate`` subcommand."""
    p = subparsers.add_parser(
        "validate",
        help="rank priors (or a run's checkpoints) by reconstruction quality on a held-out set",
        description=__doc__.split("\n\n")[0] + " Resumable; see the manifest format in the README.",
    )
    p.add_argument("--manifest", type=Path, required=True, help="validation manifest (JSON)")
    p.add_argument("--prior", action="append", required=True, metavar="PRIOR",
                   help="bundled name, checkpoint directory or training run directory (repeatable)")
    p.add_argument("--out", type=Path, required=True, help="output directory (reused: finished cells are kept)")
    p.add_argument("--sampler", default="dds", choices=("dds", "dps", "song22"))
    add_estimator_arguments(p, "posterior samples averaged per slice")
    p.add_argument("--max-slices", type=int, default=None, help="slices per input (default: the manifest's)")
    p.add_argument("--device", default="auto")
    add_precision_argument(p)
    add_set_argument(p)
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run ``recon validate``: print the table and the best candidate."""
    result = run_validation(
        load_manifest(args.manifest), args.prior, args.out, sampler=args.sampler, nfe=args.nfe, samples=args.samples,
        options=parse_options(args.options), device=args.device, precision=args.precision,
        max_slices=args.max_slices, progress=not args.no_progress,
    )
    print(validation_table(result), end="")
    print(f"validate: {len(result['candidates'])} candidate(s) -> {Path(args.out) / 'validation.md'}")
    return 0
