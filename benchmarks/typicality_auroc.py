"""How well does a prior's typicality score tell its own kind of slice from others? AUROC per set.

::

    python benchmarks/typicality_auroc.py --prior ct --out typicality_ct.json
    python benchmarks/typicality_auroc.py --prior mr --out typicality_mr.json

In-distribution scores: the prior's reference scores (leave-one-patient-out, as a new patient's
would be; ``typicality.json``) and, for CT, the slices of ``ct_covid_ct_md_volume``, a patient no
prior and no reference has seen. Out-of-distribution sets (``benchmarks/typicality_sets.py``):

* CT prior: brain MR mapped onto the CT window, ellipse and Shepp-Logan phantoms, white noise,
  CT with two metal implants (pasted, and as a scanner shows them: projected, noisy, FBP), and the
  real synchrotron crystal of ``ct_raw_synchrotron_i13``.
* MR prior: fastMRI knee images and CT slices as magnitudes.

AUROC = P(score of an outlier > score of a typical slice), ties counted half (Mann-Whitney);
1 is perfect separation, 0.5 chance. Also per set the share flagged at the reference's level and
the seconds per slice of the score.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import typicality_sets as sets  # noqa: E402
from pipelines.training_data import load_training_slices  # noqa: E402
from pipelines.validate import load_manifest  # noqa: E402
from priors import load_prior  # noqa: E402
from priors.typicality import load_reference, score_images  # noqa: E402

REPO = Path(__file__).resolve().parent.parent


def auroc(outliers: np.ndarray, typical: np.ndarray) -> float:
    """P(outlier score > typical score) + P(equal) / 2 over all pairs (NaN outliers count as above)."""
    o = np.where(np.isnan(outliers), np.inf, outliers)[:, None]
    t = np.asarray(typical)[None, :]
    return float(np.mean((o > t) + 0.5 * (o == t)))


def _holdout_slices(manifest: Path, modality: str, stride: int) -> list[np.ndarray]:
    m = load_manifest(manifest)
    data = load_training_slices([m.root / f for f in m.holdout_files], modality)
    return list(data.slices[::stride])


def _volume_patient(shared: Path, stride: int) -> list[np.ndarray]:
    data = load_training_slices([shared / "ct_covid_ct_md_volume"], "ct")
    return list(data.slices[::stride])


def build_sets(prior_name: str, shared: Path) -> tuple[dict[str, list[np.ndarray]], dict[str, list[np.ndarray]]]:
    """``(typical, outliers)``: named lists of slices in the prior's unit."""
    volume = _volume_patient(shared, 3)
    if prior_name == "ct":
        mr = _holdout_slices(REPO / "benchmarks/validation/mr.json", "mr", 25)
        typical = {"unseen CT patient (ct_covid_ct_md_volume)": volume}
        outliers = {
            "brain MR on the CT window": [sets.as_ct_window(s) for s in mr],
            "ellipse phantoms": sets.ellipse_phantoms(10),
            "Shepp-Logan": sets.shepp_logan(),
            "white noise": sets.noise_slices(3),
            "metal implants, pasted": [sets.with_metal(s, 4.0, streaks=False) for s in volume[::2]],
            "metal implants, scanned (streaks)": [sets.with_metal(s, 4.0, streaks=True) for s in volume[1::2]],
            "synchrotron crystal (I13)": sets.crystal_slices(shared / "ct_raw_synchrotron_i13", 10),
        }
    else:
        typical = {}
        outliers = {
            "fastMRI knee": sets.knee_slices(shared / "mr_fastmri_knee_samples"),
            "CT as magnitude": sets.ct_as_magnitude(volume),
            "ellipse phantoms as magnitude": sets.ct_as_magnitude(sets.ellipse_phantoms(10)),
        }
    return typical, outliers


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--prior", default="ct", help="bundled prior name or checkpoint directory")
    ap.add_argument("--shared", type=Path, default=REPO.parent / "shared" / "data")
    ap.add_argument("--out", type=Path, default=None, help="write the table as JSON")
    ap.add_argument("--batch", type=int, default=4)
    args = ap.parse_args(argv)

    prior = load_prior(args.prior)
    ref = load_reference(args.prior)
    msma = ref.method(None)
    typical_sets, outlier_sets = build_sets(prior.modality, args.shared)
    typical_scores = {"reference (leave-one-patient-out)": np.asarray(msma.tail.scores)}
    rows: list[dict] = []
    seconds, n_scored = 0.0, 0
    for name, images in {**typical_sets, **outlier_sets}.items():
        t0 = time.perf_counter()
        s = score_images(prior, images, ref, batch_size=args.batch)
        seconds += time.perf_counter() - t0
        n_scored += len(images)
        if name in typical_sets:
            typical_scores[name] = s.score
        rows.append({"set": name, "n": len(images), "flagged": float(np.mean(s.flag)),
                     "median_score": float(np.nanmedian(s.score)), "scores": s.score.tolist()})
    typical = np.concatenate(list(typical_scores.values()))
    for r in rows:
        if r["set"] not in typical_sets:
            r["auroc"] = auroc(np.asarray(r["scores"], dtype=np.float64), typical)
    result = {"prior": str(args.prior), "method": msma.method, "level": ref.level,
              "typical": {k: len(v) for k, v in typical_scores.items()},
              "seconds_per_slice": seconds / max(n_scored, 1), "sets": rows}
    print(f"{'set':40s} {'n':>4s} {'AUROC':>6s} {'flagged':>8s} {'median':>9s}")
    print(f"{'reference (leave-one-patient-out)':40s} {len(msma.tail.scores):4d} {'':>6s} {'':>8s} "
          f"{np.median(msma.tail.scores):9.2f}")
    for r in rows:
        au = f"{r['auroc']:.3f}" if "auroc" in r else ""
        print(f"{r['set']:40s} {r['n']:4d} {au:>6s} {r['flagged']:8.2f} {r['median_score']:9.2f}")
    print(f"{result['seconds_per_slice']:.2f} s per slice")
    if args.out:
        args.out.write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
