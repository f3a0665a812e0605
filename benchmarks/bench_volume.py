"""Wall time and peak memory of ``recon reconstruct`` on the first N slices of a CT series.

::

    python benchmarks/bench_volume.py ../shared/data/ct_covid_ct_md_volume/dicom/normal002 \\
        --slices 24 48 --views 8 --out /tmp/bench_volume [--nfe 50 --samples 1] [--no-volume]
    python benchmarks/bench_volume.py ../shared/data/ct_ircad_patient01/PATIENT_DICOM --slices 129 ...

For each N the first N slices (in table position order) are linked into ``OUT/series_N``,
simulated with ``recon simulate`` (parallel beam, ``--views``, I0 1e5) and reconstructed with the
bundled CT prior. Each ``recon reconstruct`` runs in its own process, so its peak resident memory
(``ru_maxrss`` of that child) is its own. Prints a table and writes ``OUT/bench_volume.json``
(N, seconds, peak RSS in GiB, mean PSNR / SSIM from the run's report).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import pydicom


def _positioned_files(series: Path) -> list[Path]:
    """The series' files sorted by slice position (z of ImagePositionPatient)."""
    files = [p for p in sorted(series.iterdir()) if p.is_file()]
    z = {p: float(pydicom.dcmread(p, stop_before_pixels=True).ImagePositionPatient[2]) for p in files}
    return sorted(files, key=z.__getitem__)


def _measured(cmd: list[str]) -> tuple[float, float]:
    """Run ``cmd`` in a child process: ``(seconds, peak RSS of the child in GiB)``."""
    probe = ("import resource, subprocess, sys; r = subprocess.run(sys.argv[1:]).returncode; "
             "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss); sys.exit(r)")
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", probe, *cmd], capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    if out.returncode:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{out.stderr[-2000:]}")
    return seconds, int(out.stdout.strip().splitlines()[-1]) / 2**20  # KiB -> GiB (Linux)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("series", type=Path, help="a CT DICOM series folder")
    ap.add_argument("--slices", type=int, nargs="+", default=[24, 48])
    ap.add_argument("--views", type=int, default=8)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--prior", default="ct")
    ap.add_argument("--reconstruct-args", default="", help="more options for recon reconstruct, one string")
    args = ap.parse_args(argv)

    files = _positioned_files(args.series)
    rows = []
    for n in args.slices:
        if n > len(files):
            raise SystemExit(f"{args.series}: has {len(files)} slices, fewer than {n}")
        series = args.out / f"series_{n}"
        series.mkdir(parents=True, exist_ok=True)
        for f in files[:n]:
            link = series / f.name
            if not link.exists():
                link.symlink_to(f.resolve())
        sino, rec = args.out / f"sino_{n}", args.out / f"recon_{n}"
        if not sino.exists():
            subprocess.run(["recon", "simulate", str(series), "--modality", "ct", "--views", str(args.views),
                            "--out", str(sino), "--no-progress"], check=True)
        cmd = ["recon", "reconstruct", str(sino), "--out", str(rec), "--prior", args.prior, "--overwrite",
               "--no-progress", *args.reconstruct_args.split()]
        seconds, rss = _measured(cmd)
        report = json.loads((rec / "report.json").read_text())
        row = {"slices": n, "seconds": round(seconds, 1), "seconds_per_slice": round(seconds / n, 2),
               "peak_rss_gib": round(rss, 2), "psnr": report.get("mean_psnr"), "ssim": report.get("mean_ssim"),
               "volume": (report.get("settings") or {}).get("volume")}
        rows.append(row)
        print(json.dumps(row))
    (args.out / "bench_volume.json").write_text(json.dumps(rows, indent=1) + "\n")
    print(f"{'slices':>6s} {'seconds':>8s} {'s/slice':>8s} {'RSS GiB':>8s}")
    for r in rows:
        print(f"{r['slices']:6d} {r['seconds']:8.1f} {r['seconds_per_slice']:8.2f} {r['peak_rss_gib']:8.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
