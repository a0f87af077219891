"""CPU latency per person-window of the whole inference graph: PyTorch eager vs ONNX Runtime, side by side.

For each configuration (`tiny`, `paper`), LR size (64x48 = scale 4, 128x96 = scale 2) and
variant (`full` = SR + pose net; `pose_only` = bicubic + the same pose net, which isolates the
pose net's share), the randomly initialised `StarPoseInference` is exported with
`starpose_model.export.export_onnx` and timed on the same uint8 windows at batch 1 and 8, in
PyTorch eager (`torch.no_grad`) and in an ONNX Runtime CPU session, both with the same number of
threads, for each of `--threads` (default 1 and 2: on a shared, oversubscribed CPU PyTorch's
OpenMP barriers make 2-thread eager runs pathologically slow, so both are reported). Times are
medians over the iterations after one warm-up call; each case stops early once `--max-seconds`
of measurement is spent (the paper configuration runs HRNet-W48 at 256x192, ~15 GFLOPs per
window, so its iterations are bounded by `--paper-iterations`).

Targets (issue 4): `tiny` at 64x48, batch 8, ONNX Runtime >= 30 windows/s and >= 2x eager.
The machine may be shared: the load average before and after is recorded with the figures.

Usage: python benchmarks/bench_model_latency.py [--configs tiny paper] [--out outputs/bench_model_latency.json]
"""
from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import onnxruntime as ort
import torch

from starpose_model.export import example_input, export_onnx, random_model

SCALES = {'64x48': 4, '128x96': 2}
TARGET_WINDOWS_PER_S = 30.0
TARGET_SPEEDUP = 2.0


def _median_seconds(run, iterations: int, max_seconds: float) -> tuple[float, int]:
    """Median wall time of `run()` after one warm-up, over up to `iterations` calls or `max_seconds`."""
    run()
    times: list[float] = []
    started = time.perf_counter()
    while len(times) < iterations and (not times or time.perf_counter() - started < max_seconds):
        begin = time.perf_counter()
        run()
        times.append(time.perf_counter() - begin)
    return statistics.median(times), len(times)


def bench_case(config: str, lr_name: str, variant: str, batches: list[int], thread_counts: list[int],
               iterations: int, max_seconds: float, workdir: Path) -> list[dict]:
    """Rows for one model: export once, then eager and ONNX Runtime per thread count and batch size."""
    model = random_model(config, pose_only=variant == 'pose_only', scale=SCALES[lr_name])
    onnx_path = workdir / f'{config}_{lr_name}_{variant}.onnx'
    began = time.perf_counter()
    export_onnx(model, onnx_path)
    export_seconds = time.perf_counter() - began
    rows = []
    for threads, batch in itertools.product(thread_counts, batches):
        torch.set_num_threads(threads)
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        session = ort.InferenceSession(str(onnx_path), options, providers=['CPUExecutionProvider'])
        lr_frames = example_input(model, batch)
        feed = {'lr_frames': lr_frames.numpy()}
        with torch.no_grad():
            eager_s, eager_n = _median_seconds(lambda x=lr_frames: model(x), iterations, max_seconds)
        ort_s, ort_n = _median_seconds(lambda s=session, f=feed: s.run(None, f), iterations, max_seconds)
        rows.append({
            'config': config, 'lr_size': lr_name, 'variant': variant, 'threads': threads, 'batch': batch,
            'eager_ms_per_window': 1000 * eager_s / batch, 'ort_ms_per_window': 1000 * ort_s / batch,
            'eager_windows_per_s': batch / eager_s, 'ort_windows_per_s': batch / ort_s,
            'ort_speedup': eager_s / ort_s, 'iterations': {'eager': eager_n, 'ort': ort_n},
            'export_seconds': export_seconds, 'onnx_mb': onnx_path.stat().st_size / 1e6,
        })
        print(_format_row(rows[-1]), flush=True)
    onnx_path.unlink()
    return rows


