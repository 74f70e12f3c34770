#!/usr/bin/env bash
# Installs, builds and starts Blocklab on its built-in default: the bundled
# tinyshakespeare corpus and the default preset (gpt-tiny).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
bash scripts/build.sh
exec ./build/app/blocklab-cli train --preset gpt-tiny "$@"
