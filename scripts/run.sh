#!/usr/bin/env bash
# Installs, builds and starts Blocklab on its built-in default: the workbench
# window with the gpt-tiny preset and the bundled tinyshakespeare corpus.
# Without a display (no DISPLAY / WAYLAND_DISPLAY) it prints the headless
# alternative instead; `scripts/run.sh --cli` trains in the terminal.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
bash scripts/build.sh
if [ "${1:-}" = "--cli" ]; then
  shift
  exec ./build/app/blocklab-cli train --preset gpt-tiny "$@"
fi
if [ -n "${DISPLAY:-}" ] || [ -n "${WAYLAND_DISPLAY:-}" ] || [ -n "${QT_QPA_PLATFORM:-}" ]; then
  exec ./build/app/blocklab --preset gpt-tiny "$@"
fi
cat >&2 <<'MSG'
No display found (DISPLAY / WAYLAND_DISPLAY are not set), so the workbench window cannot open.
Train headless on the same default (gpt-tiny, bundled tinyshakespeare corpus):
  bash scripts/run.sh --cli            # or: ./build/app/blocklab-cli train --preset gpt-tiny
Browse recorded runs:   ./build/app/blocklab-cli runs list
On a machine with X11 but no monitor:  xvfb-run bash scripts/run.sh
MSG
exit 2
