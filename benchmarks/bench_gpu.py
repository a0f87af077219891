"""Per-person-frame latency of the StarPose inference graph on a CUDA GPU, against the paper.

Runs the PyTorch backend (the node's `torch` backend: uint8 windows in, host copies out) in FP32
and FP16 (CUDA autocast; the linear attention keeps its sums in FP32) on the paper configuration
(HRNet-W48, 8-layer Transformer) at both LR sizes, for batches of 1/8/32 person windows, and the
TensorRT backend (FP32 and FP16 engines) when `tensorrt` and `pycuda` import. The paper reports
32.4 ms (64x48) and 85.3 ms (128x96) per frame on an RTX 3090 (PyTorch, Tables 1-2).

Weights are random: latency does not depend on them. Prints a table and writes JSON (--out).

    python benchmarks/bench_gpu.py                       # on a CUDA machine
    python benchmarks/bench_gpu.py --device cpu --config tiny --batches 1 2 --quick   # smoke run
"""
from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
from pathlib import Path

os.environ.setdefault('ROS_AUTOMATIC_DISCOVERY_RANGE', 'LOCALHOST')  # no ROS traffic, but keep the rule

import numpy as np  # noqa: E402
import torch  # noqa: E402
from harness import Case, Plan, compare, machine, quick_plan, report  # noqa: E402

from starpose_model.checkpoint import save_checkpoint  # noqa: E402
from starpose_model.config import get_config  # noqa: E402
from starpose_model.hrnet import build_pose_net  # noqa: E402
from starpose_model.star_pose import StarPoseSR  # noqa: E402
from starpose_ros.core.backends import create_backend  # noqa: E402
from starpose_ros.core.backends.base import BackendError  # noqa: E402

PAPER_MS = {(64, 48): 32.4, (128, 96): 85.3}  # STAR-Pose + HRNet-W48, RTX 3090, per frame


def _write_checkpoint(config, folder: Path) -> Path:
    torch.manual_seed(0)
    path = folder / f'{config.name}_{config.lr_size[0]}x{config.lr_size[1]}.pt'
    return save_checkpoint(path, StarPoseSR(config), build_pose_net(config.pose_arch), config)


def _export_onnx(checkpoint: Path) -> Path:
    from starpose_model.checkpoint import load_inference_model
    from starpose_model.export import export_onnx
    return export_onnx(load_inference_model(checkpoint), checkpoint.with_suffix('.onnx'))


def backend_call(threads: int, backend, lr_size, window: int, batch: int):
    """Harness factory (in this process: the backends share the device): one `infer` on uint8 windows.

    `infer` returns host arrays, so the device work is finished when the call returns.
    """
    frames = np.random.default_rng(batch).integers(0, 256, (batch, window, *lr_size, 3), dtype=np.uint8)
    return lambda: backend.infer(frames)


def _time_backend(backend, config, batches: list[int], plan: Plan, threads: int) -> dict:
    """Seconds per call at every batch, the batches in interleaved rounds."""
    cases = [Case(f'b{batch}', backend_call, threads, {'backend': backend, 'lr_size': config.lr_size,
                                                         'window': config.window, 'batch': batch}, units=batch)
             for batch in batches]
    return compare(cases, plan, in_process=True)['cases']


def _backends(args, checkpoint: Path, onnx_cache: dict):
    """(label, factory) for every backend/precision to measure."""
    device = args.device
    yield 'torch fp32', lambda: create_backend('torch', checkpoint, device=device)
    if device == 'cuda':
        yield 'torch fp16', lambda: create_backend('torch', checkpoint, device='cuda', fp16=True)
        if not args.skip_tensorrt:
            for precision in ('fp32', 'fp16'):
                def factory(precision=precision):
                    if checkpoint not in onnx_cache:
                        onnx_cache[checkpoint] = _export_onnx(checkpoint)
                    return create_backend('tensorrt', onnx_cache[checkpoint], precision=precision,
                                          max_batch=max(args.batches), opt_batch=max(args.batches),
                                          cache_dir=args.engine_cache)
                yield f'tensorrt {precision}', factory


