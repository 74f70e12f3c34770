#!/usr/bin/env bash
# Configures and builds Blocklab (Release; kernels for every vector ISA, chosen
# at run time) into ./build.
set -euo pipefail
cd "$(dirname "$0")/.."
JOBS="${BLOCKLAB_JOBS:-2}"
source scripts/ccache-env.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release "${CCACHE_ARGS[@]}" > build-configure.log 2>&1 || { cat build-configure.log; exit 1; }
cmake --build build -j"$JOBS"
