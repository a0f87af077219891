"""Mini-reproduction of STAR-Pose on synthetic data, sized for a CPU (docs/mini_reproduction.md).

    python -m starpose_training.mini_repro --out outputs/mini_repro

Steps, each skipped when its output exists (so an interrupted run continues where it stopped):

1. data: a `train`-preset synthetic dataset (`starpose-synth`, PoseTrack18 format, train + val);
2. pose: the tiny HRNet trained on the HR crops (`starpose-train --stage pose`);
3. SR: the `tiny` STAR-Pose at 64x48 and 128x96, full and the four ablations of Table 4, each a
   `starpose-train` run of the `tiny_synthetic_*` configs, in parallel lanes of one thread each;
4. evaluation with `starpose_training.evaluate` on the val split: every SR run plus the two
   baselines (pose net on the LR crop resized; bicubic + pose net), written as
   `results.json` / `results.md` with run times and seeds.

The 64x48 full model (causal, `target_frame: last`) can serve the node (`--demo-checkpoint PATH`
copies it there); the bundled model is trained on real footage instead (docs/real_footage.md).

Everything runs as subprocesses of the public commands, so the logs under `OUT/logs/` show
exactly what a user would run by hand.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

SCALES = {4: '64x48', 2: '128x96'}
VARIANTS = ('full', 'no_temporal', 'relu_kernel', 'no_cnn_branch', 'pixel_loss_only')
VARIANT_NAMES = {
    'full': 'STAR-Pose tiny (full)',
    'no_temporal': '(a) w/o temporal context (T=1)',
    'relu_kernel': '(b) ReLU kernel instead of SCLeakyReLU',
    'no_cnn_branch': '(c) w/o CNN branch + fusion',
    'pixel_loss_only': '(d) w/o compound loss (lambda=0)',
}


def _command(args: list[str], log: Path) -> float:
    """Run one command with one compute thread, output to `log`; returns its wall time (s)."""
    env = dict(os.environ, OMP_NUM_THREADS='1', MKL_NUM_THREADS='1')
    log.parent.mkdir(parents=True, exist_ok=True)
    started = time.time()
    with log.open('a') as out:
        out.write(f'$ {" ".join(args)}\n')
        out.flush()
        result = subprocess.run(args, stdout=out, stderr=subprocess.STDOUT, env=env)
    if result.returncode != 0:
        raise RuntimeError(f'command failed ({result.returncode}): {" ".join(args)}; see {log}')
    return time.time() - started


def _train_command(config: str, out_dir: Path, data_dir: Path, pose_weights: Path, extra: list[str]) -> list[str]:
    return [sys.executable, '-m', 'starpose_training.train', config, '--out', str(out_dir),
            '--set', f'data.root={data_dir}', '--set', f'pose.checkpoint={pose_weights}', *extra]


def evaluate_checkpoints(jobs: list[dict], data_dir: Path, val_every: int, output_dir: Path) -> list[dict]:
    """Evaluate checkpoints (and baselines built on a checkpoint's pose net) on the val split.

    `jobs`: dicts with `checkpoint`, `method` and optional `baselines: true`. Every
    `val_every`-th labeled val frame is scored (the same frames for every method).
    """
    import torch

    from starpose_model.checkpoint import load_inference_model
    from starpose_training.evaluate import baseline_models, evaluate_model
    from starpose_training.posetrack import read_posetrack

    torch.set_num_threads(1)
    videos = read_posetrack(data_dir / 'annotations' / 'val')
    for video in videos:
        labeled = [image for image in video.images if image.is_labeled]
        for k, image in enumerate(labeled):
            image.is_labeled = k % val_every == 0
    rows = []
    for job in jobs:
        model = load_inference_model(job['checkpoint'])
        models = baseline_models(model) if job.get('baselines') else {job['method']: model}
        for method, candidate in models.items():
            row = evaluate_model(candidate, videos, data_dir, method=method, output_dir=output_dir, batch_size=16)
            rows.append({**row, **{k: v for k, v in job.items() if k not in ('checkpoint', 'baselines')},
                         'method': method})
    return rows


def _evaluate_in_subprocess(jobs: list[dict], data_dir: Path, val_every: int, out: Path, name: str) -> list[dict]:
    """Run `evaluate_checkpoints` in a one-thread child process (parallel lanes), return its rows."""
    spec, rows_file = out / 'eval' / f'{name}.jobs.json', out / 'eval' / f'{name}.rows.json'
    newest_checkpoint = max(Path(job['checkpoint']).stat().st_mtime for job in jobs)
    if rows_file.exists() and rows_file.stat().st_mtime > newest_checkpoint:  # evaluated already
        cached = json.loads(rows_file.read_text())
        if all(row.get('val_every') == val_every for row in cached):
            return cached
    spec.parent.mkdir(parents=True, exist_ok=True)
    spec.write_text(json.dumps({'jobs': jobs, 'data': str(data_dir), 'val_every': val_every,
                                'output_dir': str(out / 'eval' / jobs[0]['resolution']), 'rows': str(rows_file)}))
    seconds = _command([sys.executable, '-m', 'starpose_training.mini_repro', '--evaluate-jobs', str(spec)],
                       out / 'logs' / f'eval_{name}.log')
    rows = json.loads(rows_file.read_text())
    for row in rows:
        row.update(eval_seconds=seconds / len(rows), val_every=val_every)
    rows_file.write_text(json.dumps(rows, allow_nan=True))
    return rows


def _run_variant(scale: int, variant: str, args, pose_weights: Path) -> list[dict]:
    """Train one SR configuration (if not done yet) and evaluate it (plus the baselines for `full`)."""
    res = SCALES[scale]
    name = f'{res}_{variant}'
    run_dir = args.out / 'runs' / name
    extra = [] if variant == 'full' else ['--set', f'model.ablation={variant}']
    extra += ['--set', f'schedule.seed={args.seed}']
    if args.steps:
        extra += ['--set', f'schedule.steps={args.steps}']
    checkpoint = run_dir / 'starpose.pt'
    train_seconds = 0.0
    if not checkpoint.exists():
        train_seconds = _command(_train_command(f'tiny_synthetic_{res}', run_dir, args.out / 'data', pose_weights,
                                                [*extra, '--stage', 'sr']), args.out / 'logs' / f'train_{name}.log')
    if args.demo_checkpoint and (scale, variant) == (4, 'full'):
        args.demo_checkpoint.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(checkpoint, args.demo_checkpoint)
    info = {'checkpoint': str(checkpoint), 'resolution': res, 'variant': variant, 'seed': args.seed,
            'train_seconds': train_seconds}
    jobs = [{**info, 'method': VARIANT_NAMES[variant]}]
    if variant == 'full':
        jobs.append({**info, 'variant': 'baseline', 'train_seconds': 0.0, 'method': 'baselines', 'baselines': True})
    return _evaluate_in_subprocess(jobs, args.out / 'data', args.val_every, args.out, name)


def results_table(rows: list[dict]) -> str:
    """Markdown: one table per resolution, the paper's columns plus PSNR/SSIM and training time."""
    columns = ('Total', 'mAP', 'AP@0.5', 'AP@0.75', 'AR', 'PSNR', 'SSIM', 'GFLOPs (SR)', 'train_seconds')
    lines = []
    for res in SCALES.values():
        chosen = [r for r in rows if r['resolution'] == res]
        if not chosen:
            continue
        lines += [f'### {res} input (seed {chosen[0]["seed"]})', '',
                  '| Method | ' + ' | '.join(c.replace('train_seconds', 'train s') for c in columns) + ' |',
                  '| --- |' + ' ---: |' * len(columns)]
        for row in chosen:
            cells = [f'{row[c]:.2f}' if isinstance(row.get(c), float) else str(row.get(c, '–')) for c in columns]
            lines.append(f'| {row["method"]} | ' + ' | '.join(cells) + ' |')
        lines.append('')
    return '\n'.join(lines)


def run(args) -> dict:
    """The whole mini-reproduction; returns the summary written to `OUT/results.json`."""
    started = time.time()
    out: Path = args.out
    timings = {}
    data_dir = out / 'data'
    if not (data_dir / 'synth_manifest.json').exists():
        timings['data_seconds'] = _command(['starpose-synth', 'generate', str(data_dir), '--preset', 'train',
                                            '--seed', str(args.data_seed), '--overwrite'], out / 'logs' / 'synth.log')
    pose_weights = out / 'pose' / 'pose_net.pth'
    if not pose_weights.exists():
        timings['pose_seconds'] = _command(
            _train_command('tiny_synthetic_64x48', out / 'runs' / 'pose_only', data_dir, pose_weights,
                           ['--stage', 'pose']), out / 'logs' / 'pose.log')

    # Full models (and their baselines) at every scale first, then the ablations one by one.
    jobs = [(scale, variant) for variant in args.variants for scale in args.scales]
    with ThreadPoolExecutor(max_workers=args.lanes) as lanes:
        futures = {lanes.submit(_run_variant, scale, variant, args, pose_weights): (scale, variant)
                   for scale, variant in jobs}
        rows, failures = [], []
        for future, (scale, variant) in futures.items():
            try:
                rows += future.result()
            except RuntimeError as error:  # one failed run must not lose the others' results
                failures.append(f'{SCALES[scale]} {variant}: {error}')

    summary = {'command': ' '.join(sys.argv), 'seed': args.seed, 'data_seed': args.data_seed,
               'val_every': args.val_every, 'lanes': args.lanes, 'timings': timings,
               'total_seconds': time.time() - started, 'failures': failures, 'rows': rows}
    (out / 'results.json').write_text(json.dumps(summary, indent=2, allow_nan=True))
    table = results_table(rows)
    (out / 'results.md').write_text(table)
    print(table)
    print(f'total {summary["total_seconds"] / 60:.1f} min; wrote {out / "results.json"} and {out / "results.md"}')
    if failures:
        raise SystemExit('failed runs:\n' + '\n'.join(failures))
    return summary


def main(argv: list[str] | None = None) -> None:
    """Command line: see the module docstring."""
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--out', type=Path, default=Path('outputs/mini_repro'))
    parser.add_argument('--scales', type=int, nargs='+', default=[4, 2], choices=sorted(SCALES))
    parser.add_argument('--variants', nargs='+', default=list(VARIANTS), choices=VARIANTS)
    parser.add_argument('--seed', type=int, default=0, help='training seed of the SR runs')
    parser.add_argument('--data-seed', type=int, default=0, help='seed of the synthetic dataset')
    parser.add_argument('--steps', type=int, help='SR training steps (default: the configs\' schedule.steps)')
    parser.add_argument('--lanes', type=int, default=2, help='SR runs trained in parallel (one thread each)')
    parser.add_argument('--val-every', type=int, default=3, help='score every k-th labeled val frame')
    parser.add_argument('--demo-checkpoint', type=Path,
                        help='copy the 64x48 full model here once trained')
    parser.add_argument('--evaluate-jobs', type=Path, help=argparse.SUPPRESS)  # child process of step 4
    args = parser.parse_args(argv)
    if args.evaluate_jobs:
        spec = json.loads(args.evaluate_jobs.read_text())
        rows = evaluate_checkpoints(spec['jobs'], Path(spec['data']), spec['val_every'], Path(spec['output_dir']))
        Path(spec['rows']).write_text(json.dumps(rows, allow_nan=True))
        return
    run(args)


if __name__ == '__main__':
    main()
