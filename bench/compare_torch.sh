#!/usr/bin/env bash
# Interleaved tokens/s comparison: blocklab-cli bench vs ../shared/perf/torch_ref.py
# on the same model, batch and thread count, in one sitting (this VM drifts by
# 15-30% from minute to minute, so runs alternate and the median is reported).
# Usage: bench/compare_torch.sh BUILD_DIR [REPS]   (prints a markdown table)
#   CASES="gpt-small:small:15" THREADS=1 bench/compare_torch.sh build 3   (a subset)
# Both sides use Debian's OpenBLAS with OPENBLAS_CORETYPE=SkylakeX (AVX-512),
# as ../shared/perf/README.md requires for a fair PyTorch anchor.
set -euo pipefail
BUILD=${1:?build dir}
REPS=${2:-3}
HERE=$(cd "$(dirname "$0")/.." && pwd)
PERF=${PERF_DIR:-$HERE/../shared/perf}
CLI=$BUILD/app/blocklab-cli
export OPENBLAS_CORETYPE=SkylakeX
if ! /usr/bin/python3 -c "import torch" 2>/dev/null; then
  echo "python3-torch is not installed (apt-get install python3-torch)" >&2; exit 1
fi
OUT=$(mktemp -d)
echo "raw JSON: $OUT" >&2
# preset:torch-config:steps (torch_ref skips its first 5 steps; bench warms up 5)
CASES=${CASES:-"gpt-tiny:tiny:40 gpt-small:small:15 llama-small:llama_small:15"}
THREADS=${THREADS:-"1 2"}
for rep in $(seq "$REPS"); do
  for c in $CASES; do
    IFS=: read -r preset cfg steps <<<"$c"
    for t in $THREADS; do
      /usr/bin/python3 "$PERF/torch_ref.py" --config "$PERF/configs/$cfg.json" --threads "$t" \
        --steps $((steps + 5)) --val-batches 1 --log-every 1000 --json-out "$OUT/torch-$preset-$t-$rep.json" >/dev/null
      OMP_NUM_THREADS=$t "$CLI" bench --preset "$preset" --threads "$t" --steps "$steps" \
        | tail -1 >"$OUT/ours-$preset-$t-$rep.json"
    done
  done
done
/usr/bin/python3 "$HERE/bench/compare_report.py" "$OUT" "$REPS"