def _print_table(rows: list[dict], args: argparse.Namespace, device_name: str, threads: int) -> None:
    print(f'\n{args.config} config on {device_name} (median over {args.rounds} interleaved rounds; '
          f'{threads} CPU threads)')
    print(f'{"LR":>7} {"backend":>13} {"batch":>5} {"ms/call":>9} {"ms/person":>10} {"paper ms":>9} {"ratio":>6}')
    for row in rows:
        paper = row['paper_ms_per_frame']
        ratio = f'{row["ms_per_person_frame"] / paper:6.2f}' if paper and args.config == 'paper' else '     -'
        print(f'{row["lr"]:>7} {row["backend"]:>13} {row["batch"]:>5} {row["ms_per_call"]:9.2f} '
              f'{row["ms_per_person_frame"]:10.2f} {paper or 0:9.1f} {ratio}')


def main(argv=None) -> int:
    """Measure, print the table, write the JSON."""
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--config', default='paper', help='model config (paper = HRNet-W48, the paper\'s numbers)')
    parser.add_argument('--lr-sizes', nargs='+', default=['64x48', '128x96'], help='LR crop sizes (HxW)')
    parser.add_argument('--batches', nargs='+', type=int, default=[1, 8, 32])
    parser.add_argument('--rounds', type=int, default=10, help='interleaved rounds (3 calls each) per backend')
    parser.add_argument('--quick', action='store_true', help='2 short rounds (smoke run)')
    parser.add_argument('--device', choices=('cuda', 'cpu'), default='cuda')
    parser.add_argument('--skip-tensorrt', action='store_true')
    parser.add_argument('--engine-cache', default='outputs/engines')
    parser.add_argument('--out', default='outputs/bench_gpu.json')
    args = parser.parse_args(argv)
    if args.device == 'cuda' and not torch.cuda.is_available():
        print('bench_gpu: CUDA is not available to this PyTorch; use --device cpu for a smoke run', file=sys.stderr)
        return 2
    threads = min(2, torch.get_num_threads())
    if args.device == 'cpu':
        torch.set_num_threads(threads)
    load_before, plan = machine(), quick_plan() if args.quick else Plan(rounds=args.rounds)
    device_name = torch.cuda.get_device_name(0) if args.device == 'cuda' else platform.processor() or 'cpu'
    rows, skipped, onnx_cache = [], [], {}
    with tempfile.TemporaryDirectory() as folder:
        for lr in args.lr_sizes:
            height, width = (int(v) for v in lr.lower().split('x'))
            scale = 256 // height
            config = get_config(args.config, scale=scale)
            if config.lr_size != (height, width):
                raise SystemExit(f'bench_gpu: config {args.config} at scale {scale} has LR size {config.lr_size}')
            checkpoint = _write_checkpoint(config, Path(folder))
            for label, factory in _backends(args, checkpoint, onnx_cache):
                try:
                    backend = factory()
                except BackendError as error:
                    skipped.append({'lr': lr, 'backend': label, 'reason': str(error).splitlines()[0]})
                    print(f'skip {label} {lr}: {skipped[-1]["reason"]}', file=sys.stderr)
                    continue
                with backend:
                    timed = _time_backend(backend, config, args.batches, plan, threads)
                for batch in args.batches:
                    seconds = timed[f'b{batch}']['seconds']
                    median = 1000 * seconds['median']
                    rows.append({'lr': lr, 'backend': label, 'batch': batch, 'ms_per_call': median,
                                 'ms_per_call_spread': {k: 1000 * v for k, v in seconds.items()},
                                 'ms_per_person_frame': median / batch,
                                 'paper_ms_per_frame': PAPER_MS.get((height, width))})
                    print(f'{label:>13} {lr:>7} batch {batch:>3}: {median:8.2f} ms/call '
                          f'{median / batch:8.2f} ms/person-frame', flush=True)
    _print_table(rows, args, device_name, threads)
    report(Path(args.out), {'benchmark': 'gpu', 'config': args.config, 'device': device_name,
                            'torch': torch.__version__, 'rounds': args.rounds, 'threads': threads, 'rows': rows,
                            'skipped': skipped}, load_before)
    return 0


if __name__ == '__main__':
    sys.exit(main())
