"""``recon train``: train a score-based prior on CT or MR slices.

    recon train DATA... --modality ct|mr --size 256 [--patch 64] --steps N --batch B --out DIR
                [--preset small|fast|base] [--init-from PRIOR] [--device auto] [--resume | --overwrite] [--lr] [--ema]
                [--val-fraction 0.1 | --val-data DATA...] [--train-only DATA...] [--checkpoint-every] [--seed]

DATA are folders or files (DICOM series, NIfTI volumes, .npy/.png slices). Patients of DATA are
split into training and validation by patient with a fixed seed; ``--train-only`` folders are
always used for training (e.g. a single-patient series that must not become the whole validation
set). ``--val-data`` names the validation data instead (files, folders, or the manifest of
``recon validate``); every slice of a validation patient leaves the training data. The run
directory holds ``checkpoint/`` (a loadable prior plus resume state), ``samples/``,
``metrics.jsonl``, ``val_loss.png``, ``train_config.json`` and ``split.json``.
``--init-from ct`` (or a checkpoint directory) fine-tunes: the new run starts from that prior's
weights and architecture with a fresh optimizer, e.g. to adapt a bundled prior to a site's scans.
Multi-GPU: ``torchrun --nproc_per_node K -m recon train ...`` (DistributedDataParallel).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
from pathlib import Path
from typing import Any

from operators.cpu import add_threads_argument
from pipelines.training_data import TrainingSlices, load_training_slices
from priors.network import PRESETS
from recon.errors import InputError

RUN_ARTEFACTS = (
    "checkpoint", "checkpoint.old", "snapshots", "samples", "metrics.jsonl", "val_loss.png", "train_config.json", "split.json"
)


def register(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "train",
        help="train a diffusion prior on CT or MR slices",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("data", nargs="+", metavar="DATA", help="folders/files: DICOM series, NIfTI, .npy, .png")
    p.add_argument("--modality", required=True, choices=("ct", "mr"))
    p.add_argument("--out", required=True, help="run directory")
    p.add_argument("--size", type=int, default=256, help="training slice size in pixels (default 256)")
    p.add_argument("--patch", type=int, default=None, help="train on random PATCH x PATCH crops (default: whole slices)")
    p.add_argument("--patch-mix", type=_patch_mix, default=(), metavar="SIZE:PROB[,SIZE:PROB]",
                   help="also train on larger crops, e.g. 128:0.2,256:0.1 (one size per step, the batch "
                        "shrunk to the same pixel count; the rest of the steps use --patch)")
    p.add_argument("--steps", type=int, default=5000, help="total optimizer steps (default 5000)")
    p.add_argument("--batch", type=int, default=16, help="global batch size (default 16)")
    p.add_argument("--preset", default="small", choices=tuple(PRESETS),
                   help="network size (default small; fast = small at 0.65x the FLOPs)")
    p.add_argument("--init-from", default=None, metavar="PRIOR",
                   help="start from a prior's weights (bundled name or checkpoint directory; "
                        "its architecture wins over --preset)")
    p.add_argument("--dropout", type=float, default=None, help="override the preset's dropout")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, ... (default auto)")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--resume", action="store_true", help="continue the run in --out")
    g.add_argument("--overwrite", action="store_true", help="delete a previous run in --out first")
    p.add_argument("--lr", type=float, default=2e-4, help="AdamW learning rate (default 2e-4)")
    p.add_argument("--weight-decay", type=float, default=0.0)
    p.add_argument("--warmup", type=int, default=200, help="learning-rate warm-up steps (default 200)")
    p.add_argument("--grad-clip", type=float, default=1.0, help="gradient-norm clip, 0 = off (default 1)")
    p.add_argument("--ema", type=float, default=0.999, help="EMA decay per step (default 0.999)")
    p.add_argument("--ema-halflife", type=float, default=None, help="EMA half-life in images (overrides --ema)")
    p.add_argument("--sigma-dist", default="lognormal", choices=("lognormal", "loguniform"))
    p.add_argument("--p-mean", type=float, default=-1.2)
    p.add_argument("--p-std", type=float, default=1.2)
    p.add_argument("--sigma-max", type=float, default=80.0)
    p.add_argument("--sigma-min", type=float, default=0.002)
    p.add_argument("--val-fraction", type=float, default=0.1, help="fraction of patients held back (default 0.1)")
    p.add_argument("--train-only", nargs="+", default=[], metavar="DATA", help="data always used for training")
    p.add_argument("--val-data", nargs="+", default=[], metavar="DATA",
                   help="explicit validation data, or a `recon validate` manifest (.json: its holdout files); "
                        "no split, and every slice of its patients is removed from DATA")
    p.add_argument("--checkpoint-every", type=int, default=500, help="steps between checkpoints (default 500)")
    p.add_argument("--snapshot-every", type=int, default=0, help="keep a weights-only copy every N steps")
    p.add_argument("--samples", type=int, default=8, help="sample-grid size at each checkpoint, 0 = none")
    p.add_argument("--sample-steps", type=int, default=18, help="Heun steps for the sample grid")
    p.add_argument("--sample-every", type=int, default=0, help="steps between sample grids (default: every checkpoint)")
    p.add_argument("--log-every", type=int, default=10)
    p.add_argument("--amp", default="auto", choices=("auto", "bf16", "fp16", "none"), help="autocast on CUDA")
    p.add_argument("--seed", type=int, default=0)
    add_threads_argument(p)  # also the Trainer's torch thread count
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)
    return p


def _prepare_out(out: Path, resume: bool, overwrite: bool) -> None:
    if not out.exists():
        return
    if not out.is_dir():
        raise InputError(out, "exists and is not a directory")
    contents = [c for c in out.iterdir()]
    if not contents or resume:
        return
    if not overwrite:
        raise InputError(out, "run directory is not empty; use --resume to continue it or --overwrite to replace it")
    names = {c.name for c in contents}
    if not names & set(RUN_ARTEFACTS):
        raise InputError(out, "not a training run directory; refusing to delete it with --overwrite")
    for c in contents:
        if c.name in RUN_ARTEFACTS:
            shutil.rmtree(c) if c.is_dir() else c.unlink()


def _check_resume_compatible(out: Path, cfg: Any) -> None:
    saved_path = out / "train_config.json"
    if not saved_path.exists():
        return
    try:
        saved = json.loads(saved_path.read_text())
    except json.JSONDecodeError as e:
        raise InputError(saved_path, f"invalid JSON: {e}") from None
    for key in ("modality", "image_size", "patch_size", "sigma_data", "normalization"):
        if key in saved and saved[key] != getattr(cfg, key):
            raise InputError(saved_path, f"--resume with a different {key} ({getattr(cfg, key)!r}, run has {saved[key]!r})")


def _without_patients(data: TrainingSlices, patients: set[str]) -> TrainingSlices:
    """``data`` less every slice of ``patients``."""
    return data.subset(i for i, p in enumerate(data.patient_ids) if p not in patients)


def _expand_manifests(paths: list[str]) -> list[str]:
    """``--val-data`` items: a validation manifest (.json) stands for its holdout files (else its inputs)."""
    from pipelines.validate import load_manifest

    out: list[str] = []
    for item in paths:
        if not item.endswith(".json"):
            out.append(item)
            continue
        m = load_manifest(item)
        out += [str(m.root / f) for f in m.holdout_files] if m.holdout_files else [str(p) for p in m.input_paths()]
    return out


def _patch_mix(text: str) -> tuple[tuple[int, float], ...]:
    """``"128:0.2,256:0.1"`` -> ``((128, 0.2), (256, 0.1))``."""
    try:
        pairs = [item.split(":") for item in text.split(",") if item.strip()]
        return tuple((int(size), float(prob)) for size, prob in pairs)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected SIZE:PROB[,SIZE:PROB...], got {text!r}") from None


def run(args: argparse.Namespace) -> int:
    from priors.datasets import SliceDataset, split_by_patient
    from priors.training import TrainConfig, Trainer

    out = Path(args.out)
    is_main = int(os.environ.get("RANK", "0")) == 0
    if is_main:
        _prepare_out(out, args.resume, args.overwrite)
    if args.size < 8:
        raise InputError(None, f"--size {args.size} is too small")
    if args.patch is not None and not 8 <= args.patch <= args.size:
        raise InputError(None, f"--patch {args.patch} must be between 8 and --size {args.size}")

    if args.patch_mix and args.patch is None:
        raise InputError(None, "--patch-mix needs --patch (the size of the remaining steps)")
    try:
        cfg = TrainConfig(
            out_dir=str(out),
            modality=args.modality,
            image_size=args.size,
            patch_size=args.patch,
            patch_mix=args.patch_mix,
            preset=args.preset,
            batch_size=args.batch,
            steps=args.steps,
            lr=args.lr,
            weight_decay=args.weight_decay,
            warmup_steps=args.warmup,
            grad_clip=args.grad_clip,
            ema_decay=args.ema,
            ema_halflife_images=args.ema_halflife,
            sigma_distribution=args.sigma_dist,
            p_mean=args.p_mean,
            p_std=args.p_std,
            sigma_min=args.sigma_min,
            sigma_max=args.sigma_max,
            checkpoint_every=args.checkpoint_every,
            snapshot_every=args.snapshot_every,
            sample_n=args.samples,
            sample_steps=args.sample_steps,
            sample_every=args.sample_every,
            log_every=args.log_every,
            seed=args.seed,
            device=args.device,
            threads=args.threads,
            amp=args.amp,
            progress=not args.no_progress,
            init_from=args.init_from,
        )
    except ValueError as exc:
        raise InputError(None, str(exc)) from None
    if args.dropout is not None:
        arch = cfg.unet_config().to_dict()
        arch["dropout"] = args.dropout
        cfg.architecture = arch
    if args.init_from and not (args.resume and (out / "checkpoint").exists()):
        from priors.registry import load_prior

        cfg.architecture = load_prior(args.init_from).net.config.to_dict()
    unet = cfg.unet_config()
    mix_sizes = [("--patch-mix", q) for q, _ in args.patch_mix]
    for name, s in (("--size", args.size), ("--patch", args.patch), *mix_sizes):
        if s is not None and s % unet.divisor:
            raise InputError(None, f"{name} {s} must be a multiple of {unet.divisor} for the {args.preset} network")
    if args.resume:
        _check_resume_compatible(out, cfg)

    # --- data --------------------------------------------------------------------------------
    split_data = load_training_slices(args.data, args.modality)
    if args.val_data:
        # Every slice of a validation patient leaves the training data, wherever it was found:
        # a held-out slice whose neighbours were trained on would flatter the validation table.
        val_part = load_training_slices(_expand_manifests(args.val_data), args.modality)
        train_part = _without_patients(split_data, set(val_part.patient_ids))
        split_method = "explicit --val-data (its patients removed from training)"
    else:
        tr_idx, va_idx = split_by_patient(split_data.patient_ids, args.val_fraction, args.seed)
        train_part, val_part = split_data.subset(tr_idx), split_data.subset(va_idx)
        split_method = f"split_by_patient(val_fraction={args.val_fraction}, seed={args.seed})"
    if args.train_only:
        extra = load_training_slices(args.train_only, args.modality)
        train_part = TrainingSlices(
            list(train_part.slices), list(train_part.patient_ids), list(train_part.volume_ids),
            list(train_part.source_index), list(train_part.sources),
        )
        train_part.extend(_without_patients(extra, set(val_part.patient_ids)))
    norm = cfg.norm()
    train_set = SliceDataset(
        train_part.slices, norm, args.size, args.patch, volume_ids=train_part.volume_ids, intensity_scale=cfg.intensity_scale
    )
    val_set = (
        SliceDataset(val_part.slices, norm, args.size, None, volume_ids=val_part.volume_ids, flip_lr=False)
        if len(val_part)
        else None
    )
    sources = list(train_part.sources)
    for s in val_part.sources:
        if s not in sources:
            sources.append(s)
    data_info = {
        "sources": sources,
        "n_train_slices": len(train_part),
        "n_train_patients": len(set(train_part.patient_ids)),
        "n_val_slices": len(val_part),
        "n_val_patients": len(set(val_part.patient_ids)),
        "split": split_method,
        "normalization": norm.to_dict(),
        "resize": f"pad to square, anti-aliased bilinear resize to {args.size}x{args.size}",
        "augmentation": "random left-right flip"
        + (f"; intensity scale +-{cfg.intensity_scale:g}" if norm.kind == "percentile" else ""),
    }
    split_path = out / "split.json"
    if args.resume and split_path.exists():
        try:
            old_method = json.loads(split_path.read_text()).get("method")
        except json.JSONDecodeError:
            old_method = None
        if old_method is not None and old_method != split_method:
            # A different split would leak validation patients into training.
            raise InputError(split_path, f"--resume with a different split ({split_method}; run has {old_method})")
    if is_main:
        out.mkdir(parents=True, exist_ok=True)
        # Patient ids stay in the run directory (never in logs or the shipped config): evaluation
        # needs them to pick patients the prior never saw.
        (out / "split.json").write_text(
            json.dumps(
                {
                    "method": split_method,
                    "train_patients": sorted(set(train_part.patient_ids)),
                    "val_patients": sorted(set(val_part.patient_ids)),
                },
                indent=2,
            )
            + "\n"
        )
    trainer = Trainer(cfg, train_set, val_set, data_info=data_info, resume=args.resume)
    if is_main:
        print(
            f"recon train: {len(train_part)} training slices ({data_info['n_train_patients']} patients), "
            f"{len(val_part)} validation slices ({data_info['n_val_patients']} patients); "
            f"{trainer.prior.net.num_parameters() / 1e6:.2f} M parameters on {trainer.device}; "
            f"starting at step {trainer.step} of {cfg.steps}",
            flush=True,
        )
    trainer.run()
    if is_main:
        print(f"recon train: checkpoint in {out / 'checkpoint'}", flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python -m pipelines.train ...``: the same command without the ``recon`` front end."""
    import sys

    parser = argparse.ArgumentParser(prog="recon")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["train", *(sys.argv[1:] if argv is None else argv)])
    try:
        return args.func(args)
    except InputError as err:
        print(f"recon: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
