"""``recon sample``: a PNG grid of unconditional samples from a prior (EDM Heun sampler,
Karras et al. 2022, Alg. 2) - the way to see what a prior believes.

    recon sample --prior ct|mr|DIR -n 16 --out grid.png [--steps 18] [--size 256] [--seed 0]
"""

from __future__ import annotations

import argparse
from pathlib import Path

from recon.errors import InputError


def register(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = subparsers.add_parser("sample", help="draw unconditional samples from a prior into a PNG grid", description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--prior", required=True, help="bundled prior name (ct, mr) or checkpoint directory")
    p.add_argument("-n", type=int, default=16, help="number of samples (default 16)")
    p.add_argument("--out", required=True, help="output PNG")
    p.add_argument("--steps", type=int, default=18, help="Heun steps (2*steps-1 network evaluations; default 18)")
    p.add_argument("--size", type=int, default=None, help="sample size in pixels (default: the prior's image size)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--churn", type=float, default=0.0, help="EDM S_churn (0 = deterministic ODE sampler)")
    p.add_argument("--batch", type=int, default=None, help="samples per batch (default all)")
    p.add_argument("--window", type=float, nargs=2, default=None, metavar=("LO", "HI"),
                   help="display window (CT: HU, default -1000 1000; MR: normalised, default 0 1)")
    p.add_argument("--device", default="auto")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    import torch

    from priors.registry import load_prior
    from priors.sampling import sample, save_grid_png, to_display

    out = Path(args.out)
    if out.exists() and not args.overwrite:
        raise InputError(out, "exists; use --overwrite to replace it")
    if out.suffix.lower() != ".png":
        raise InputError(out, "output must be a .png file")
    if args.n < 1 or args.steps < 1:
        raise InputError(None, "-n and --steps must be at least 1")
    prior = load_prior(args.prior, device=args.device)
    size = args.size or prior.image_size or 256
    if size % prior.net.config.divisor:
        raise InputError(None, f"--size {size} must be a multiple of {prior.net.config.divisor}")
    gen = torch.Generator().manual_seed(args.seed)
    from tqdm.auto import tqdm

    bar = tqdm(total=args.steps * ((args.n + (args.batch or args.n) - 1) // (args.batch or args.n)), desc="sample", unit="step")
    x = sample(prior, args.n, size, steps=args.steps, generator=gen, churn=args.churn, batch_size=args.batch,
               callback=lambda *_: bar.update(1))
    bar.close()
    save_grid_png(to_display(prior, x, tuple(args.window) if args.window else None), out)
    print(f"recon sample: {args.n} samples ({size}x{size}, {2 * args.steps - 1} NFE each, seed {args.seed}) -> {out}")
    return 0
