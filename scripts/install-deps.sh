#!/usr/bin/env bash
# Installs Blocklab's build and runtime dependencies on Debian 12 (apt).
# Skips apt entirely when everything is already installed.
set -euo pipefail
PKGS=(cmake g++ make libeigen3-dev libsqlite3-dev nlohmann-json3-dev libgtest-dev
      libbenchmark-dev libopenblas-openmp-dev libhwy-dev qt6-base-dev qt6-charts-dev qt6-svg-dev xvfb
      ccache  # rebuilds of an unchanged file, in any clone of the repo, come from the cache
      clang libclang-rt-dev libomp-dev  # clang: the sanitizer build and libFuzzer
      libopenmpi-dev openmpi-bin  # optional: data-parallel training (train --distributed)
      slurm-wlm munge)  # the single-node Slurm cluster of tests/cli_slurm_test.cpp
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
echo "Installing: ${missing[*]}"
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}"
