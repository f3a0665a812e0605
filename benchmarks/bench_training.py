"""Training throughput of a prior, and how well a patch-trained prior transfers to whole slices.

Throughput (images/s of full optimizer steps: batch draw, EDM loss, backward, AdamW, EMA) for a
preset at several training sizes; a ``P x P`` patch counts as one image::

    python benchmarks/bench_training.py throughput --preset small --sizes 64 128 256 --batch 16 8 4

Patch-to-slice transfer (Hu et al. 2024: a fully convolutional prior trained on patches is applied
to whole slices): the EDM loss and denoising PSNR of a checkpoint at fixed sigmas on the same
held-back slices, once on whole slices and once on non-overlapping patches of its training patch
size. Similar numbers mean the whole-slice prior is as good as the patch prior it was trained as::

    python benchmarks/bench_training.py transfer runs/ct_small --data ../shared/data/ct_tcga_luad/dicom

Results print as a table and, with ``--json``, are written to a file. The load average is
printed too: on a shared machine it explains most of the variation.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from priors.datasets import SliceDataset, split_by_patient  # noqa: E402
from priors.normalization import CT_WINDOW  # noqa: E402
from priors.training import TrainConfig, Trainer  # noqa: E402


def _synthetic(n: int, size: int, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size] / size
    out = []
    for _ in range(n):
        img = np.full((size, size), -1000.0, np.float32)
        img[(xx - 0.5) ** 2 + (yy - 0.5) ** 2 < rng.uniform(0.1, 0.2)] = rng.uniform(-100, 100)
        out.append(img + rng.normal(0, 20, (size, size)).astype(np.float32))
    return out


def throughput(preset: str, size: int, patch: int | None, batch: int, steps: int, warmup: int, threads: int) -> dict:
    """Median images/s over ``steps`` timed steps after ``warmup`` untimed ones."""
    torch.set_num_threads(threads)
    ds = SliceDataset(_synthetic(8, size), CT_WINDOW, size, patch)
    cfg = TrainConfig(out_dir="/tmp/bench_training_unused", image_size=size, patch_size=patch, preset=preset,
                      batch_size=batch, steps=steps, progress=False, device="cpu", sample_n=0)
    tr = Trainer(cfg, ds, None)
    for _ in range(warmup):
        tr.train_step()
    times = []
    for _ in range(steps):
        t = time.perf_counter()
        tr.train_step()
        times.append(time.perf_counter() - t)
    med = float(np.median(times))
    return {
        "preset": preset,
        "params_M": round(tr.prior.net.num_parameters() / 1e6, 2),
        "train_size": patch or size,
        "batch": batch,
        "threads": threads,
        "s_per_step_median": round(med, 3),
        "s_per_step_min": round(min(times), 3),
        "images_per_s": round(batch / med, 2),
        "images_per_s_best": round(batch / min(times), 2),
    }


@torch.no_grad()
def transfer(ckpt: str, data: list[str], sigmas: list[float], max_slices: int, seed: int, val_fraction: float) -> list[dict]:
    """Loss / PSNR of the checkpoint on whole slices vs. on its own patch size, same slices and noise."""
    from pipelines.training_data import load_training_slices
    from priors.checkpoint import load_checkpoint

    prior = load_checkpoint(ckpt)
    size = prior.image_size
    patch = prior.patch_size or size
    d = load_training_slices(data, prior.modality)
    split = Path(ckpt) / "split.json"
    if split.exists():
        # The run's own held-back patients, whatever split it used.
        val_patients = set(json.loads(split.read_text())["val_patients"])
        va = np.array([i for i, p in enumerate(d.patient_ids) if p in val_patients], dtype=np.int64)
    else:
        _, va = split_by_patient(d.patient_ids, val_fraction, seed)
    idx = va if len(va) else np.arange(len(d))
    sub = d.subset(idx[:max_slices])
    ds = SliceDataset(sub.slices, prior.normalization, size, None, volume_ids=sub.volume_ids, flip_lr=False)
    y = ds.images
    rows = []
    for s in sigmas:
        gen = torch.Generator().manual_seed(0)
        noise = torch.randn(y.shape, generator=gen)
        sig = torch.full((y.shape[0],), s)
        whole = prior.precondition(prior.net, y + s * noise, sig.view(-1, 1, 1, 1))
        # Same noisy slices cut into non-overlapping patches, denoised patch by patch.
        x = y + s * noise
        b, c, h, w = x.shape
        tiles = x.unfold(2, patch, patch).unfold(3, patch, patch)  # [B, C, h/p, w/p, p, p]
        nh, nw = tiles.shape[2], tiles.shape[3]
        tiles = tiles.permute(0, 2, 3, 1, 4, 5).reshape(-1, c, patch, patch)
        den = torch.cat([prior.denoise(t, s) for t in tiles.split(32)])
        den = den.reshape(b, nh, nw, c, patch, patch).permute(0, 3, 1, 4, 2, 5).reshape(b, c, nh * patch, nw * patch)
        ref = y[..., : nh * patch, : nw * patch]

        def psnr(a: torch.Tensor) -> float:
            mse = ((a - ref) ** 2).mean(dim=(1, 2, 3))
            return float((10 * torch.log10(1.0 / mse)).mean())

        weight = (s**2 + prior.sigma_data**2) / (s * prior.sigma_data) ** 2
        rows.append({
            "sigma": s,
            "loss_whole": float(weight * ((whole - y) ** 2).mean()),
            "loss_patches": float(weight * ((den - ref) ** 2).mean()),
            "psnr_noisy": psnr(x[..., : nh * patch, : nw * patch]),
            "psnr_whole": psnr(whole[..., : nh * patch, : nw * patch]),
            "psnr_patches": psnr(den),
        })
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="mode", required=True)
    t = sub.add_parser("throughput")
    t.add_argument("--preset", default="small")
    t.add_argument("--sizes", type=int, nargs="+", default=[64, 128, 256], help="training sizes (64 = 64-patches of 256 slices)")
    t.add_argument("--batch", type=int, nargs="+", default=[16, 8, 4])
    t.add_argument("--steps", type=int, default=5)
    t.add_argument("--warmup", type=int, default=2)
    t.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    t.add_argument("--json", default=None)
    r = sub.add_parser("transfer")
    r.add_argument("checkpoint")
    r.add_argument("--data", nargs="+", required=True)
    r.add_argument("--sigmas", type=float, nargs="+", default=[0.02, 0.05, 0.1, 0.2, 0.5, 1.0])
    r.add_argument("--max-slices", type=int, default=8)
    r.add_argument("--val-fraction", type=float, default=0.1)
    r.add_argument("--seed", type=int, default=0)
    r.add_argument("--json", default=None)
    args = ap.parse_args()

    print(f"# {platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, "
          f"load average {os.getloadavg()[0]:.1f}", flush=True)
    if args.mode == "throughput":
        rows = []
        batches = args.batch + [args.batch[-1]] * (len(args.sizes) - len(args.batch))
        # A --batch list longer than --sizes is allowed; its extra entries are ignored.
        for size, batch in zip(args.sizes, batches, strict=False):
            for th in args.threads:
                # A size below 256 is a patch of a 256 slice: the network cost depends only on it.
                row = throughput(args.preset, 256, size if size < 256 else None, batch, args.steps, args.warmup, th)
                row["load_avg"] = round(os.getloadavg()[0], 1)
                rows.append(row)
                print(json.dumps(row), flush=True)
        print("\n| preset | train size | batch | threads | s/step (median) | images/s (median) | images/s (best) | load |")
        print("|---|---|---|---|---|---|---|---|")
        for r_ in rows:
            print(f"| {r_['preset']} ({r_['params_M']} M) | {r_['train_size']} | {r_['batch']} | {r_['threads']} | "
                  f"{r_['s_per_step_median']} | {r_['images_per_s']} | {r_['images_per_s_best']} | {r_['load_avg']} |")
    else:
        rows = transfer(args.checkpoint, args.data, args.sigmas, args.max_slices, args.seed, args.val_fraction)
        print("| sigma | loss whole | loss patches | PSNR noisy | PSNR whole | PSNR patches |")
        print("|---|---|---|---|---|---|")
        for r_ in rows:
            print(f"| {r_['sigma']:g} | {r_['loss_whole']:.4f} | {r_['loss_patches']:.4f} | {r_['psnr_noisy']:.2f} | "
                  f"{r_['psnr_whole']:.2f} | {r_['psnr_patches']:.2f} |")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
