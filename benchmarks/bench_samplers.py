"""Timing of every posterior sampler on a 256x256 sparse-view CT slice (not a test).

Setup: ``ParallelBeam`` with 16 views (ASTRA ``linear``), an EDM prior of the chosen preset (default
``"small"``; untrained weights: timing does not depend on them), one slice, one sample, ``nfe`` network evaluations.

Reported per sampler: seconds per slice (the whole ``reconstruct`` call) and the network's share,
measured by timing every ``prior.denoise`` call (plus its backward pass for DPS, which is part of
the network cost) inside the run; "overhead" is everything else (CG / operator applications, noise,
bookkeeping) as a percentage of the network time. Target: DDS at 50 NFE under 15 s per slice on
2 CPU cores and overhead <= 15 %.

Usage::

    OMP_NUM_THREADS=2 python benchmarks/bench_samplers.py [--nfe 50] [--samplers dds,dps,song22]
        [--preset small|fast] [--precision auto|fp32|bf16] [--set cg_iters=5] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from operators.geometry import uniform_angles  # noqa: E402
from operators.noise import hu_to_mu  # noqa: E402
from operators.radon import ParallelBeam  # noqa: E402
from pipelines.sampler_options import add_set_argument, parse_options  # noqa: E402
from priors.edm import EDMPrior  # noqa: E402
from priors.network import preset  # noqa: E402
from priors.normalization import CT_WINDOW  # noqa: E402
from recon.api import reconstruct  # noqa: E402


class _TimedNet(torch.nn.Module):
    """Wraps the U-Net: forward time, and backward time through a hook on its output (DPS)."""

    def __init__(self, net: torch.nn.Module):
        super().__init__()
        self.net = net
        self.config = net.config
        self.seconds = 0.0
        self.calls = 0

    def forward(self, x: torch.Tensor, c_noise: torch.Tensor) -> torch.Tensor:
        t = time.perf_counter()
        out = self.net(x, c_noise)
        self.seconds += time.perf_counter() - t
        self.calls += 1
        if out.requires_grad:
            marks: dict[str, float] = {}

            def pre(grad):  # output gradient arrives: the network's backward starts
                marks["t"] = time.perf_counter()
                return grad

            out.register_hook(pre)
            if x.requires_grad:
                def post(grad):  # input gradient ready: the network's backward ended
                    if "t" in marks:
                        self.seconds += time.perf_counter() - marks.pop("t")
                    return grad

                x.register_hook(post)
        return out

    def num_parameters(self) -> int:
        return self.net.num_parameters()


def phantom(n: int) -> torch.Tensor:
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, n), torch.linspace(-1, 1, n), indexing="ij")
    img = torch.full((n, n), -1000.0)
    img[(xx / 0.85) ** 2 + (yy / 0.65) ** 2 < 1] = 40.0
    img[(xx + 0.3) ** 2 + yy**2 < 0.15**2] = -800.0
    img[(xx - 0.35) ** 2 + (yy - 0.1) ** 2 < 0.1**2] = 900.0
    return img[None, None]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nfe", type=int, default=50)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--views", type=int, default=16)
    ap.add_argument("--samplers", default="dds,dps,song22")
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--preset", default="small", help="U-Net preset of the (untrained) prior: small, fast, ...")
    ap.add_argument("--precision", default="auto", help="network arithmetic: auto, fp32 or bf16")
    ap.add_argument("--json", type=Path, default=None)
    add_set_argument(ap)
    args = ap.parse_args()
    options = parse_options(args.options)

    torch.manual_seed(0)
    op = ParallelBeam(args.size, uniform_angles(args.views), pixel_size_mm=1.0, projector="linear")
    prior = EDMPrior(net_config=preset(args.preset), modality="ct", normalization=CT_WINDOW)
    prior.net = _TimedNet(prior.net)
    with torch.no_grad():
        y = op(hu_to_mu(phantom(args.size)))
    # warm-up: first ASTRA / torch calls allocate
    reconstruct(y, op, prior, sampler="dds", nfe=2, device="cpu")

    rows = []
    for name in args.samplers.split(","):
        best = None
        for _ in range(args.repeats):
            prior.net.seconds, prior.net.calls = 0.0, 0
            t = time.perf_counter()
            r = reconstruct(
                y, op, prior, sampler=name, nfe=args.nfe, device="cpu", precision=args.precision, **options
            )
            total = time.perf_counter() - t
            row = {
                "sampler": name,
                "nfe": r.nfe,
                "options": options,
                "precision": r.settings["precision"],
                "seconds_per_slice": total,
                "network_seconds": prior.net.seconds,
                "overhead_seconds": total - prior.net.seconds,
                "overhead_percent_of_network": 100.0 * (total - prior.net.seconds) / prior.net.seconds,
                "residual": float(r.residual[0]),
            }
            if best is None or row["seconds_per_slice"] < best["seconds_per_slice"]:
                best = row
        rows.append(best)
        print(
            f"{name:7s} {best['precision']} nfe={best['nfe']:3d}  {best['seconds_per_slice']:6.2f} s/slice  "
            f"network {best['network_seconds']:6.2f} s  overhead {best['overhead_seconds']:5.2f} s "
            f"({best['overhead_percent_of_network']:4.1f} % of network)  residual {best['residual']:.3g}",
            flush=True,
        )
    meta = {
        "size": args.size, "views": args.views, "prior": f"{args.preset} (untrained)",
        "params_M": prior.net.num_parameters() / 1e6, "threads": torch.get_num_threads(),
        "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS"), "torch": torch.__version__,
        "cpu_count": os.cpu_count(), "load_avg": os.getloadavg() if hasattr(os, "getloadavg") else None,
    }
    print(json.dumps(meta))
    if args.json:
        args.json.write_text(json.dumps({"meta": meta, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
