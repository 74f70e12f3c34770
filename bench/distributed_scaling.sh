#!/usr/bin/env bash
# Data-parallel scaling on one machine (README "Data-parallel training"):
# gpt-tiny training tokens/s at 1 process x 1 thread, 2 MPI ranks x 1 thread
# (fixed-order all-reduce, and MPI_Allreduce for comparison) and 1 process x
# 2 threads, plus the per-step gradient all-reduce time. The configurations
# run interleaved, REPEATS times, and the medians are printed, so a load that
# drifts over the minutes touches every configuration alike.
# Usage: bash bench/distributed_scaling.sh [BUILD_DIR] [REPEATS] [STEPS]
set -euo pipefail
BUILD=${1:-build}
REPEATS=${2:-5}
STEPS=${3:-25}
CLI="$BUILD/app/blocklab-cli"
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export OMPI_MCA_rmaps_base_oversubscribe=yes OMPI_MCA_btl_vader_single_copy_mechanism=none
export OMPI_MCA_pml=ob1 OMPI_MCA_btl=self,vader,tcp OMP_NUM_THREADS=1
ARGS=(train --preset gpt-tiny --steps "$STEPS" --eval-interval 0 --quiet --json)

run() {  # name, command...: appends "tokens_per_sec allreduce_ms" to $TMP/name
  local name=$1; shift
  "$@" --db "$TMP/$name-$RANDOM.db" 2>/dev/null | tail -1 |
    python3 -c 'import json,sys; j=json.load(sys.stdin); print(j["tokens_per_sec"], j.get("allreduce_ms_median", 0))' \
    >> "$TMP/$name"
}

for ((i = 1; i <= REPEATS; i++)); do
  run 1x1 "$CLI" "${ARGS[@]}" --threads 1
  run 2x1 mpirun -np 2 "$CLI" "${ARGS[@]}" --threads 1 --distributed
  BLOCKLAB_ALLREDUCE=mpi run 2x1-mpi_allreduce mpirun -x BLOCKLAB_ALLREDUCE -np 2 "$CLI" "${ARGS[@]}" --threads 1 --distributed
  run 1x2 "$CLI" "${ARGS[@]}" --threads 2
done

python3 - "$TMP" <<'PY'
import os, statistics, sys
d = sys.argv[1]
print(f"{'processes x threads':<22}{'tokens/s (median)':>18}{'min':>9}{'max':>9}{'all-reduce ms/step':>20}")
for name in ["1x1", "2x1", "2x1-mpi_allreduce", "1x2"]:
    rows = [tuple(map(float, l.split())) for l in open(os.path.join(d, name))]
    tps = [r[0] for r in rows]
    ar = statistics.median(r[1] for r in rows)
    print(f"{name:<22}{statistics.median(tps):>18.0f}{min(tps):>9.0f}{max(tps):>9.0f}"
          f"{(f'{ar:.2f}' if name.startswith('2x1') else '-'):>20}")
PY
