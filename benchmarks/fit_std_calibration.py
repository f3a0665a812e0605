"""Fit a prior's std calibration (``uncertainty.json``) from a ``recon validate`` run with ``--samples K``.

    python benchmarks/fit_std_calibration.py VALIDATE_OUT --candidate ct --prior data/priors/ct

reads every sampler cell of the candidate (posterior mean and std per slice) and the reference
images, keeps the pixels inside the body (CT: reference above -900 HU; MR: above 5 % of the slice's
99.9th percentile), fits :func:`priors.calibration.fit_std_calibration` and writes the result into
the prior's directory. Prints the coverage at 1 and 2 std before and after.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from priors.calibration import fit_std_calibration, save_std_calibration

#: Pixels that count: inside the body, where a reader looks (air would dominate the fit otherwise).
CT_BODY_HU = -900.0
MR_BODY_FRACTION = 0.05


def body_mask(reference: np.ndarray, modality: str) -> np.ndarray:
    """``[n, H, W]`` bool: the pixels the calibration is fitted on."""
    if modality == "ct":
        return reference > CT_BODY_HU
    scale = np.percentile(np.abs(reference), 99.9, axis=(1, 2), keepdims=True)
    return np.abs(reference) > MR_BODY_FRACTION * scale


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("validate_out", type=Path)
    p.add_argument("--candidate", required=True, help="the candidate label in VALIDATE_OUT/priors/")
    p.add_argument("--prior", type=Path, required=True, help="prior directory to write uncertainty.json into")
    args = p.parse_args()
    run = args.validate_out / "priors" / args.candidate
    bench = json.loads((run / "benchmark.json").read_text())
    modality, samples = bench["config"]["modality"], int(bench["config"]["samples"])
    reference = np.load(run / "cells" / "reference.npz")["reference"]
    mask = body_mask(reference, modality)
    errors, stds, cells = [], [], []
    for cell in sorted((run / "cells").glob("*.npz")):
        if cell.name == "reference.npz":
            continue
        with np.load(cell) as z:
            if "std" not in z.files:
                continue
            errors.append((z["mean"] - reference)[mask])
            stds.append(z["std"][mask])
            cells.append(cell.stem)
    if not cells:
        raise SystemExit(f"{run}: no cell with a std map (run recon validate with --samples > 1)")
    manifest = json.loads((args.validate_out / "validation.json").read_text()).get("manifest", "")
    cal = fit_std_calibration(np.concatenate(errors), np.concatenate(stds), samples,
                              data={"manifest": Path(manifest).name, "cells": cells,
                                    "n_slices": int(reference.shape[0]), "modality": modality,
                                    "pixels": "CT: reference > -900 HU" if modality == "ct"
                                    else "MR: reference > 5 % of its 99.9th percentile"})
    save_std_calibration(cal, args.prior)
    print(f"scale {cal.scale:.3f} ({samples} samples); coverage 1/2 std raw {cal.coverage_raw['1']:.3f} / "
          f"{cal.coverage_raw['2']:.3f}, calibrated {cal.coverage_calibrated['1']:.3f} / {cal.coverage_calibrated['2']:.3f}"
          f" -> {args.prior / 'uncertainty.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
