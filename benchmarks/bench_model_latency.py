"""CPU time per person-window of the whole inference graph: PyTorch eager vs ONNX Runtime, and the peer.

Models: the `tiny` and `paper` configurations (random weights: latency does not depend on them)
at 64x48 (x4) and 128x96 (x2), and the bundled default model. Each is timed at each batch size
in PyTorch eager (`torch.no_grad`, `StarPoseInference` on uint8 windows) and through the node's
ONNX Runtime backend (`OnnxRuntimeBackend.infer`, its default session settings), every case in
its own process with the same thread count, in interleaved rounds (`benchmarks/harness.py`).
The bundled model's comparison also holds MediaPipe BlazePose (the teacher's extra, run in
`.venv-teacher` when it exists) on a full-resolution vtest person, in static mode (detector on
every call, as the labeler runs it) and tracking mode, so that per-person times sit side by side.

Headlines are per-round ratios (min / median / max over rounds): ORT/eager speed-up and
BlazePose / StarPose time per person. Targets (issue 15): bundled model at batch 8, 2 threads,
>= 30 person-windows/s; at most half of BlazePose's per-person time at equal threads; ORT >= 2x
eager.

    python benchmarks/bench_model_latency.py                  # all (about 15 minutes on 2 cores)
    python benchmarks/bench_model_latency.py --quick          # smoke run, seconds
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np
from harness import Case, Plan, compare, fmt_spread, machine, quick_plan, ratio, report

ROOT = Path(__file__).resolve().parents[1]
SCALES = {'64x48': 4, '128x96': 2}
BUNDLED = ROOT / 'starpose_ros' / 'assets' / 'starpose_small_real.pt'
FIXTURE_LABELS = ROOT / 'test' / 'fixtures' / 'vtest_x4' / 'labels.json'
TARGET_WINDOWS_PER_S = 30.0
TARGET_SPEEDUP = 2.0
TARGET_PEER_SHARE = 0.5


def _model(source: dict):
    if 'checkpoint' in source:
        from starpose_model.checkpoint import load_inference_model

        return load_inference_model(source['checkpoint'])
    from starpose_model.export import random_model

    return random_model(source['config'], pose_only=source.get('pose_only', False), scale=source['scale'])


def eager_call(threads: int, source: dict, batch: int):
    """PyTorch eager on a batch of random uint8 windows."""
    import torch

    from starpose_model.export import example_input

    torch.set_num_threads(threads)
    model = _model(source)
    windows = example_input(model, batch)

    def call():
        with torch.no_grad():
            return model(windows)
    return call


def ort_call(threads: int, onnx: str, batch: int, level: str | None = None):
    """The node's ONNX Runtime backend on a batch of random uint8 windows.

    `level` (basic / extended / all): a bare session at that graph optimisation level instead, to
    see what ONNX Runtime's fusions buy (the backend runs at its default, all).
    """
    if level is None:
        from starpose_ros.core.backends.onnxruntime_backend import OnnxRuntimeBackend

        backend = OnnxRuntimeBackend(onnx, intra_op_threads=threads)
        shape, run = backend.model_info.input_shape, backend.infer
    else:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.graph_optimization_level = getattr(ort.GraphOptimizationLevel, f'ORT_ENABLE_{level.upper()}')
        options.add_session_config_entry('session.intra_op.allow_spinning', '0')
        session = ort.InferenceSession(onnx, options, providers=['CPUExecutionProvider'])
        shape = session.get_inputs()[0].shape[1:]

        def run(frames):
            return session.run(None, {'lr_frames': frames})
    windows = np.random.default_rng(0).integers(0, 256, (batch, *shape), dtype=np.uint8)
    return lambda: run(windows)


def optimisation_levels(args, plan: Plan) -> list[dict]:
    """The bundled model at batch 8: eager vs ORT at each graph optimisation level, per thread count."""
    onnx = str(export({'checkpoint': str(BUNDLED)}, Path('.'), 'bundled'))
    rows = []
    for threads in args.threads:
        cases = [Case('eager', eager_call, threads, {'source': {'checkpoint': str(BUNDLED)}, 'batch': 8}, units=8)]
        cases += [Case(level, ort_call, threads, {'onnx': onnx, 'batch': 8, 'level': level}, units=8)
                  for level in ('basic', 'extended', 'all')]
        result = compare(cases, plan)
        row = {'threads': threads, 'batch': 8, **{c.name: result['cases'][c.name]['ms_per_unit'] for c in cases},
               'speedup': {c.name: ratio(result, 'eager', c.name) for c in cases[1:]}}
        rows.append(row)
        print(f'bundled, batch 8, {threads} thread(s): eager {fmt_spread(row["eager"])} ms/window; ORT/eager '
              + ', '.join(f'{name} {fmt_spread(value, 2, "x")}' for name, value in row['speedup'].items()))
    return rows


def export(source: dict, folder: Path, name: str) -> Path:
    """The ONNX file of a model (the bundled one through the node's cache)."""
    if 'checkpoint' in source:
        from starpose_ros.core.models import resolve_model

        return resolve_model(source['checkpoint'], 'onnxruntime')[0]
    from starpose_model.export import export_onnx

    return export_onnx(_model(source), folder / f'{name}.onnx')


def peer_cases(args, threads: int, folder: Path) -> list[Case]:
    """BlazePose static and tracking cases, when the teacher venv and the footage exist."""
    if not args.peer or not args.teacher_python.is_file():
        return []
    from peers import blazepose_call, peer_input

    found = peer_input(str(folder), str(args.video), str(FIXTURE_LABELS))
    if found is None:
        print(f'peer skipped: no {args.video} (starpose-fetch-footage)', file=sys.stderr)
        return []
    image, box = found
    return [Case(f'blazepose_{mode}', blazepose_call, threads, {'image': image, 'box': box, 'static': mode == 'static'},
                 python=str(args.teacher_python)) for mode in ('static', 'tracking')]


def bench_model(name: str, source: dict, args, plan: Plan, folder: Path, with_peer: bool) -> list[dict]:
    """One comparison per thread count: eager and ORT at every batch (+ the peer); rows per batch."""
    onnx = str(export(source, folder, name))
    rows = []
    for threads in args.threads:
        cases = [Case(f'{runtime}_b{batch}', eager_call if runtime == 'eager' else ort_call, threads,
                      {'source': source, 'batch': batch} if runtime == 'eager' else {'onnx': onnx, 'batch': batch},
                      units=batch)
                 for batch in args.batches for runtime in ('eager', 'ort')]
        peers = peer_cases(args, threads, folder) if with_peer else []
        result = compare(cases + peers, plan)
        for batch in args.batches:
            eager, ort = result['cases'][f'eager_b{batch}'], result['cases'][f'ort_b{batch}']
            row = {'model': name, 'threads': threads, 'batch': batch,
                   'eager_ms_per_window': eager['ms_per_unit'], 'ort_ms_per_window': ort['ms_per_unit'],
                   'ort_windows_per_s': ort['units_per_s'], 'ort_speedup': ratio(result, f'eager_b{batch}',
                                                                                 f'ort_b{batch}')}
            for peer in peers:
                row[f'{peer.name}_ms_per_person'] = result['cases'][peer.name]['ms_per_unit']
                row[f'{peer.name}_over_ort'] = ratio(result, peer.name, f'ort_b{batch}')
            rows.append(row)
            print(format_row(row), flush=True)
        rows[-1]['comparison'] = {k: v for k, v in result.items() if k != 'cases'}
    return rows


def format_row(row: dict) -> str:
    """Ms per window as 'median [min-max]' over rounds, and the per-round ratios."""
    text = (f'{row["model"]:<16}{row["threads"]:>3}{row["batch"]:>4}'
            f'  eager {fmt_spread(row["eager_ms_per_window"]):>20}'
            f'  ORT {fmt_spread(row["ort_ms_per_window"]):>20}  ORT win/s {row["ort_windows_per_s"]["median"]:7.1f}'
            f'  ORT/eager {fmt_spread(row["ort_speedup"], 2, "x")}')
    for mode in ('static', 'tracking'):
        if f'blazepose_{mode}_over_ort' in row:
            text += (f'\n{"":<23}BlazePose {mode} {fmt_spread(row[f"blazepose_{mode}_ms_per_person"])} ms/person, '
                     f'{fmt_spread(row[f"blazepose_{mode}_over_ort"], 2, "x")} StarPose ORT\'s')
    return text


def verdicts(rows: list[dict]) -> list[dict]:
    """The issue's targets on the bundled model (medians of the per-round figures)."""
    out = []
    for row in rows:
        if row['model'] != 'bundled':
            continue
        if row['batch'] == 8:
            out.append({'target': 'ORT >= 2x eager at batch 8', 'threads': row['threads'],
                        'value': row['ort_speedup']['median'], 'met': row['ort_speedup']['median'] >= TARGET_SPEEDUP})
        if row['batch'] == 8 and row['threads'] == 2:
            value = row['ort_windows_per_s']['median']
            out.append({'target': '>= 30 person-windows/s at batch 8 on 2 threads', 'threads': 2, 'value': value,
                        'met': value >= TARGET_WINDOWS_PER_S})
        if 'blazepose_static_over_ort' in row:
            share = 1 / row['blazepose_static_over_ort']['median']
            out.append({'target': f'<= half of BlazePose (static) per person, StarPose batch {row["batch"]}',
                        'threads': row['threads'], 'value': share, 'met': share <= TARGET_PEER_SHARE})
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--configs', nargs='*', default=['tiny', 'paper'], choices=['tiny', 'paper'])
    parser.add_argument('--lr-sizes', nargs='+', default=list(SCALES), choices=list(SCALES))
    parser.add_argument('--pose-only', action='store_true', help='also bicubic + the pose net alone (its share)')
    parser.add_argument('--batches', nargs='+', type=int, default=[1, 8, 16])
    parser.add_argument('--threads', nargs='+', type=int, default=[1, 2])
    parser.add_argument('--rounds', type=int, default=7)
    parser.add_argument('--paper-rounds', type=int, default=3, help='rounds of the paper config (~1 s per batch of 8)')
    parser.add_argument('--no-bundled', dest='bundled', action='store_false')
    parser.add_argument('--no-peer', dest='peer', action='store_false', help='leave BlazePose out')
    parser.add_argument('--levels', action='store_true', help='also ORT graph optimisation levels (bundled, batch 8)')
    parser.add_argument('--teacher-python', type=Path, default=ROOT / '.venv-teacher' / 'bin' / 'python')
    parser.add_argument('--video', type=Path, default=Path.home() / '.cache' / 'starpose' / 'vtest.avi')
    parser.add_argument('--quick', action='store_true', help='tiny at 64x48, batch 1 and 8, 1 thread, 2 rounds')
    parser.add_argument('--out', type=Path, default=ROOT / 'outputs' / 'bench_model_latency.json')
    args = parser.parse_args(argv)
    if args.quick:
        args.configs, args.lr_sizes, args.batches, args.threads = ['tiny'], ['64x48'], [1, 8], [1]
    load_before = machine()
    plan = quick_plan() if args.quick else Plan(rounds=args.rounds)
    paper_plan = quick_plan() if args.quick else Plan(rounds=args.paper_rounds, calls_per_round=1, max_warmup_calls=4)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        if args.bundled:
            rows += bench_model('bundled', {'checkpoint': str(BUNDLED)}, args, plan, Path(tmp), with_peer=True)
        for config in args.configs:
            for lr in args.lr_sizes:
                for pose_only in (False, True) if args.pose_only else (False,):
                    name = f'{config}_{lr}' + ('_pose_only' if pose_only else '')
                    source = {'config': config, 'scale': SCALES[lr], 'pose_only': pose_only}
                    rows += bench_model(name, source, args, paper_plan if config == 'paper' else plan, Path(tmp),
                                        with_peer=False)
    levels = optimisation_levels(args, plan) if args.levels else []
    targets = verdicts(rows)
    for verdict in targets:
        print(f'target {verdict["target"]} ({verdict["threads"]} threads): {verdict["value"]:.2f} '
              f'{"met" if verdict["met"] else "MISSED"}')
    report(args.out, {'benchmark': 'model_latency_cpu', 'quick': args.quick, 'rows': rows, 'targets': targets,
                      'optimisation_levels': levels},
           load_before)
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
