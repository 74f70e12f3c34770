#!/usr/bin/env bash
# Training throughput of every tiny preset (one per architecture family):
# blocklab-cli bench (5 warm-up steps, then N timed steps, median step time),
# repeated REPS times in rotation; prints a markdown table of the medians.
# Usage: bench/zoo_bench.sh BUILD_DIR [REPS] [THREADS] [STEPS]
set -euo pipefail
BUILD=${1:?build dir}
REPS=${2:-3}
THREADS=${3:-2}
STEPS=${4:-15}
CLI=$BUILD/app/blocklab-cli
OUT=$(mktemp -d)
echo "raw JSON: $OUT" >&2
PRESETS=$("$CLI" models list --json | python3 -c '
import json, sys
print(" ".join(p["name"] for p in json.load(sys.stdin)["presets"] if p["name"].endswith("-tiny")))')
for rep in $(seq "$REPS"); do
  for p in $PRESETS; do
    OMP_NUM_THREADS=$THREADS "$CLI" bench --preset "$p" --threads "$THREADS" --steps "$STEPS" \
      | tail -1 >"$OUT/$p-$rep.json"
  done
done
python3 - "$OUT" "$REPS" "$THREADS" $PRESETS <<'PY'
import json, statistics, sys
out, reps, threads, presets = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4:]
print(f"| preset | params | tokens/s median (range), {threads} threads | step ms median | peak RSS MB |")
print("|---|---|---|---|---|")
for p in presets:
    runs = [json.load(open(f"{out}/{p}-{r}.json")) for r in range(1, reps + 1)]
    tps = [r["tokens_per_sec"] for r in runs]
    ms = statistics.median(r["step_time_ms"] for r in runs)
    print(f"| {p} | {runs[0]['params']:,} | {statistics.median(tps):,.0f} ({min(tps):,.0f}-{max(tps):,.0f})"
          f" | {ms:.1f} | {max(r['peak_rss_mb'] for r in runs):.0f} |")
PY
