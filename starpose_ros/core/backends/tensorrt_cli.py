"""`starpose-build-engine`: check an exported model, derive its precision graph, build or reuse its engine.

`--check-only` needs no GPU: it checks the ONNX graph against TensorRT's parser support, writes
the strongly typed FP16/INT8 graph into the cache folder and prints the buffer plan and the
trtexec command that builds the same engine from that graph. Every error is one line on stderr
and exit status 1.
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from starpose_model.contract import onnx_metadata
from starpose_model.precision import DEFAULT_FP32_SCOPE_PATTERN, fp32_nodes, graph_precision
from starpose_ros.core.backends.tensorrt_engine import (
    DEFAULT_CACHE_DIR,
    ENGINE_SUFFIX,
    PRECISIONS,
    BuildOptions,
    precision_graph,
    sidecar_path,
    timing_cache_path,
)
from starpose_ros.core.backends.tensorrt_onnx import (
    SUPPORTED_TENSORRT_TEXT,
    BatchProfile,
    EngineError,
    TensorSpec,
    check_onnx_for_tensorrt,
    model_info_from_metadata,
    onnx_io_specs,
    plan_buffers,
    profile_shapes,
)


def trtexec_command(graph_path, engine_path, input_spec: TensorSpec, options: BuildOptions,
                    timing_cache=None) -> list[str]:
    """The trtexec command that builds what `build_serialized_engine` builds from the precision graph.

    Both parse the same strongly typed graph (the precision is in the file, so no precision
    flag), with the same profile, workspace and timing cache; trtexec registers the standard
    plugins itself.
    """
    def dims(shape):
        return 'x'.join(str(s) for s in shape)
    shapes = profile_shapes(input_spec, options.profile)
    command = ['trtexec', f'--onnx={graph_path}', '--stronglyTyped', f'--saveEngine={engine_path}',
               *(f'--{which}Shapes={input_spec.name}:{dims(shape)}'
                 for which, shape in zip(('min', 'opt', 'max'), shapes, strict=True)),
               f'--memPoolSize=workspace:{options.workspace_mib}M']
    if timing_cache:
        command.append(f'--timingCacheFile={timing_cache}')
    return command


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog='starpose-build-engine',
        description='Build (or reuse from the cache) a strongly typed TensorRT engine '
                    f'(tensorrt{SUPPORTED_TENSORRT_TEXT}) of an exported StarPose ONNX model.')
    parser.add_argument('--onnx', required=True, help='exported model (starpose-export)')
    parser.add_argument('--engine', help='engine file to write/check (default: keyed name in --cache-dir)')
    parser.add_argument('--cache-dir', default=str(DEFAULT_CACHE_DIR),
                        help='engine, precision-graph and timing cache folder')
    parser.add_argument('--precision', choices=PRECISIONS, default='fp16',
                        help='fp16: FP16 graph with FP32 attention; int8: Q/DQ graph calibrated on --calibration-data')
    parser.add_argument('--min-batch', type=int, default=1)
    parser.add_argument('--opt-batch', type=int, default=4)
    parser.add_argument('--max-batch', type=int, default=16, help='most tracks per frame (node max_tracks)')
    parser.add_argument('--workspace-mib', type=int, default=1024)
    parser.add_argument('--fp32-scope', default=DEFAULT_FP32_SCOPE_PATTERN,
                        help='regex of PyTorch module paths whose arithmetic stays FP32 under fp16/int8')
    parser.add_argument('--calibration-data', help='INT8: .npy uint8 (N, T, h, w, 3) real LR windows')
    parser.add_argument('--device', type=int, default=0, help='CUDA device index')
    parser.add_argument('--force', action='store_true', help='rebuild even if a matching engine exists')
    parser.add_argument('--check-only', action='store_true',
                        help='check the graph, write the precision graph, print the plan and trtexec line; no GPU')
    parser.add_argument('--verbose', action='store_true')
    return parser


def check_only(args: argparse.Namespace, options: BuildOptions) -> None:
    """Print what a build would use: operators, precision graph, buffers, the trtexec line."""
    model = check_onnx_for_tensorrt(args.onnx)
    info = model_info_from_metadata(onnx_metadata(model), args.onnx)
    specs = onnx_io_specs(model)
    graph = precision_graph(args.onnx, options, args.cache_dir, info)
    print(f'{args.onnx}: every operator is supported by TensorRT 10; model {info}')
    check_onnx_for_tensorrt(graph)
    print(f'  {options.precision} graph: {graph}')
    if graph_precision(model) == 'fp32' and options.precision != 'fp32':
        print(f'  {len(fp32_nodes(model, options.fp32_scope_pattern))} nodes kept FP32 (attention, '
              'LayerNormalization, pre/post-processing)')
    for buffer in plan_buffers(specs, options.profile.max):
        kind = 'input ' if buffer.is_input else 'output'
        print(f'  {kind} {buffer.name}: {buffer.dtype.name} {buffer.shape} = {buffer.nbytes} bytes')
    engine = args.engine or f'{Path(args.onnx).with_suffix("")}.{options.precision}{ENGINE_SUFFIX}'
    command = trtexec_command(graph, engine, next(s for s in specs if s.is_input), options,
                              Path(args.cache_dir) / 'timing.cache')
    print('trtexec equivalent:\n  ' + ' \\\n    '.join(command))


def build(args: argparse.Namespace, options: BuildOptions) -> None:
    """Build or reuse the engine on `--device` inside its primary CUDA context."""
    from starpose_ros.core.backends.tensorrt_backend import import_gpu_stack

    gpu_build, _runtime = import_gpu_stack()
    gpu_build.set_verbose(args.verbose)
    primary = gpu_build.PrimaryContext(args.device)
    try:
        with primary:
            env = gpu_build.probe_environment(primary.device)
            runtime = gpu_build.create_runtime()
            _engine, path, sidecar = gpu_build.load_or_build_engine(runtime, args.onnx, args.engine, args.cache_dir,
                                                                    options, env, args.force)
            del _engine, runtime  # engine before runtime, both inside the context
    finally:
        primary.release(lambda: None)
    print(f'engine: {path}\nmetadata: {sidecar_path(path)}\ntiming cache: {timing_cache_path(args.cache_dir, env)}\n'
          f'  {sidecar["precision"]}, batch {sidecar["min_batch"]}..{sidecar["max_batch"]}, '
          f'{sidecar["gpu_name"]} (sm {sidecar["compute_capability"]}, {sidecar["sm_count"]} SMs), '
          f'TensorRT {sidecar["tensorrt_version"]}')


def main(argv=None) -> int:
    """Entry point of `starpose-build-engine`."""
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format='%(levelname)s %(message)s')
    try:
        options = BuildOptions(args.precision, BatchProfile(args.min_batch, args.opt_batch, args.max_batch),
                               args.workspace_mib, args.fp32_scope, args.calibration_data)
        if args.check_only:
            check_only(args, options)
        else:
            build(args, options)
    except EngineError as error:
        print(f'starpose-build-engine: error: {error}', file=sys.stderr)
        return 1
    return 0


if __name__ == '__main__':
    sys.exit(main())
