#!/usr/bin/env bash
# Reliability probes (README "Reliability"): builds the engine, blocklab-cli,
# the engine + CLI tests and the fuzzers with clang under AddressSanitizer +
# UndefinedBehaviorSanitizer (no recovery) into ./build-asan, runs those tests
# (SANITIZE_TESTS below: all but the slowest), then every fuzzer for
# FUZZ_SECONDS each (scripts/fuzz.sh). Ends with one summary line.
set -uo pipefail
cd "$(dirname "$0")/.."
JOBS="${BLOCKLAB_JOBS:-2}"
FUZZ_SECONDS="${FUZZ_SECONDS:-20}"
BUILD="${BLOCKLAB_ASAN_BUILD:-build-asan}"
# Test executables built and run here: the readers, store, CLI, LoRA, training
# and the main kernels. Left out to bound CI time (building each costs ~15 s):
# learning (trains to a loss target, ~1 min even in Release), zoo, the other
# per-architecture op tests, and alloc (counts operator new, which ASan
# replaces); the GUI is not built.
SANITIZE_TESTS=(safetensors_test adapter_io_test adapter_saver_test checkpoint_test store_test
  tokenizer_test dataset_test config_test train_config_test hostile_input_test
  hostile_formats_test cli_test cli_runs_test cli_models_test lora_cli_test
  gemm_test attention_test matmul_test norm_test softmax_test cross_entropy_test lora_test
  quantize_test trainer_test model_test finetune_test optimizer_test multi_adapter_test
  lifecycle_test cli_shared_db_test cli_lora_resume_test elementwise_test embedding_test
  rope_test activation_test moe_test model_level_test shape_ops_test sweep_test
  preference_loss_test preference_data_test token_file_test synthetic_test equation_eval_test
  dpo_test grpo_test cli_data_test)
start=$(date +%s)
status=0
step() { echo "== sanitize: $*"; }

source scripts/ccache-env.sh
step "configure $BUILD (clang, -fsanitize=address,undefined, fuzzers)"
cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O1 -gline-tables-only" \
  -DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++ \
  -DBLOCKLAB_FUZZ=ON -DBLOCKLAB_GUI=OFF -DBLOCKLAB_BENCH=OFF "${CCACHE_ARGS[@]}" > "$BUILD-configure.log" 2>&1 ||
  { cat "$BUILD-configure.log"; echo "sanitizers: configure FAILED"; exit 1; }
fuzzers=$(sed -n 's/^set(FUZZERS \(.*\))/\1/p' fuzz/CMakeLists.txt)
targets=(blocklab-cli "${SANITIZE_TESTS[@]}")
for f in $fuzzers; do targets+=("fuzz_$f"); done
step "build ${#targets[@]} targets"
cmake --build "$BUILD" -j"$JOBS" --target "${targets[@]}" ||
  { echo "sanitizers: build FAILED"; exit 1; }
built=$(date +%s)

step "tests under ASan + UBSan"
# Per-ISA tests run on one ISA here (the release build runs all three).
(cd "$BUILD" && ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 \
  UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
  ctest -j"$JOBS" --timeout 1200 --output-on-failure -E '_NOT_BUILT|\.(avx512|scalar)$' \
    2>&1 | tee "ctest-asan.log" | grep -vE '^ *[0-9]+/[0-9]+ Test +#[0-9]+: .* Passed')
tests_line=$(grep -E 'tests passed, [0-9]+ tests failed' "$BUILD/ctest-asan.log" | tail -1)
grep -qE '^100% tests passed' "$BUILD/ctest-asan.log" || status=1
tested=$(date +%s)

step "fuzzers, $FUZZ_SECONDS s each"
bash scripts/fuzz.sh "$BUILD" "$FUZZ_SECONDS" | tee "$BUILD/fuzz.log"
[ "${PIPESTATUS[0]}" -eq 0 ] || status=1
fuzz_line=$(tail -1 "$BUILD/fuzz.log")
end=$(date +%s)

echo "sanitizers: $([ $status -eq 0 ] && echo ok || echo FAILED) -" \
  "ASan+UBSan tests: ${tests_line:-none ran};" \
  "$fuzz_line; build $((built - start)) s, tests $((tested - built)) s," \
  "fuzzing $((end - tested)) s"
exit $status
