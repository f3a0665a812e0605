#!/usr/bin/env bash
# Dose / scan-time reduction benchmark on the real data in ../shared/data.
#
#   CT: 4 abdominal slices of 3D-IRCADb patient 1, 8/16/32/64 parallel-beam views x full and quarter
#       photon dose, FBP and TV (+ DDS when the bundled CT prior data/priors/ct exists).
#   MR: 4 brain slices of a BraTS 2015 validation volume (T1c, z-scored intensities shifted to a
#       non-negative magnitude), 4x and 8x acceleration with equispaced and Poisson-disc masks,
#       zero-filled and TV compressed sensing (+ DDS when data/priors/mr exists).
#
# Each run writes REPORT_DIR/report.html (summary table, plots, panels) and is resumable: run the
# script again after an interruption and only missing cells are computed. Wall times are printed.
#
# Usage: benchmarks/run_dose_benchmark.sh [OUT_ROOT]     (default: benchmark-reports)
# Environment: SHARED_DATA (default ../shared/data), SLICES_CT / SLICES_MR (slice ranges),
#              MAX_SLICES (default 4), NFE (default 50), DEVICE (default auto), THREADS (default 2),
#              PSNR_LEVELS / SSIM_LEVELS (summary-table levels), EXTRA_ARGS (passed to both runs,
#              e.g. --overwrite).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$here"
out_root="${1:-benchmark-reports}"
shared="${SHARED_DATA:-$here/../shared/data}"
max_slices="${MAX_SLICES:-4}"
nfe="${NFE:-50}"
device="${DEVICE:-auto}"
# Two threads by default: more threads than free cores only add contention.
export OMP_NUM_THREADS="${THREADS:-2}"
recon=(python -m pipelines)
extra=(${EXTRA_ARGS:-})
# Quality levels of the summary tables: a finer ladder than the CLI default (30,35 dB / 0.8,0.9),
# so that the tables also show where classical methods stand at these low doses. Changing them
# later only rewrites the reports (cells are kept).
levels=(--psnr-levels "${PSNR_LEVELS:-25,27.5,30,35}" --ssim-levels "${SSIM_LEVELS:-0.7,0.75,0.8,0.9}")

ct_dir="$shared/ct_ircad_patient01/PATIENT_DICOM"
mr_vol="$shared/mr_brats2015/validation/brats_2013_pat0003_1/T1c_subtrMeanDivStd.nii.gz"

have_prior() { [ -f "$here/data/priors/$1/config.json" ]; }

run_timed() {
  local name="$1"; shift
  local t0 t1
  t0=$(date +%s.%N)
  "$@"
  t1=$(date +%s.%N)
  awk -v n="$name" -v a="$t0" -v b="$t1" 'BEGIN { printf "%s: wall time %.1f s\n", n, b - a }'
}

if [ -d "$ct_dir" ]; then
  ct_methods="fbp,tv"
  if have_prior ct; then ct_methods="$ct_methods,dds"; else echo "CT: no bundled prior in data/priors/ct; skipping dds"; fi
  # abdominal slices with liver, away from the ends of the series
  run_timed "CT benchmark" "${recon[@]}" benchmark "$ct_dir" --modality ct \
    --views 8,16,32,64 --dose 1,0.25 --methods "$ct_methods" --nfe "$nfe" \
    --slices "${SLICES_CT:-30:100}" --max-slices "$max_slices" --size 256 --seed 0 --device "$device" \
    --out "$out_root/ct_ircad_patient01" "${levels[@]}" "${extra[@]}"
else
  echo "CT: $ct_dir not found; skipped"
fi

if [ -f "$mr_vol" ]; then
  mr_methods="zero_filled,cs_tv"
  if have_prior mr; then mr_methods="$mr_methods,dds"; else echo "MR: no bundled prior in data/priors/mr; skipping dds"; fi
  # indices count the brain-containing slices of the volume (empty slices are dropped on reading)
  run_timed "MR benchmark" "${recon[@]}" benchmark "$mr_vol" --modality mr \
    --accel 4,8 --mask equispaced,poisson --methods "$mr_methods" --nfe "$nfe" \
    --slices "${SLICES_MR:-30:110}" --max-slices "$max_slices" --size 256 --seed 0 --device "$device" \
    --out "$out_root/mr_brats_pat0003_t1c" "${levels[@]}" "${extra[@]}"
else
  echo "MR: $mr_vol not found; skipped"
fi
