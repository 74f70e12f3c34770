#!/usr/bin/env bash
# Interleaved tokens/s comparison: blocklab-cli bench vs ../shared/perf/torch_ref.py
# on the same model, batch and thread count, in one sitting (this VM drifts by
# 15-30% from minute to minute, so runs alternate and the median is reported).
# Usage: bench/compare_torch.sh BUILD_DIR [REPS]   (prints a markdown table)
#   CASES="gpt-small:small:15" THREADS=1 bench/compare_torch.sh build 3   (a subset)
#   ISA=avx2 bench/compare_torch.sh build 3   (an AVX2 desktop, measured on any AVX-512 CPU)
# Both sides use Debian's OpenBLAS (../shared/perf/README.md: the fair PyTorch
# anchor) with the best kernel for the CPU: OPENBLAS_CORETYPE=SkylakeX where
# the CPU has AVX-512, OpenBLAS's own choice elsewhere. ISA=avx2 forces both
# sides down to AVX2: BLOCKLAB_ISA=avx2 and OPENBLAS_CORETYPE=Haswell.
set -euo pipefail
BUILD=${1:?build dir}
REPS=${2:-3}
HERE=$(cd "$(dirname "$0")/.." && pwd)
PERF=${PERF_DIR:-$HERE/../shared/perf}
CLI=$BUILD/app/blocklab-cli
ISA=${ISA:-best}
case "$ISA" in
  best)
    unset BLOCKLAB_ISA
    if grep -qw avx512f /proc/cpuinfo; then export OPENBLAS_CORETYPE=SkylakeX
    else unset OPENBLAS_CORETYPE; fi ;;
  avx2) export BLOCKLAB_ISA=avx2 OPENBLAS_CORETYPE=Haswell ;;
  *) echo "ISA must be best or avx2" >&2; exit 2 ;;
esac
echo "ISA=$ISA OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-unset, OpenBLAS picks}" >&2
"$CLI" --version >&2
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
