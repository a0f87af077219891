#!/usr/bin/env bash
# Table 4 on real footage (docs/real_footage.md): the `small` STAR-Pose, full and the four
# ablations, two SR seeds each, against the bundled model's frozen pose net, CPU-sized runs
# (STEPS SR steps, two lanes of one thread), then x4 accuracy on the vtest test frames with tight
# boxes beside the two baselines. Needs the labels and pose net of scripts/train_default_model.sh.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
# shellcheck disable=SC1091
. scripts/env.sh
STEPS="${STEPS:-400}"
OUT="${OUT:-outputs/real_repro}"
run() {  # variant seed
  local dir="$OUT/$1_s$2"
  [ -f "$dir/starpose.pt" ] && return 0
  local ablation=()
  [ "$1" = full ] || ablation=(--set "model.ablation=$1")
  OMP_NUM_THREADS=1 starpose-train small_real_64x48 --stage sr --out "$dir" "${ablation[@]}" \
    --set "schedule.seed=$2" --set "schedule.steps=$STEPS" --set schedule.threads=1 \
    --set schedule.num_workers=0 > "$dir.log" 2>&1
}
mkdir -p "$OUT"
for seed in 0 1; do
  for variant in full no_temporal relu_kernel no_cnn_branch pixel_loss_only; do
    run "$variant" "$seed" &
    [ "$(jobs -r | wc -l)" -ge 2 ] && wait -n
  done
done
wait
for model in "$OUT"/*/starpose.pt; do
  name="$(basename "$(dirname "$model")")"
  methods=(star_pose)
  [ "$name" = full_s0 ] && methods=(star_pose bicubic resize prior)
  python benchmarks/bench_real_footage.py --model "$model" --split test --scales 4 --boxes tight \
    --methods "${methods[@]}" --no-speed --out "$OUT/eval/$name" > "$OUT/eval_$name.log" 2>&1
done
python - "$OUT" <<'PY'
import json, sys
from pathlib import Path
out = Path(sys.argv[1])
rows = {}
for path in sorted(out.glob('eval/*/results.json')):
    for row in json.loads(path.read_text())['rows']:
        variant, seed = path.parent.name.rsplit('_s', 1)
        key = variant if row['method'] == 'star_pose' else row['method']
        rows.setdefault(key, []).append(row['pck'])
lines = ['| variant | PCK@0.2 at x4 (tight boxes), per seed | mean |', '| --- | --- | ---: |']
for key, values in rows.items():
    lines.append(f"| {key} | {', '.join(f'{v:.3f}' for v in values)} | {sum(values) / len(values):.3f} |")
(out / 'results.md').write_text('\n'.join(lines) + '\n')
print('\n'.join(lines))
PY
