#!/bin/bash
# Two recon jobs on one machine against one alone: wall seconds of `recon reconstruct` on the same
# sinogram directory, solo and as two concurrent jobs, with a given --threads per job.
#   bash benchmarks/bench_concurrency.sh SINOGRAM_DIR [THREADS_PER_JOB] [EXTRA recon OPTIONS...]
# Run it on an otherwise idle machine. Speed fraction of solo = solo seconds / concurrent seconds.
set -euo pipefail
sino=$1; threads=${2:-$(nproc)}; shift $(( $# > 1 ? 2 : 1 ))
out=$(mktemp -d)
run() {  # LABEL [recon options...]
    local label=$1 t0; shift; t0=$(date +%s.%N)
    recon reconstruct "$sino" --out "$out/$label" --prior ct --overwrite --no-progress --threads "$threads" "$@" >/dev/null 2>&1
    echo "$label $(python3 -c "print(f'{$(date +%s.%N) - $t0:.1f}')") s"
}
run solo "$@"
run job_a "$@" & run job_b "$@" & wait
rm -rf "$out"
