"""Quality of the classical baselines on real slices: the table every diffusion result is held to.

CT: TCGA-LUAD slices (one per patient, resized to 256x256, air floor -1000 HU, each slice's own
pixel size), parallel beam over 180 degrees (ASTRA ``linear``), 8/16/32/60 views, noise-free and
optionally Poisson transmission noise at ``--i0`` photons. Methods: FBP (ram-lak), SIRT, CGLS,
TV-PDHG with the default weight rule, and optionally (``--oracle``) TV with the weight picked per
slice from a grid by the ground truth (the best any single weight could do on that slice).
Metrics: :func:`recon.metrics.ct_metrics` (PSNR/SSIM on [-1000, 1000] HU, data_range 2000).

MRI: BraTS FLAIR/T1c axial slices (background-subtracted magnitude, 240x240), single-coil
equispaced Cartesian masks at 4x (8 % centre) and 8x (4 % centre). Methods: zero-filled,
CG-SENSE, CS-TV. The real 8-coil k-space (``mr_brain_kspace_8coil``) is reconstructed too and
compared with BART's full-data reconstruction after a least-squares intensity match. Metrics:
:func:`recon.metrics.mr_metrics` (magnitude / reference 99.9th percentile, data_range 1).

Usage::

    OMP_NUM_THREADS=2 python benchmarks/bench_classical.py [--ct] [--mri] [--n-ct 4]
        [--views 8,16,32,60] [--i0 1e4] [--oracle]

Prints one row per (setting, method): mean PSNR / SSIM over slices and seconds per slice.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from recon import classical  # noqa: E402
from recon.metrics import ct_metrics, mr_metrics  # noqa: E402

DATA = Path(os.environ.get("RECON_SHARED_DATA", REPO.parent / "shared" / "data"))
#: Relative TV weights searched by ``--oracle`` (log grid around the defaults).
ORACLE_GRID = (1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2)


# --- data -------------------------------------------------------------------------------------------


def ct_slices(n: int, size: int = 256) -> list[tuple[str, np.ndarray, float]]:
    """``n`` TCGA-LUAD slices from distinct patients: (patient, HU image, pixel size in mm).

    Patients are taken at evenly spaced positions of the sorted patient list, offset by half a
    step so that they avoid the patients used to tune the default TV weight (positions 0, 13, 20,
    26 and 40 of the sorted list).
    """
    import pydicom
    from skimage.transform import resize

    first: dict[str, Path] = {}
    for f in sorted((DATA / "ct_tcga_luad" / "dicom").glob("*.dcm")):
        pid = str(pydicom.dcmread(str(f), stop_before_pixels=True).PatientID)
        first.setdefault(pid, f)
    pids = sorted(first)
    step = len(pids) / n
    out = []
    for i in range(n):
        pid = pids[min(int((i + 0.5) * step), len(pids) - 1)]
        ds = pydicom.dcmread(str(first[pid]))
        hu = ds.pixel_array.astype(np.float64) * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
        hu = np.clip(hu, -1000.0, None)  # outside the scan circle: air
        px = float(ds.PixelSpacing[0]) * ds.Rows / size
        out.append((pid, resize(hu, (size, size), anti_aliasing=True, preserve_range=True), px))
    return out


def brats_slices() -> list[tuple[str, np.ndarray]]:
    """One axial slice (z = 77) per BraTS patient, alternating FLAIR and T1c, background 0."""
    import nibabel as nib

    out = []
    cases = sorted((DATA / "mr_brats2015").glob("*/brats_*"))
    for i, case in enumerate(cases):
        mod = "Flair" if i % 2 == 0 else "T1c"
        vol = np.asarray(nib.load(str(case / f"{mod}_subtrMeanDivStd.nii.gz")).dataobj, dtype=np.float64)
        out.append((f"{case.name}/{mod}", vol[:, :, 77] - vol.min()))
    return out


def read_cfl(base: Path) -> np.ndarray:
    """BART ``.cfl``/``.hdr`` (complex64, column-major)."""
    lines = base.with_suffix(".hdr").read_text().splitlines()
    dims = [int(d) for d in lines[lines.index("# Dimensions") + 1].split()]
    return np.fromfile(base.with_suffix(".cfl"), dtype=np.complex64).reshape(dims, order="F")


# --- CT ---------------------------------------------------------------------------------------------


def bench_ct(n_slices: int, views: list[int], i0s: list[float | None], oracle: bool) -> list[tuple]:
    from operators.noise import hu_to_mu, mu_to_hu, transmission_noise
    from operators.radon import ParallelBeam

    slices = ct_slices(n_slices)
    rows = []
    for i0 in i0s:
        for nv in views:
            acc: dict[str, list] = {}
            for k, (_pid, hu, px) in enumerate(slices):
                op = ParallelBeam(256, np.linspace(0, np.pi, nv, endpoint=False), pixel_size_mm=px)
                x = torch.from_numpy(hu_to_mu(hu)).float()[None, None]
                y = op(x)
                if i0 is not None:
                    y = transmission_noise(y, i0, generator=torch.Generator().manual_seed(k))
                ref = torch.from_numpy(hu)[None, None]
                methods = {
                    "FBP": lambda: classical.fbp(op, y),
                    "SIRT": lambda: classical.sirt(op, y),
                    "CGLS": lambda: classical.cgls(op, y),
                    "TV-PDHG": lambda: classical.tv_pdhg(op, y, i0=i0),
                }
                for name, fn in methods.items():
                    t = time.perf_counter()
                    xr = fn()
                    dt = time.perf_counter() - t
                    m = ct_metrics(mu_to_hu(xr), ref)
                    acc.setdefault(name, []).append((m["psnr"][0], m["ssim"][0], dt))
                if oracle:
                    w = torch.tensor(ORACLE_GRID)
                    yb = y.expand(len(w), -1, -1, -1).contiguous()
                    t = time.perf_counter()
                    dw = classical.transmission_weights(yb) if i0 is not None else None
                    xr = classical.pdhg_tv(op, yb, w, 300, nonneg=True, data_weights=dw)
                    dt = time.perf_counter() - t
                    m = ct_metrics(mu_to_hu(xr), ref.expand(len(w), -1, -1, -1))
                    j = int(np.argmax(m["psnr"]))
                    acc.setdefault("TV oracle", []).append((m["psnr"][j], m["ssim"][j], dt))
            for name, vals in acc.items():
                v = np.array(vals)
                rows.append(("CT", f"{nv} views", "noise-free" if i0 is None else f"I0={i0:g}", name,
                             v[:, 0].mean(), v[:, 1].mean(), v[:, 2].mean(), len(v)))
                print_row(rows[-1])
    return rows


# --- MRI --------------------------------------------------------------------------------------------


def bench_mri(accels: list[int]) -> list[tuple]:
    from operators.fourier import CartesianFourier
    from operators.masks import equispaced_mask

    centre = {4: 0.08, 8: 0.04}
    slices = brats_slices()
    rows = []
    for acc in accels:
        res: dict[str, list] = {}
        for k, (_, im) in enumerate(slices):
            x = torch.from_numpy(im).to(torch.complex64)[None, None]
            mask = equispaced_mask(im.shape[-1], acc, centre.get(acc, 0.32 / acc), seed=k)
            op = CartesianFourier(mask, image_shape=im.shape)
            y = op(x)
            for name, fn in {
                "zero-filled": lambda: classical.zero_filled(op, y),
                "CG-SENSE": lambda: classical.cg_sense(op, y),
                "CS-TV": lambda: classical.cs_tv(op, y),
            }.items():
                t = time.perf_counter()
                xr = fn()
                dt = time.perf_counter() - t
                m = mr_metrics(xr.abs(), x.abs())
                res.setdefault(name, []).append((m["psnr"][0], m["ssim"][0], dt))
        for name, vals in res.items():
            v = np.array(vals)
            rows.append(("MRI", f"{acc}x equispaced", "single-coil", name,
                         v[:, 0].mean(), v[:, 1].mean(), v[:, 2].mean(), len(v)))
            print_row(rows[-1])
    rows += bench_8coil()
    return rows


def bench_8coil() -> list[tuple]:
    from operators.coils import espirit_maps
    from operators.fourier import CartesianFourier

    root = DATA / "mr_brain_kspace_8coil"
    ksp = read_cfl(root / "ksp")
    ref = read_cfl(root / "img")
    k = np.ascontiguousarray(np.moveaxis(ksp.reshape(ksp.shape[1], ksp.shape[2], ksp.shape[3]), -1, 0))
    ref_mag = np.abs(ref.reshape(ref.shape[1], ref.shape[2], ref.shape[4])[..., 0])
    mask = torch.from_numpy(np.abs(k).sum(0) > 0)
    op = CartesianFourier(mask, coil_maps=espirit_maps(torch.from_numpy(k)))
    y = torch.from_numpy(k)[None]
    rows = []
    for name, fn in {
        "zero-filled": lambda: classical.zero_filled(op, y),
        "CG-SENSE": lambda: classical.cg_sense(op, y),
        "CS-TV": lambda: classical.cs_tv(op, y),
    }.items():
        t = time.perf_counter()
        a = fn().abs()[0, 0].double().numpy()
        dt = time.perf_counter() - t
        scale = float((a * ref_mag).sum() / (a * a).sum())
        m = mr_metrics(scale * a, ref_mag)
        rows.append(("MRI", f"8-coil real ({mask.float().mean():.1%})", "vs BART full-data", name,
                     m["psnr"], m["ssim"], dt, 1))
        print_row(rows[-1])
    return rows


def print_row(r: tuple) -> None:
    print(f"| {r[0]:3s} | {r[1]:22s} | {r[2]:17s} | {r[3]:11s} | {r[4]:6.2f} | {r[5]:.3f} | {r[6]:6.2f} | {r[7]} |",
          flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--ct", action="store_true", help="run the CT part (default: both)")
    ap.add_argument("--mri", action="store_true", help="run the MRI part (default: both)")
    ap.add_argument("--n-ct", type=int, default=4, help="number of CT slices (distinct patients)")
    ap.add_argument("--views", default="8,16,32,60")
    ap.add_argument("--i0", type=float, default=None, help="also run Poisson noise at this I0")
    ap.add_argument("--oracle", action="store_true", help="add TV with the weight tuned per slice")
    ap.add_argument("--accels", default="4,8")
    args = ap.parse_args()
    both = not (args.ct or args.mri)
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "2")))
    print("| mod | setting                | data              | method      | PSNR   | SSIM  | s/slice| n |")
    print("|-----|------------------------|-------------------|-------------|--------|-------|--------|---|")
    if args.ct or both:
        i0s: list[float | None] = [None] + ([args.i0] if args.i0 else [])
        bench_ct(args.n_ct, [int(v) for v in args.views.split(",")], i0s, args.oracle)
    if args.mri or both:
        bench_mri([int(a) for a in args.accels.split(",")])


if __name__ == "__main__":
    main()
