#!/usr/bin/env bash
# The main job on an embedded default: real street footage (vtest.avi, fetched once into
# ~/.cache/starpose; a synthetic clip where that is impossible), shrunk x4, replayed through the
# node's pipeline with the bundled model on CPU; the overlay video, SR mosaic and report land in
# outputs/demo/.  Extra arguments go to starpose-bag-eval (e.g. --synthetic, --demo-frames 300).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
bash scripts/setup.sh
# shellcheck disable=SC1091
. scripts/env.sh
exec starpose-bag-eval --demo --output outputs/demo "$@"