HEADER = (f'{"config":<7}{"LR":>8}{"variant":>11}{"threads":>8}{"batch":>6}{"eager ms/win":>14}{"ORT ms/win":>12}'
          f'{"eager win/s":>13}{"ORT win/s":>11}{"ORT/eager":>11}')


def _format_row(row: dict) -> str:
    return (f'{row["config"]:<7}{row["lr_size"]:>8}{row["variant"]:>11}{row["threads"]:>8}{row["batch"]:>6}'
            f'{row["eager_ms_per_window"]:>14.1f}{row["ort_ms_per_window"]:>12.1f}'
            f'{row["eager_windows_per_s"]:>13.1f}{row["ort_windows_per_s"]:>11.1f}{row["ort_speedup"]:>10.2f}x')


def target_verdicts(rows: list[dict]) -> list[dict]:
    """The issue's CPU target on `tiny`, 64x48, full model, batch 8, per thread count."""
    verdicts = []
    for row in rows:
        if (row['config'], row['lr_size'], row['variant'], row['batch']) == ('tiny', '64x48', 'full', 8):
            verdicts.append({
                'threads': row['threads'], 'ort_windows_per_s': row['ort_windows_per_s'],
                'target_windows_per_s': TARGET_WINDOWS_PER_S,
                'throughput_met': row['ort_windows_per_s'] >= TARGET_WINDOWS_PER_S,
                'ort_speedup': row['ort_speedup'], 'target_speedup': TARGET_SPEEDUP,
                'speedup_met': row['ort_speedup'] >= TARGET_SPEEDUP,
            })
    return verdicts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--configs', nargs='+', default=['tiny', 'paper'])
    parser.add_argument('--lr-sizes', nargs='+', default=list(SCALES), choices=list(SCALES))
    parser.add_argument('--variants', nargs='+', default=['full', 'pose_only'], choices=['full', 'pose_only'])
    parser.add_argument('--batches', nargs='+', type=int, default=[1, 8])
    parser.add_argument('--threads', nargs='+', type=int, default=[1, 2])
    parser.add_argument('--iterations', type=int, default=10)
    parser.add_argument('--paper-iterations', type=int, default=2)
    parser.add_argument('--max-seconds', type=float, default=20.0, help='measurement budget per case and runtime')
    parser.add_argument('--out', type=Path, default=Path('outputs/bench_model_latency.json'))
    args = parser.parse_args(argv)
    load_before = os.getloadavg()
    print(HEADER)
    rows: list[dict] = []
    with tempfile.TemporaryDirectory() as tmp:
        for config in args.configs:
            iterations = args.paper_iterations if config == 'paper' else args.iterations
            for lr_name in args.lr_sizes:
                for variant in args.variants:
                    rows += bench_case(config, lr_name, variant, args.batches, args.threads, iterations,
                                       args.max_seconds, Path(tmp))
    verdicts = target_verdicts(rows)
    for verdict in verdicts:
        print(f'target tiny@64x48 batch 8, {verdict["threads"]} thread(s): '
              f'ORT {verdict["ort_windows_per_s"]:.1f} windows/s '
              f'(target {TARGET_WINDOWS_PER_S:g}: {"met" if verdict["throughput_met"] else "MISSED"}), '
              f'ORT/eager {verdict["ort_speedup"]:.2f}x (target {TARGET_SPEEDUP:g}x: '
              f'{"met" if verdict["speedup_met"] else "MISSED"})')
    result = {
        'benchmark': 'model_latency_cpu', 'rows': rows, 'targets': verdicts,
        'environment': {
            'torch': torch.__version__, 'onnxruntime': ort.__version__, 'threads': args.threads,
            'cpu_count': os.cpu_count(), 'processor': platform.processor() or platform.machine(),
            'loadavg_before': load_before, 'loadavg_after': os.getloadavg(),
        },
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print(f'wrote {args.out}')
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
