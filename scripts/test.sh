#!/usr/bin/env bash
# The whole test suite: install dependencies, build, run the reliability probes
# (ASan + UBSan build of the engine and CLI tests, every fuzzer for a bounded
# time: scripts/sanitize.sh; BLOCKLAB_SANITIZE=0 skips them), then every test
# of the release build with CTest, whose summary ends the output.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
bash scripts/build.sh
sanitize=0
if [ "${BLOCKLAB_SANITIZE:-1}" != 0 ]; then
  bash scripts/sanitize.sh || sanitize=$?
fi
cd build
ctest_rc=0
ctest --output-on-failure -j2 --timeout 1200 || ctest_rc=$?
if [ $sanitize -ne 0 ]; then
  echo "FAILED: the sanitizer / fuzzer stage (scripts/sanitize.sh, its 'sanitizers:' line above)"
  exit 1
fi
exit $ctest_rc
