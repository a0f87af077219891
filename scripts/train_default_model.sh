#!/usr/bin/env bash
# The bundled default model, start to finish, on a CPU (docs/real_footage.md):
#   1. fetch vtest.avi (Debian's opencv-doc) into the cache;
#   2. teacher labels (BlazePose on full-resolution crops) for its test (0-299), train (300-744)
#      and val (745-794) frames; only train is trained on, val picks the checkpoint, test is the
#      benchmark's reference;
#   3. synthetic training videos (starpose-synth, preset train);
#   4. starpose-train small_real_64x48: the hrnet_small pose net on the HR crops, then the SR
#      network with the compound loss against it (frozen);
#   5. copy the result to starpose_ros/assets/starpose_small_real.pt and run the benchmark.
# Each step is skipped when its output exists, so a re-run continues (training resumes).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
bash scripts/setup.sh
bash scripts/setup_teacher.sh
# shellcheck disable=SC1091
. scripts/env.sh
VIDEO="$(starpose-fetch-footage | head -n 1)"
LABELS=outputs/real/vtest
for split in "test 0:300" "train 300:745" "val 745:795"; do
  set -- $split
  [ -f "$LABELS/annotations/$1/vtest.json" ] || \
    .venv-teacher/bin/starpose-label "$VIDEO" --frames "$2" --split "$1" --seq vtest --out "$LABELS"
done
[ -d outputs/synth_train/annotations/train ] || starpose-synth generate outputs/synth_train --preset train --seed 0
starpose-train small_real_64x48
cp outputs/real_model/sr/starpose.pt starpose_ros/assets/starpose_small_real.pt
python benchmarks/bench_real_footage.py --model starpose_ros/assets/starpose_small_real.pt --labels "$LABELS" \
  --split test --out outputs/bench_real
