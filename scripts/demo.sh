#!/usr/bin/env bash
# The main job on an embedded default: generate a short synthetic clip, replay it through the
# node's pipeline with the bundled demo checkpoint on CPU, and leave the overlay video and the
# report in outputs/demo/.  Extra arguments go to starpose-bag-eval.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
bash scripts/setup.sh
# shellcheck disable=SC1091
. scripts/env.sh
exec starpose-bag-eval --demo --output outputs/demo "$@"
