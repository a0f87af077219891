#!/usr/bin/env bash
# The test command (README, CI): set-up (idempotent), lint, then the whole pytest suite.
# Extra arguments go to pytest, e.g.  bash scripts/test.sh -k tracker
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
bash scripts/setup.sh
# The teacher extra (its own venv): the labelling tests run BlazePose for real.
bash scripts/setup_teacher.sh
# shellcheck disable=SC1091
. scripts/env.sh
echo "[test] ruff (pycodestyle, pyflakes, pep257 docstrings, imports)"
ruff check .
echo "[test] type check: TensorRT API use against tensorrt-stubs (mypy)"
python scripts/typecheck_tensorrt.py
echo "[test] pytest"
python -m pytest "$@"
