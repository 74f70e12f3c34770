#!/usr/bin/env bash
# Runs every libFuzzer fuzzer of a BLOCKLAB_FUZZ build for a bounded time on
# its seed corpus (fuzz/corpus/<name>/). Exits non-zero if any fuzzer finds a
# crash, sanitizer error, leak, timeout or out-of-memory; the input that did
# it is kept in <build>/fuzz-artifacts/ (rerun: <build>/fuzz/fuzz_<name> FILE).
#   bash scripts/fuzz.sh [BUILD_DIR] [SECONDS_EACH] [FUZZER...]
set -uo pipefail
cd "$(dirname "$0")/.."
BUILD="${1:-build-asan}"
SECONDS_EACH="${2:-20}"
shift 2 2>/dev/null || shift $#
FUZZERS=("$@")
# Default: every fuzzer fuzz/CMakeLists.txt builds (one list, not a copy of it).
[ ${#FUZZERS[@]} -eq 0 ] && read -ra FUZZERS <<< "$(sed -n 's/^set(FUZZERS \(.*\))/\1/p' fuzz/CMakeLists.txt)"
ARTIFACTS="$BUILD/fuzz-artifacts"
mkdir -p "$ARTIFACTS"
failed=()
start=$(date +%s)
for f in "${FUZZERS[@]}"; do
  bin="$BUILD/fuzz/fuzz_$f"
  [ -x "$bin" ] || { echo "fuzz: $bin is not built" >&2; failed+=("$f(not built)"); continue; }
  # New inputs go to a scratch corpus; the seeds in the repository stay as they are.
  work=$(mktemp -d)
  log="$ARTIFACTS/$f.log"
  "$bin" "$work" "fuzz/corpus/$f" -max_total_time="$SECONDS_EACH" -timeout=10 \
    -rss_limit_mb=2048 -max_len=65536 -print_final_stats=1 -artifact_prefix="$ARTIFACTS/$f-" \
    > "$log" 2>&1
  rc=$?
  runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$')
  cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1 | grep -o '[0-9]*')
  if [ $rc -ne 0 ]; then
    failed+=("$f")
    echo "fuzz_$f: FAILED (exit $rc), see $log"
    grep -E 'ERROR: |SUMMARY: |Test unit written|==[0-9]+==' "$log" | head -20
  else
    echo "fuzz_$f: ok, ${runs:-?} inputs in ${SECONDS_EACH} s, coverage ${cov:-?} edges"
  fi
  rm -rf "$work"
done
echo "fuzzers: ${#FUZZERS[@]} run for ${SECONDS_EACH} s each in $(( $(date +%s) - start )) s, ${#failed[@]} failed${failed:+: ${failed[*]}}"
[ ${#failed[@]} -eq 0 ]
