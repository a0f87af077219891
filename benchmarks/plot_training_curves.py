"""Loss curves of training runs (their `metrics.jsonl`) beside validation accuracy over steps.

    python benchmarks/plot_training_curves.py --run pose=outputs/real_model/pose --run sr=outputs/real_model/sr \
        --val outputs/real_model/val_curve.json --out docs/images/real_training.png

`--val` is a JSON list of {"stage", "step", "pck"} rows (bench_real_footage.py on the val split
for checkpoints taken during the run): where accuracy stops rising is read from it, not from the loss.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import matplotlib

matplotlib.use('Agg')
import matplotlib.pyplot as plt  # noqa: E402


def read_metrics(run: Path) -> list[dict]:
    """The run's logged steps (one JSON object per line)."""
    return [json.loads(line) for line in (run / 'metrics.jsonl').read_text().splitlines() if line.strip()]


def main(argv: list[str] | None = None) -> int:
    """Plot one loss panel per run and, with --val, the validation PCK per stage."""
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--run', action='append', required=True, metavar='NAME=DIR')
    parser.add_argument('--val', type=Path)
    parser.add_argument('--out', type=Path, required=True)
    args = parser.parse_args(argv)
    runs = [item.split('=', 1) for item in args.run]
    val = json.loads(args.val.read_text()) if args.val else []
    limits = (min(p['pck'] for p in val) - 0.05, max(p['pck'] for p in val) + 0.05) if val else None
    figure, axes = plt.subplots(1, len(runs), figsize=(6 * len(runs), 4), squeeze=False)
    for axis, (name, folder) in zip(axes[0], runs, strict=True):
        rows = read_metrics(Path(folder))
        steps = [r['step'] for r in rows]
        for key in ('loss', 'pixel', 'pose'):
            if key in rows[0]:
                axis.plot(steps, [r[key] for r in rows], label=key, linewidth=1)
        axis.set_yscale('log')
        axis.set_xlabel('step')
        axis.set_title(f'{name}: training loss')
        points = [r for r in val if r['stage'] == name]
        if points:
            twin = axis.twinx()
            twin.plot([p['step'] for p in points], [p['pck'] for p in points], 'ko-', label='val PCK@0.2 (x4)')
            twin.set_ylabel('val PCK@0.2')
            twin.set_ylim(*limits)  # one scale for every stage, so a flat stage looks flat
            twin.legend(loc='upper right')
        axis.legend(loc='lower left')
    figure.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(args.out, dpi=90)
    print(f'-> {args.out}')
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
