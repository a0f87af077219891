"""ONNX export of the inference graph (`StarPoseInference`) and its check against PyTorch with ONNX Runtime.

The file is self-contained (weights embedded, no external-data side file), has a dynamic batch
axis, opset 17 or 18 (both parse in TensorRT 10), and carries the model facts a runtime needs
in `metadata_props` (`starpose.window`, `starpose.lr_height`, `starpose.lr_width`,
`starpose.keypoint_layout`, `starpose.target_frame`, `starpose.config`, `starpose.pose_only`).

    starpose-export --checkpoint model.pt --output model.onnx --check
    starpose-export --checkpoint model.pt --output model.fp16.onnx --precision fp16
    starpose-export --checkpoint model.pt --output model.int8.onnx --precision int8 --calibration-data windows.npy
    starpose-export --config tiny --output tiny.onnx      # random weights, for tests of other parts

`--precision fp16/int8` writes the strongly typed graph TensorRT builds (`starpose_model.precision`:
FP16 with FP32 attention, or INT8 Q/DQ calibrated on real LR windows); `--check` then checks the
FP32 graph it was derived from.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np
import onnx
import torch

from starpose_model.atomic import atomic_path
from starpose_model.checkpoint import CheckpointError, load_inference_model
from starpose_model.contract import model_metadata, onnx_metadata, set_onnx_metadata
from starpose_model.heatmaps import HEATMAP_STRIDE, decode_argmax
from starpose_model.inference import INPUT_NAMES, OUTPUT_NAMES, StarPoseInference
from starpose_model.precision import DEFAULT_FP32_SCOPE_PATTERN, PRECISIONS, PrecisionError, quantize_int8, to_fp16

DEFAULT_OPSET = 18
SUPPORTED_OPSETS = (17, 18)
RELATIVE_TOLERANCE = 1e-4


class ExportCheckError(AssertionError):
    """ONNX Runtime's outputs differ from PyTorch's beyond the tolerance."""


def read_metadata(onnx_path) -> dict[str, str]:
    """The `starpose.*` metadata of an exported file (without loading its weights)."""
    return onnx_metadata(onnx.load(str(onnx_path), load_external_data=False))


def example_input(model: StarPoseInference, batch: int, seed: int = 0) -> torch.Tensor:
    """Random uint8 `lr_frames` of the shape `model` expects."""
    generator = torch.Generator().manual_seed(seed)
    shape = (batch, model.window, *model.lr_size, 3)
    return torch.randint(0, 256, shape, dtype=torch.uint8, generator=generator)


def export_onnx(model: StarPoseInference, output, opset: int = DEFAULT_OPSET) -> Path:
    """Export `model` (put in eval mode, on CPU) to one self-contained ONNX file; returns its path."""
    if opset not in SUPPORTED_OPSETS:
        raise ValueError(f'opset {opset} not supported; choose one of {SUPPORTED_OPSETS} (TensorRT 10 parses both)')
    model = model.cpu().eval()
    batch = torch.export.Dim('batch', min=1, max=4096)
    with torch.no_grad():
        program = torch.onnx.export(
            model, (example_input(model, batch=2),), input_names=list(INPUT_NAMES),
            output_names=list(OUTPUT_NAMES), opset_version=opset, dynamo=True,
            dynamic_shapes={'lr_frames': {0: batch}},
        )
    proto = program.model_proto
    produced = {entry.domain: entry.version for entry in proto.opset_import}.get('', None)
    if produced != opset:
        raise ValueError(f'the exporter could not produce opset {opset} for this model (it made {produced}); '
                         f'use --opset {produced}')
    set_onnx_metadata(proto, model_metadata(model.config, model.pose_only))
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    onnx.save_model(proto, str(output), save_as_external_data=False)
    onnx.checker.check_model(str(output))
    return output


def _relative_error(actual: np.ndarray, expected: np.ndarray) -> float:
    """Max-norm relative error: max |actual - expected| / max |expected|."""
    scale = max(float(np.abs(expected).max()), 1e-12)
    return float(np.abs(actual.astype(np.float64) - expected.astype(np.float64)).max()) / scale


def check_onnx(model: StarPoseInference, onnx_path, batch_sizes=(1, 7), tolerance: float = RELATIVE_TOLERANCE,
               seed: int = 0) -> list[dict]:
    """Run the ONNX file with ONNX Runtime (CPU) against `model` in PyTorch; raise ExportCheckError on mismatch.

    Per batch size: `heatmaps` and `keypoints` within `tolerance` (max-norm relative error),
    `sr_image` within one grey level (float rounding at .5), and the file's keypoints equal
    the decoding of its own heatmaps. Returns one report dict per batch size.
    """
    import onnxruntime as ort

    session = ort.InferenceSession(str(onnx_path), providers=['CPUExecutionProvider'])
    model = model.cpu().eval()
    reports, failures = [], []
    for batch in batch_sizes:
        lr_frames = example_input(model, batch, seed=seed + batch)
        with torch.no_grad():
            expected = [t.numpy() for t in model(lr_frames)]
        actual = session.run(list(OUTPUT_NAMES), {INPUT_NAMES[0]: lr_frames.numpy()})
        result = dict(zip(OUTPUT_NAMES, actual, strict=True))
        reference = dict(zip(OUTPUT_NAMES, expected, strict=True))
        for name in OUTPUT_NAMES:
            if result[name].shape != reference[name].shape or result[name].dtype != reference[name].dtype:
                failures.append(f'batch {batch}: {name} is {result[name].dtype} {result[name].shape}, '
                                f'PyTorch gives {reference[name].dtype} {reference[name].shape}')
        if failures:
            continue
        redecoded = decode_argmax(torch.from_numpy(result['heatmaps'])).numpy()
        redecoded[..., :2] *= HEATMAP_STRIDE
        report = {
            'batch': batch,
            'heatmaps_rel_error': _relative_error(result['heatmaps'], reference['heatmaps']),
            'keypoints_rel_error': _relative_error(result['keypoints'], reference['keypoints']),
            'sr_image_max_abs_diff': int(np.abs(result['sr_image'].astype(int) - reference['sr_image']).max()),
            'decode_rel_error': _relative_error(result['keypoints'], redecoded),
        }
        reports.append(report)
        for key in ('heatmaps_rel_error', 'keypoints_rel_error', 'decode_rel_error'):
            if not report[key] < tolerance:
                failures.append(f'batch {batch}: {key} {report[key]:.3g} >= {tolerance:g}')
        if report['sr_image_max_abs_diff'] > 1:
            failures.append(f'batch {batch}: sr_image differs by {report["sr_image_max_abs_diff"]} grey levels')
    if failures:
        raise ExportCheckError(f'{onnx_path}: ONNX Runtime disagrees with PyTorch:\n  ' + '\n  '.join(failures))
    return reports


def write_precision_graph(fp32_path, output, precision: str, calibration_data=None,
                          fp32_scope: str = DEFAULT_FP32_SCOPE_PATTERN) -> Path:
    """Write the FP16 or INT8 graph derived from the FP32 export at `fp32_path` to `output`."""
    model = onnx.load(str(fp32_path))
    if precision == 'fp16':
        derived = to_fp16(model, fp32_scope)
    elif precision == 'int8':
        if calibration_data is None:
            raise PrecisionError('--precision int8 needs --calibration-data (uint8 LR windows, .npy)')
        derived = quantize_int8(model, np.load(calibration_data, allow_pickle=False), fp32_scope)
    else:
        raise PrecisionError(f'precision must be fp16 or int8 here, got {precision!r}')
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    onnx.save_model(derived, str(output), save_as_external_data=False)
    onnx.checker.check_model(str(output))
    return output


def random_model(config_name: str, pose_only: bool = False, seed: int = 0, **overrides) -> StarPoseInference:
    """A randomly initialised inference model of a named config (+ field overrides); for tests and benchmarks."""
    from starpose_model.config import get_config
    from starpose_model.hrnet import build_pose_net
    from starpose_model.star_pose import StarPoseSR

    torch.manual_seed(seed)
    config = get_config(config_name, **overrides)
    sr_net = None if pose_only else StarPoseSR(config)
    return StarPoseInference(sr_net, build_pose_net(config.pose_arch), config, pose_only=pose_only).eval()


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog='starpose-export', description=__doc__.split('\n\n')[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument('--checkpoint', type=Path, help='inference checkpoint (.pt from checkpoint.save_checkpoint)')
    source.add_argument('--config', help='export a randomly initialised model of this config (e.g. tiny)')
    parser.add_argument('--pose-only', action='store_true',
                        help='with --config: the bicubic + pose-net baseline instead of SR + pose net')
    parser.add_argument('--seed', type=int, default=0, help='with --config: random-initialisation seed')
    parser.add_argument('--output', type=Path, required=True, help='the .onnx file to write')
    parser.add_argument('--opset', type=int, default=DEFAULT_OPSET, choices=SUPPORTED_OPSETS,
                        help='ONNX opset (default 18; 17 only where the exporter can convert the graph)')
    parser.add_argument('--check', action='store_true',
                        help='verify with ONNX Runtime against PyTorch '
                             f'(batch 1 and 7, relative error < {RELATIVE_TOLERANCE:g})')
    parser.add_argument('--precision', choices=PRECISIONS, default='fp32',
                        help='fp16: FP16 graph with FP32 attention; int8: Q/DQ graph (needs --calibration-data)')
    parser.add_argument('--calibration-data', type=Path, help='int8: .npy uint8 (N, T, h, w, 3) real LR windows')
    parser.add_argument('--fp32-scope', default=DEFAULT_FP32_SCOPE_PATTERN,
                        help='regex of module paths kept FP32 under fp16/int8 (default: the linear attention)')
    return parser


def _export(args: argparse.Namespace, output: Path) -> None:
    """Load or build the model and write the requested graph to `output` (checking the FP32 one)."""
    torch.set_num_threads(min(torch.get_num_threads(), 4))
    if args.checkpoint is not None:
        model = load_inference_model(args.checkpoint)
    else:
        model = random_model(args.config, pose_only=args.pose_only, seed=args.seed)
    with tempfile.TemporaryDirectory(prefix='starpose-export-') as folder:
        fp32_path = output if args.precision == 'fp32' else Path(folder) / 'fp32.onnx'
        export_onnx(model, fp32_path, opset=args.opset)
        if args.check:
            for report in check_onnx(model, fp32_path):
                print('check ok (fp32): ' + ', '.join(f'{k}={v:.3g}' if isinstance(v, float) else f'{k}={v}'
                                                      for k, v in report.items()))
        if args.precision != 'fp32':
            write_precision_graph(fp32_path, output, args.precision, args.calibration_data, args.fp32_scope)


def main(argv: list[str] | None = None) -> int:
    """Console entry point `starpose-export`."""
    parser = _parser()
    args = parser.parse_args(argv)
    if args.precision == 'int8' and args.calibration_data is None:
        parser.error('--precision int8 needs --calibration-data (uint8 LR windows, .npy)')
    if args.output.is_dir():
        print(f'starpose-export: error: --output {args.output} is a folder; give the .onnx file to write',
              file=sys.stderr)
        return 1
    exporting = False  # until the temporary beside the output exists, an OSError means "cannot write there"
    try:  # the output is written to a temporary beside it, then renamed: no half file, ever
        with atomic_path(args.output) as partial:
            exporting = True
            _export(args, partial)
    except (CheckpointError, ExportCheckError, ValueError, OSError) as error:
        reason = error if exporting else f'cannot write {args.output}: {getattr(error, "strerror", None) or error}'
        print(f'starpose-export: error: {reason}', file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f'starpose-export: interrupted; {args.output} was not written', file=sys.stderr)
        return 130
    size = args.output.stat().st_size / 1e6
    print(f'wrote {args.output} ({size:.1f} MB, opset {args.opset}, {args.precision})')
    return 0


if __name__ == '__main__':
    sys.exit(main())
