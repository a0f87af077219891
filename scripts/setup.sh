#!/usr/bin/env bash
# One-command set-up for a fresh machine (Debian 12 / Ubuntu, Python 3.10-3.12, no ROS, no GPU):
# a virtual environment with PyTorch CPU, ONNX Runtime, OpenCV and the ROS 2 wheels, then
# colcon builds msg/ (starpose_msgs) and this package. Safe and fast to re-run.
#
#   bash scripts/setup.sh          # then: source scripts/env.sh
#
# Environment: STARPOSE_VENV (default .venv), PYTHON (default python3).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
VENV="${STARPOSE_VENV:-$ROOT/.venv}"
PYTHON="${PYTHON:-python3}"

if [ ! -x "$VENV/bin/python" ]; then
  echo "[setup] creating virtual environment $VENV"
  "$PYTHON" -m venv "$VENV"
fi
# shellcheck disable=SC1091
. "$VENV/bin/activate"

# pip only when the pinned requirements changed since the last successful install.
STAMP="$VENV/.starpose-requirements.sha256"
WANT="$(cat requirements.txt requirements-ros.txt requirements-typecheck.txt setup.py | sha256sum | cut -d' ' -f1)"
if [ "$(cat "$STAMP" 2>/dev/null)" != "$WANT" ]; then
  echo "[setup] installing pinned Python packages (torch CPU, ONNX Runtime, OpenCV, ROS 2 wheels)"
  python -m pip install --quiet pip==26.3 setuptools==79.0.1 wheel==0.48.0
  python -m pip install --quiet -r requirements.txt -r requirements-ros.txt
  python -m pip install --quiet --no-deps -r requirements-typecheck.txt  # mypy + tensorrt-stubs (no GPU wheels)
  python -m pip install --quiet --no-deps --no-build-isolation -e .
  echo "$WANT" > "$STAMP"
else
  echo "[setup] Python packages up to date"
fi

# The ROS 2 wheels' CMake exports name the wheel builder's Python include dirs; point them at
# this interpreter's so that rosidl can build Python bindings here.
PY_INCLUDE="$(python -c 'import sysconfig; print(sysconfig.get_paths()["include"])')"
NP_INCLUDE="$(python -c 'import numpy; print(numpy.get_include())')"
{ grep -rl --include='*.cmake' '/opt/python/cp3' "$VENV/share" 2>/dev/null || true; } | while read -r f; do
  sed -i -E "s#/opt/python/cp3[0-9]+-cp3[0-9]+/lib/python3\.[0-9]+/site-packages/numpy/_core/include#${NP_INCLUDE}#g; s#/opt/python/cp3[0-9]+-cp3[0-9]+/include/python3\.[0-9]+#${PY_INCLUDE}#g" "$f"
done

export CMAKE_PREFIX_PATH="$VENV${CMAKE_PREFIX_PATH:+:$CMAKE_PREFIX_PATH}"
export AMENT_PREFIX_PATH="$VENV${AMENT_PREFIX_PATH:+:$AMENT_PREFIX_PATH}"
echo "[setup] colcon build: starpose_msgs + starpose_ros"
mkdir -p build
if ! colcon --log-base build/colcon-log build --base-paths . msg \
    --build-base build --install-base install --symlink-install \
    --cmake-args -DBUILD_TESTING=OFF -DPython3_EXECUTABLE="$VENV/bin/python" \
    > build/colcon.out 2>&1; then
  tail -n 60 build/colcon.out
  echo "[setup] colcon build failed (full output: build/colcon.out)" >&2
  exit 1
fi

echo "[setup] done. In each new shell:  source scripts/env.sh"
