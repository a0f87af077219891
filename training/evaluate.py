"""``starpose-eval``: PoseTrack evaluation of prediction files and of models.

Subcommands:

- ``posetrack`` -- poseval's command line (``--groundTruth DIR --predictions DIR
  --evalPoseEstimation [--outputDir DIR] [--saveEvalPerSequence]``): per-joint AP table, written as
  ``total_AP_metrics.json`` like poseval.
- ``oks`` -- the same directories, OKS keypoint AP@0.5, AP@0.75, mAP and AR (COCOeval).
- ``model`` -- run checkpoints (and the two baselines that need no other project) over a
  PoseTrack-format dataset with ground-truth boxes; writes PoseTrack18 prediction files, and a JSON
  and a markdown table shaped like the paper's Tables 1, 2 and 4.

Python API (used by the training scripts): :func:`evaluate_model`, :func:`baseline_models`,
:func:`write_results`.
"""
from __future__ import annotations

import argparse
import json
import math
import re
import sys
import time
import weakref
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from starpose_model.checkpoint import CheckpointError, load_inference_model
from starpose_model.contract import HR_SIZE
from starpose_model.heatmaps import crop_to_image
from starpose_model.inference import METHOD_TITLES, StarPoseInference, with_method
from starpose_model.keypoints import POSETRACK_UNANNOTATED
from starpose_model.report import count_gmacs
from starpose_training.dataset import PoseTrackWindows
from starpose_training.metrics.image_quality import ImageQuality
from starpose_training.metrics.oks import evaluate_oks
from starpose_training.metrics.poseval import PART_COLUMNS, EvaluationInputError, evaluate_posetrack_ap
from starpose_training.posetrack import (
    PoseTrackFormatError,
    PoseTrackPerson,
    PoseTrackVideo,
    read_posetrack,
    read_posetrack_file,
    write_posetrack_video,
)

OKS_COLUMNS = ('AP@0.5', 'AP@0.75', 'mAP', 'AR')
TABLE_COLUMNS = (*PART_COLUMNS, *OKS_COLUMNS, 'PSNR', 'SSIM', 'Params (M)', 'GFLOPs (SR)', 'GFLOPs', 'ms/frame')


# ----------------------------------------------------------------------------- prediction directories

def load_prediction_pairs(gt_dir: str | Path, pred_dir: str | Path) -> list[tuple[PoseTrackVideo, PoseTrackVideo]]:
    """Pair every GT sequence JSON of `gt_dir` with the prediction file of the same name in `pred_dir`."""
    gt_dir, pred_dir = Path(gt_dir), Path(pred_dir)
    for label, folder in (('ground truth', gt_dir), ('prediction', pred_dir)):
        if not folder.is_dir():
            raise EvaluationInputError(f'given {label} directory {folder} does not exist')
    gt_files = sorted(gt_dir.glob('*.json'))
    if not gt_files:
        raise EvaluationInputError(f'{gt_dir}: no *.json ground-truth files')
    pairs = []
    for gt_file in gt_files:
        pred_file = pred_dir / gt_file.name
        if not pred_file.is_file():
            raise EvaluationInputError(f'prediction file {pred_file} does not exist (one per GT sequence)')
        gt_videos, pred_videos = read_posetrack_file(gt_file), read_posetrack_file(pred_file)
        if len(gt_videos) != len(pred_videos):
            raise EvaluationInputError(f'{pred_file}: {len(pred_videos)} videos, GT {gt_file} has {len(gt_videos)}')
        pairs += zip(gt_videos, pred_videos, strict=True)
    return pairs


def _add_directory_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument('-g', '--groundTruth', required=True, help='directory of GT annotations, one JSON per sequence')
    parser.add_argument('-p', '--predictions', required=True,
                        help='directory of predictions, one JSON per GT sequence with the same name')
    parser.add_argument('-o', '--outputDir', default='./out', help='directory for the result JSON (default ./out)')


