"""Seconds per image of a bundled prior's denoiser against the batch size of one network call.

Decides :data:`priors.edm.CPU_MAX_PIXELS`: every batch size runs on the same 8 slices of noise, in
interleaved rounds so that load on the machine hits all sizes alike; the median per size is printed::

    python benchmarks/bench_denoiser_batch.py --prior ct --precision auto --threads 2 --batch 1 2 4 8
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from priors.precision import network_precision, resolve_precision  # noqa: E402
from priors.registry import load_prior  # noqa: E402


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--prior", default="ct", help="bundled prior name or directory")
    ap.add_argument("--precision", default="auto", choices=("auto", "fp32", "bf16"))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, nargs="+", default=[1, 2, 4, 8])
    ap.add_argument("--images", type=int, default=8, help="images per denoiser call")
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--size", type=int, default=256, help="slice side in pixels")
    args = ap.parse_args(argv)

    torch.set_num_threads(args.threads)
    prior = load_prior(args.prior)
    dtype = resolve_precision(args.precision, torch.device("cpu"))
    x = torch.randn(args.images, prior.image_channels, args.size, args.size,
                    generator=torch.Generator().manual_seed(0))
    times: dict[int, list[float]] = {b: [] for b in args.batch}
    with network_precision(prior, dtype):
        for b in args.batch:  # warm-up: first calls allocate and pick kernels
            prior.max_batch = b
            prior.denoise(x[:b], 1.0)
        for _ in range(args.rounds):
            for b in args.batch:
                prior.max_batch = b
                t = time.perf_counter()
                prior.denoise(x, 1.0)
                times[b].append((time.perf_counter() - t) / args.images)
    print(f"prior {args.prior}, {dtype or 'float32'}, {args.threads} threads, {args.size}^2, "
          f"load average {os.getloadavg()[0]:.2f}")
    print("batch  s/image (median)  all rounds")
    for b, ts in times.items():
        print(f"{b:5d}  {statistics.median(ts):16.4f}  {' '.join(f'{t:.3f}' for t in ts)}")


if __name__ == "__main__":
    main()
