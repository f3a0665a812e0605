"""Fit a prior's std calibration (``uncertainty.json``) from ``recon validate`` runs with ``--samples K``.

    python benchmarks/fit_std_calibration.py VAL8_OUT VAL16_OUT --candidate ct --prior data/priors/ct
    python benchmarks/fit_std_calibration.py VAL16_OUT --candidate ct --prior data/priors/ct --check

reads every sampler cell of the candidate in each run (posterior mean and std per slice) and the
reference images, keeps the pixels inside the body (CT: reference above -900 HU; MR: above 5 % of
the slice's 99.9th percentile), fits one factor over all of them
(:func:`priors.calibration.fit_std_calibration`) and writes it into the prior's directory. Prints the
coverage at 1 and 2 std before and after, pooled and per cell. ``--check`` writes nothing and prints
the coverage the prior's shipped factor gives on these cells instead (e.g. at another number of
views than it was fitted on).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from priors.calibration import NOMINAL_COVERAGE, coverage, fit_std_calibration, load_std_calibration, save_std_calibration
from recon.metrics import body_mask


def read_cells(validate_out: Path, candidate: str) -> tuple[str, int, int, dict[str, tuple[np.ndarray, np.ndarray]]]:
    """``(modality, samples, n_slices, {cell: (errors, std)})`` of the body pixels of one validate run."""
    run = validate_out / "priors" / candidate
    bench = json.loads((run / "benchmark.json").read_text())
    modality, samples = bench["config"]["modality"], int(bench["config"]["samples"])
    reference = np.load(run / "cells" / "reference.npz")["reference"]
    mask = body_mask(reference, modality)
    cells = {}
    for cell in sorted((run / "cells").glob("*.npz")):
        if cell.name == "reference.npz":
            continue
        with np.load(cell) as z:
            if "std" in z.files:
                cells[cell.stem] = ((z["mean"] - reference)[mask], z["std"][mask])
    if not cells:
        raise SystemExit(f"{run}: no cell with a std map (run recon validate with --samples > 1)")
    return modality, samples, int(reference.shape[0]), cells


def _coverage_line(label: str, e: np.ndarray, s: np.ndarray, scale: float) -> str:
    return (f"{label}: coverage 1/2 std raw {coverage(e, s, 1):.3f} / {coverage(e, s, 2):.3f}, "
            f"x{scale:.3f} {coverage(e, scale * s, 1):.3f} / {coverage(e, scale * s, 2):.3f}")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("validate_out", type=Path, nargs="+", help="recon validate output directories")
    p.add_argument("--candidate", required=True, help="the candidate label in VALIDATE_OUT/priors/")
    p.add_argument("--prior", type=Path, required=True, help="prior directory to write uncertainty.json into")
    p.add_argument("--check", action="store_true", help="print the coverage of the prior's shipped factor; write nothing")
    args = p.parse_args()
    runs = [read_cells(out, args.candidate) for out in args.validate_out]
    if len({(m, k) for m, k, _, _ in runs}) != 1:
        raise SystemExit("the runs differ in modality or samples per slice; fit each on its own")
    modality, samples = runs[0][0], runs[0][1]
    cells = {f"{out.name}/{name}": v for out, (_, _, _, c) in zip(args.validate_out, runs, strict=True) for name, v in c.items()}
    e = np.concatenate([v[0] for v in cells.values()])
    s = np.concatenate([v[1] for v in cells.values()])
    if args.check:
        shipped = load_std_calibration(args.prior)
        if shipped is None:
            raise SystemExit(f"{args.prior}: no uncertainty.json to check")
        scale = shipped.scale
    else:
        manifests = [Path(json.loads((out / "validation.json").read_text()).get("manifest", "")).name
                     for out in args.validate_out]
        cal = fit_std_calibration(e, s, samples, data={
            "manifests": manifests, "cells": list(cells), "n_slices": sum(n for _, _, n, _ in runs),
            "modality": modality,
            "pixels": "CT: reference > -900 HU" if modality == "ct" else "MR: reference > 5 % of its 99.9th percentile"})
        save_std_calibration(cal, args.prior)
        scale = cal.scale
        print(f"scale {scale:.3f} ({samples} samples) -> {args.prior / 'uncertainty.json'}")
    for name, (ce, cs) in cells.items():
        print(_coverage_line(name, ce, cs, scale))
    print(_coverage_line("all", e, s, scale) + f" (nominal {NOMINAL_COVERAGE[1]} / {NOMINAL_COVERAGE[2]})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