def run_posetrack(args: argparse.Namespace) -> dict:
    """Poseval-compatible pose-estimation AP (the ``posetrack`` subcommand)."""
    if args.evalPoseTracking:
        raise EvaluationInputError('--evalPoseTracking (MOTA) is not implemented here; use poseval for tracking')
    if not args.evalPoseEstimation:
        raise EvaluationInputError('nothing to evaluate: pass --evalPoseEstimation')
    pairs = load_prediction_pairs(args.groundTruth, args.predictions)
    output = Path(args.outputDir)
    output.mkdir(parents=True, exist_ok=True)
    if args.saveEvalPerSequence:
        for gt_video, pred_video in pairs:
            per_sequence = evaluate_posetrack_ap([(gt_video, pred_video)])
            (output / f'{gt_video.name}_AP_metrics.json').write_text(json.dumps(per_sequence.to_json()))
    result = evaluate_posetrack_ap(pairs)
    (output / 'total_AP_metrics.json').write_text(json.dumps(result.to_json()))
    print(f'# sequences: {len(pairs)}, # evaluated frames: {result.frames}')
    print('Average Precision (AP) metric:')
    print(result.table())
    print(f'saved results to {output / "total_AP_metrics.json"}')
    return result.to_json()


def run_oks(args: argparse.Namespace) -> dict:
    """OKS keypoint AP/AR of prediction directories (the ``oks`` subcommand)."""
    result = evaluate_oks(load_prediction_pairs(args.groundTruth, args.predictions))
    output = Path(args.outputDir)
    output.mkdir(parents=True, exist_ok=True)
    (output / 'oks_metrics.json').write_text(json.dumps(result))
    print(' | '.join(f'{name} {value:.1f}' for name, value in result.items()))
    print(f'saved results to {output / "oks_metrics.json"}')
    return result


# ----------------------------------------------------------------------------- models

def baseline_models(model: StarPoseInference) -> dict[str, StarPoseInference]:
    """The two baselines of Tables 1-2 built on `model`'s pose net, LR size and window."""
    return {METHOD_TITLES[method]: with_method(model, method) for method in ('resize', 'bicubic')}


_POSE_NET_GMACS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # baselines share the pose net


def model_complexity(model: StarPoseInference, device: str | torch.device = 'cpu') -> dict[str, float]:
    """Parameters (M) and GMACs for one person-window, total and of the SR part alone.

    Total = SR part + pose net at 256 x 192 (twice with flip test); the in-graph decoding is negligible.
    """
    h, w = model.lr_size
    lr = torch.zeros(1, model.window, h, w, 3, dtype=torch.uint8, device=device)
    if model.pose_net not in _POSE_NET_GMACS:
        _POSE_NET_GMACS[model.pose_net] = count_gmacs(model.pose_net, torch.zeros(1, 3, *HR_SIZE, device=device))
    sr_gmacs = count_gmacs(model.super_resolve, lr)
    sr_params = sum(p.numel() for p in model.sr_net.parameters()) if model.sr_net is not None else 0
    return {
        'Params (M)': sum(p.numel() for p in model.parameters()) / 1e6,
        'Params SR (M)': sr_params / 1e6,
        'GFLOPs': sr_gmacs + _POSE_NET_GMACS[model.pose_net] * (2 if model.flip_test else 1),
        'GFLOPs (SR)': sr_gmacs,
    }


class _UInt8Windows(Dataset):
    """The evaluation windows as uint8 arrays (what the deployed model receives)."""

    def __init__(self, windows: PoseTrackWindows):
        self.windows = windows

    def __len__(self) -> int:
        return len(self.windows)

    def __getitem__(self, index: int) -> dict:
        crops = self.windows.crops(index)
        return {'lr_frames': torch.from_numpy(crops.lr_frames),
                'hr_image': torch.from_numpy(crops.hr_frames[self.windows.target_index]),
                'image_to_crop': torch.from_numpy(crops.image_to_crop), 'index': index}


def _prediction(person: PoseTrackPerson, keypoints: np.ndarray) -> PoseTrackPerson:
    """A PoseTrack prediction (image pixels, per-joint scores) for a GT person; ears written as unannotated."""
    points = np.concatenate([keypoints[:, :2], np.ones((len(keypoints), 1))], axis=1)
    scores = keypoints[:, 2].astype(np.float64).copy()
    points[list(POSETRACK_UNANNOTATED)] = 0.0
    scores[list(POSETRACK_UNANNOTATED)] = 0.0
    return PoseTrackPerson(id=person.id, image_id=person.image_id, track_id=person.track_id, keypoints=points,
                           bbox_xywh=person.bbox_xywh, scores=scores)


def _slug(name: str) -> str:
    return re.sub(r'[^A-Za-z0-9]+', '_', name).strip('_').lower() or 'model'


def evaluate_model(model: StarPoseInference, annotations: str | Path | list[PoseTrackVideo], image_root: str | Path,
                   *, method: str = 'model', output_dir: str | Path | None = None, batch_size: int = 16,
                   device: str | torch.device = 'cpu', workers: int = 0, blur_sigma: float | None = None) -> dict:
    """Evaluate one inference model on a PoseTrack-format dataset with ground-truth boxes.

    Every annotated person (a box and a visible joint) of every labeled frame gets a window of
    ``model.window`` frames cropped with its box, degraded to ``model.lr_size``; the model's
    keypoints are mapped back to image pixels. Returns a row of the results table: the poseval
    part APs, OKS AP/AR, PSNR/SSIM of the model's 256 x 192 image against the HR crop, parameters,
    GMACs and milliseconds per person-window (model call only, first batch excluded as warm-up,
    at this `batch_size` on `device`). With `output_dir`, PoseTrack18 prediction files go to
    ``output_dir/<method>/predictions/`` (evaluable with ``starpose-eval posetrack``).
    """
    model = model.to(device).eval()
    scale = HR_SIZE[0] // model.lr_size[0]
    windows = PoseTrackWindows(annotations, image_root, window=model.window, target_frame=model.config.target_frame,
                               scale=scale, augment=None, blur_sigma=blur_sigma)
    if not len(windows):
        raise EvaluationInputError('no annotated person with a box in the labeled frames: nothing to evaluate')
    people: list[dict[int, list[PoseTrackPerson]]] = [{} for _ in windows.videos]
    quality = ImageQuality()
    seconds, timed = 0.0, 0
    loader = DataLoader(_UInt8Windows(windows), batch_size=batch_size, num_workers=workers)
    with torch.inference_mode():
        for batch_index, batch in enumerate(loader):
            lr = batch['lr_frames'].to(device)
            start = time.perf_counter()
            sr_image, keypoints, _ = model(lr)
            if torch.device(device).type == 'cuda':
                torch.cuda.synchronize()
            if batch_index > 0 or len(loader) == 1:
                seconds += time.perf_counter() - start
                timed += len(lr)
            quality.update(sr_image.cpu().numpy(), batch['hr_image'].numpy())
            for k, index in enumerate(batch['index'].tolist()):
                ref = windows.samples[index]
                video = windows.videos[ref.video]
                person = video.people_in(video.images[ref.frame])[ref.person]
                image_points = crop_to_image(keypoints[k].cpu().numpy(), batch['image_to_crop'][k].numpy())
                people[ref.video].setdefault(person.image_id, []).append(_prediction(person, image_points))

    predictions = [PoseTrackVideo(name=v.name, source=Path(f'{v.name}.json'), images=v.images, people=p)
                   for v, p in zip(windows.videos, people, strict=True)]
    if output_dir is not None:
        folder = Path(output_dir) / _slug(method) / 'predictions'
        for prediction in predictions:
            prediction.source = write_posetrack_video(prediction, folder / f'{prediction.name}.json')
    pairs = list(zip(windows.videos, predictions, strict=True))
    row = {'method': method, **evaluate_posetrack_ap(pairs).parts, **evaluate_oks(pairs), **quality.summary(),
           **model_complexity(model, device), 'ms/frame': 1000.0 * seconds / max(timed, 1),
           'scale': scale, 'lr_size': list(model.lr_size), 'window': model.window, 'samples': len(windows),
           'batch_size': batch_size, 'device': str(device)}
    return row


def _cell(value) -> str:
    if isinstance(value, float):
        return '–' if math.isnan(value) else ('inf' if math.isinf(value) else f'{value:.2f}')
    return str(value)


def results_markdown(rows: list[dict], title: str = 'Results') -> str:
    """A markdown table shaped like the paper's Tables 1/2/4 (rows: methods)."""
    lines = [f'### {title}', '', '| Method | ' + ' | '.join(TABLE_COLUMNS) + ' |',
             '| --- |' + ' ---: |' * len(TABLE_COLUMNS)]
    for row in rows:
        lines.append(f'| {row["method"]} | ' + ' | '.join(_cell(row.get(c, float('nan'))) for c in TABLE_COLUMNS)
                     + ' |')
    return '\n'.join(lines) + '\n'


def write_results(rows: list[dict], output_dir: str | Path, title: str = 'Results') -> tuple[Path, Path]:
    """Write ``results.json`` (all rows, all fields) and ``results.md`` (the table) into `output_dir`."""
    output = Path(output_dir)
    output.mkdir(parents=True, exist_ok=True)
    json_path, md_path = output / 'results.json', output / 'results.md'
    json_path.write_text(json.dumps({'title': title, 'rows': rows}, indent=2, allow_nan=True))
    md_path.write_text(results_markdown(rows, title))
    return json_path, md_path


def run_model(args: argparse.Namespace) -> list[dict]:
    """Evaluate checkpoints (and optionally the baselines) on a dataset (the ``model`` subcommand)."""
    names = args.names or [Path(p).stem for p in args.checkpoint]
    if len(names) != len(args.checkpoint):
        raise EvaluationInputError(f'--names gives {len(names)} names for {len(args.checkpoint)} checkpoints')
    videos = read_posetrack(args.annotations)
    models = {}
    for name, path in zip(names, args.checkpoint, strict=True):
        models[name] = load_inference_model(path, device=args.device)
        models[name].flip_test = args.flip_test
    if args.baselines:
        for name, model in baseline_models(next(iter(models.values()))).items():
            model.flip_test = args.flip_test
            models[name] = model
    rows = []
    for name, model in models.items():
        row = evaluate_model(model, videos, args.image_root, method=name, output_dir=args.output_dir,
                             batch_size=args.batch_size, device=args.device, workers=args.workers)
        rows.append(row)
        print(f'{name}: Total {row["Total"]:.1f}  mAP {row["mAP"]:.1f}  PSNR {row["PSNR"]:.2f}', flush=True)
    json_path, md_path = write_results(rows, args.output_dir, args.title)
    print(results_markdown(rows, args.title))
    print(f'saved {json_path} and {md_path}')
    return rows


# ----------------------------------------------------------------------------- command line

def build_parser() -> argparse.ArgumentParser:
    """The ``starpose-eval`` argument parser."""
    parser = argparse.ArgumentParser(prog='starpose-eval', description=__doc__.split('\n\n')[0])
    commands = parser.add_subparsers(dest='command', required=True)

    posetrack = commands.add_parser('posetrack', help="PoseTrack per-joint AP with poseval's flags")
    _add_directory_flags(posetrack)
    posetrack.add_argument('-e', '--evalPoseEstimation', action='store_true',
                           help='evaluate per-frame multi-person pose estimation (AP)')
    posetrack.add_argument('-t', '--evalPoseTracking', action='store_true', help='MOTA tracking metrics (not here)')
    posetrack.add_argument('-s', '--saveEvalPerSequence', action='store_true', help='also save per-sequence JSON')
    posetrack.set_defaults(run=run_posetrack)

    oks = commands.add_parser('oks', help='OKS keypoint AP@0.5 / AP@0.75 / mAP / AR of prediction files')
    _add_directory_flags(oks)
    oks.set_defaults(run=run_oks)

    model = commands.add_parser('model', help='run checkpoints and baselines over a PoseTrack-format dataset')
    model.add_argument('--annotations', required=True, help='PoseTrack18/21 annotation directory or merged JSON')
    model.add_argument('--image-root', required=True, help='directory that file_name entries are relative to')
    model.add_argument('--checkpoint', nargs='+', required=True, help='StarPose inference checkpoints (.pt)')
    model.add_argument('--names', nargs='+', help='table names of the checkpoints (default: file stems)')
    model.add_argument('--baselines', action='store_true',
                       help="add 'pose net on LR' and 'bicubic + pose net' with the first checkpoint's pose net")
    model.add_argument('--output-dir', required=True, help='results.json, results.md and prediction files')
    model.add_argument('--title', default='Results')
    model.add_argument('--batch-size', type=int, default=16)
    model.add_argument('--workers', type=int, default=0, help='DataLoader workers reading frames')
    model.add_argument('--device', default='cpu')
    model.add_argument('--flip-test', action='store_true', help='average with the mirrored image (offline only)')
    model.set_defaults(run=run_model)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``starpose-eval``; bad inputs exit with status 2 and one clear message."""
    args = build_parser().parse_args(argv)
    try:
        args.run(args)
    except (EvaluationInputError, PoseTrackFormatError, CheckpointError, FileNotFoundError) as error:
        print(f'starpose-eval: error: {error}', file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # results are written at the end: nothing partial is left
        print('starpose-eval: interrupted; nothing written', file=sys.stderr)
        return 130
    return 0


if __name__ == '__main__':
    sys.exit(main())
