"""Accuracy on real people: STAR-Pose against its baselines, the mean pose and the teacher itself.

The reference is the teacher's labels from the full-resolution frames (`starpose-label`); the
low-resolution cases shrink the frames x4 and x8 with `cv2.INTER_AREA`, as a far camera would see
the people (17-35 and 8-18 px tall on vtest). Each method runs the node's own core
(`PosePipeline`: tracker, 5-frame aligned windows, one batched backend call per frame) with
  - tight boxes: the reference boxes, scaled to the frame, with the reference track ids;
  - detector boxes: the built-in HOG detector on the (shrunk) frame, upscaled so it finds small
    people, tracked by the built-in tracker; a reference person counts as detected when a HOG box
    holds its torso centre with IoU >= 0.2, and PCK is over the detected people.
Methods: STAR-Pose, bicubic + the same pose net, the LR crop resized + the same pose net, the mean
pose placed in the box (fitted on the val split: it looks at no pixel) and the teacher (BlazePose)
on the same shrunk frame and box (needs `.venv-teacher`, `bash scripts/setup_teacher.sh`).
Metrics: PCK@0.2 of the torso per joint group (`starpose_training.metrics.pck`), OKS AP against the
reference, the share of people answered, and the per-person CPU time of every method in this run.

    python benchmarks/bench_real_footage.py --model starpose_ros/assets/starpose_small_real.pt \
        --labels outputs/real/vtest --split test --out outputs/bench_real
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import torch
from bench_model_latency import ort_call
from harness import Case, Plan, compare, fmt_spread

from starpose_model import crops
from starpose_model.inference import METHOD_TITLES
from starpose_model.keypoints import NUM_KEYPOINTS
from starpose_ros.core.backends.torch_backend import TorchBackend
from starpose_ros.core.detector import HogPersonDetector
from starpose_ros.core.drawing import draw_skeleton
from starpose_ros.core.models import resolve_model
from starpose_ros.core.pipeline import PipelineConfig, PosePipeline
from starpose_ros.core.tracker import iou_matrix
from starpose_ros.core.types import Detection, FrameInput
from starpose_training.metrics.oks import evaluate_oks
from starpose_training.metrics.pck import JOINT_GROUPS, MeanPose, PCKAccumulator
from starpose_training.posetrack import PoseTrackPerson, PoseTrackVideo, read_posetrack, write_posetrack_video

ROOT = Path(__file__).resolve().parents[1]
MODEL_METHODS = ('star_pose', 'bicubic', 'resize')
TITLES = {**METHOD_TITLES, 'prior': 'Mean pose in the box', 'teacher': 'Teacher (BlazePose) on the same input'}


def load_split(labels: Path, split: str, max_frames: int | None):
    """The reference video of a split and its RGB frames (full resolution)."""
    (video,) = read_posetrack(labels / 'annotations' / split)
    images = video.images[:max_frames] if max_frames else video.images
    frames = [cv2.cvtColor(cv2.imread(str(labels / image.file_name)), cv2.COLOR_BGR2RGB) for image in images]
    return video, images, frames


def shrink(frame: np.ndarray, scale: int) -> np.ndarray:
    """The frame as a camera `scale` times farther away sees it."""
    if scale == 1:
        return frame
    return cv2.resize(frame, (frame.shape[1] // scale, frame.shape[0] // scale), interpolation=cv2.INTER_AREA)


def to_full(points: np.ndarray, scale: int) -> np.ndarray:
    """Pixel coordinates in the shrunk frame -> full-resolution pixels (pixel-centre convention)."""
    return (points + 0.5) * scale - 0.5


def match_detections(people: list[PoseTrackPerson], boxes: np.ndarray, scale: int) -> dict[int, int]:
    """Reference person index -> detector box index (greedy IoU >= 0.2, torso centre inside)."""
    if not people or not len(boxes):
        return {}
    ref = np.array([p.bbox_xywh for p in people]) / scale
    iou = iou_matrix(ref, boxes)
    for i, person in enumerate(people):
        cx, cy = (person.keypoints[[5, 6, 11, 12], :2].mean(axis=0) + 0.5) / scale - 0.5
        x, y, w, h = boxes.T
        iou[i, ~((x <= cx) & (cx <= x + w) & (y <= cy) & (cy <= y + h))] = 0
    matches = {}
    for flat in np.argsort(-iou, axis=None):
        i, j = np.unravel_index(flat, iou.shape)
        if iou[i, j] < 0.2:
            break
        if i not in matches and j not in matches.values():
            matches[int(i)] = int(j)
    return matches


def box_sets(video, images, small_frames, scale: int, hog_upscale: float, detect: bool = True):
    """Per frame and box mode: {key: (box in shrunk-frame pixels, track id or None)}.

    Keys >= 0 are reference people; detector boxes that hold no reference person get keys < 0
    (they still run, as in the node, but are not scored). `detect` False: no detector boxes.
    """
    tight, hog = [], []
    detector = HogPersonDetector(upscale=hog_upscale) if detect else None
    for image, frame in zip(images, small_frames, strict=True):
        people = video.people_in(image)
        tight.append({i: (np.asarray(p.bbox_xywh) / scale, f'ref{p.track_id}') for i, p in enumerate(people)})
        if detector is None:
            hog.append({})
            continue
        boxes = np.array([d.box_xywh for d in detector.detect(frame)]).reshape(-1, 4)
        matches = match_detections(people, boxes, scale)
        unmatched = [j for j in range(len(boxes)) if j not in matches.values()]
        hog.append({i: (boxes[j], None) for i, j in matches.items()} | {-1 - j: (boxes[j], None) for j in unmatched})
    return {'tight': tight, 'detector': hog}


def fit_prior(labels: Path, scale_hog_upscale: float) -> dict[str, MeanPose]:
    """Mean poses for tight and detector boxes, fitted on the val split at full resolution."""
    video, images, frames = load_split(labels, 'val', None)
    boxes = box_sets(video, images, frames, 1, scale_hog_upscale)
    priors = {}
    for mode, per_frame in boxes.items():
        pairs = [(box, video.people_in(image)[i].keypoints)
                 for image, frame_boxes in zip(images, per_frame, strict=True)
                 for i, (box, _) in frame_boxes.items() if i >= 0]
        priors[mode] = MeanPose(pairs)
    return priors


def run_model(model: Path, method: str, small_frames, per_frame_boxes, threads: int):
    """Poses (shrunk-frame pixels) per (frame, key) through the node's core; ms per person; crops."""
    backend = TorchBackend(model, method=method, num_threads=threads)
    pipeline = PosePipeline(backend, PipelineConfig(max_batch=16, max_tracks=64))
    poses, infer_ms, persons, crops_seen = {}, 0.0, 0, {}
    for k, (frame, boxes) in enumerate(zip(small_frames, per_frame_boxes, strict=True)):
        keys = list(boxes)
        detections = [Detection(tuple(float(v) for v in boxes[key][0]), boxes[key][1]) for key in keys]
        result = pipeline.process(FrameInput(k * 100_000_000, 'camera', frame, detections))
        if result is None:
            continue
        infer_ms += result.timings_ms['infer'] + result.timings_ms['crop']
        persons += len(result.persons)
        for person in result.persons:  # boxes come back as given (or clipped at the border): nearest
            index = min(keys, key=lambda key: float(np.abs(boxes[key][0] - person.box_xywh).sum()))
            if index >= 0:
                keypoints = person.keypoints.astype(np.float64).copy()
                poses[(k, index)] = keypoints
                crops_seen[(k, index)] = (person.sr_crop, person.image_to_crop)
    backend.close()
    return poses, infer_ms / max(persons, 1), crops_seen


def run_teacher(teacher_python: Path, small_frames, per_frame_boxes, images, scale: int, workdir: Path):
    """The teacher on the shrunk frames and boxes (a subprocess in its own venv)."""
    frame_dir = workdir / f'frames_x{scale}'
    frame_dir.mkdir(parents=True, exist_ok=True)
    for k, frame in enumerate(small_frames):
        cv2.imwrite(str(frame_dir / f'{k:06d}.png'), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    people = {image.id: [PoseTrackPerson(id=index, image_id=image.id, track_id=index, keypoints=np.zeros((17, 3)),
                                         bbox_xywh=np.asarray(box, dtype=np.float64))
                         for index, (box, _) in boxes.items() if index >= 0]
              for image, boxes in zip(images, per_frame_boxes, strict=True)}
    boxes_json = write_posetrack_video(PoseTrackVideo('boxes', workdir, list(images), people), workdir / 'boxes.json')
    out_json = workdir / 'teacher.json'
    env = dict(os.environ, OMP_NUM_THREADS='2')
    done = subprocess.run([str(teacher_python), '-m', 'starpose_ros.bag_tools.label', str(frame_dir),
                           '--boxes', str(boxes_json), '--out', str(out_json)],
                          capture_output=True, text=True, env=env, check=False)
    if done.returncode:
        raise RuntimeError(f'teacher failed: {done.stderr.strip().splitlines()[-1:]}')
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    (predicted,) = read_posetrack(out_json)
    poses = {}
    for k, image in enumerate(predicted.images):
        for person in predicted.people_in(image):
            keypoints = person.keypoints.copy()
            keypoints[:, 2] = person.scores
            poses[(k, person.id)] = keypoints
    return poses, summary['ms_per_person']


def score(video, images, poses: dict, scale: int, detected: list[dict] | None) -> dict:
    """PCK per joint group and OKS AP of one method's poses against the reference."""
    pck = PCKAccumulator(0.2)
    predicted_people = {}
    asked = 0
    for k, image in enumerate(images):
        out = []
        for i, person in enumerate(video.people_in(image)):
            if detected is not None and i not in detected[k]:
                continue
            asked += 1
            keypoints = poses.get((k, i))
            if keypoints is not None:
                keypoints = keypoints.copy()
                keypoints[:, :2] = to_full(keypoints[:, :2], scale)
                out.append(PoseTrackPerson(id=i, image_id=image.id, track_id=i,
                                           keypoints=np.hstack([keypoints[:, :2], np.ones((NUM_KEYPOINTS, 1))]),
                                           scores=keypoints[:, 2], score=float(np.mean(keypoints[5:, 2]))))
            pck.add(person.keypoints, None if keypoints is None else keypoints)
        predicted_people[image.id] = out
    reference = PoseTrackVideo(video.name, video.source, list(images), {im.id: video.people_in(im) for im in images})
    prediction = PoseTrackVideo(video.name, video.source, list(images), predicted_people)
    oks = evaluate_oks([(reference, prediction)])
    return {**pck.summary(), 'oks_ap': oks['mAP'], 'asked': asked}


def filmstrip(path: Path, frames, images, video, crops_by_method: dict, poses_by_method: dict, count: int = 6):
    """A PNG: per sampled person, the method's 256x192 crop with its skeleton, methods side by side."""
    common = sorted(set.intersection(*(set(c) for c in crops_by_method.values())))
    picks = common[:: max(1, len(common) // count)][:count]
    rows = []
    for key in picks:
        tiles = []
        for method, crops_seen in crops_by_method.items():
            crop, image_to_crop = crops_seen[key]
            canvas = crop.copy()
            keypoints = poses_by_method[method][key].copy()
            keypoints[:, :2] = crops.transform_points(keypoints[:, :2], image_to_crop)
            draw_skeleton(canvas, keypoints, 'posetrack', (0, 255, 0), 0.0, 2)
            cv2.putText(canvas, method, (4, 14), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (255, 255, 0), 1)
            tiles.append(canvas)
        rows.append(np.hstack(tiles))
    if rows:
        cv2.imwrite(str(path), cv2.cvtColor(np.vstack(rows), cv2.COLOR_RGB2BGR))


def throughput(model: Path, threads: int, batch: int = 8, rounds: int = 7) -> dict:
    """ONNX Runtime person-windows/s of the model at `batch` (the node's CPU runtime), through the harness."""
    onnx, _ = resolve_model(model, 'onnxruntime')
    case = Case('ort', ort_call, threads, {'onnx': str(onnx), 'batch': batch}, units=batch)
    timed = compare([case], Plan(rounds=rounds))['cases']['ort']
    return {'batch': batch, 'threads': threads, 'ms_per_window': timed['ms_per_unit']['median'],
            'windows_per_s': timed['units_per_s']['median'], 'ms_per_window_spread': timed['ms_per_unit'],
            'rounds': rounds}


def markdown(rows: list[dict], speed: dict, meta: dict) -> str:
    """The results as a markdown table."""
    lines = [f"# Real-footage benchmark ({meta['split']} split, {meta['frames']} frames, model {meta['model']})", '',
             '| scale | boxes | method | PCK@0.2 | shoulder | elbow | wrist | hip | knee | ankle | OKS AP | answered '
             '| people | ms/person |', '|' + ' --- |' * 14]
    for r in rows:
        lines.append(f"| x{r['scale']} | {r['boxes']} | {TITLES[r['method']]} | {r['pck']:.3f} | "
                     + ' | '.join(f"{r['pck_' + g]:.2f}" for g in JOINT_GROUPS)
                     + f" | {r['oks_ap']:.3f} | {r['answered']:.2f} | {r['people']} | {r['ms_per_person']:.1f} |")
    if speed:
        lines += ['', f"ONNX Runtime, batch {speed['batch']}, {speed['threads']} threads: "
                  f"{speed['windows_per_s']:.1f} person-windows/s ({fmt_spread(speed['ms_per_window_spread'], 2)} "
                  f"ms per window over {speed['rounds']} rounds)"]
    lines += ['', f"Detector-box rows: PCK over the people HOG found (detected share per scale: "
              f"{meta['detected_share']})."]
    return '\n'.join(lines) + '\n'


def save(out: Path, rows: list[dict], speed: dict, meta: dict, detected_share: dict) -> None:
    """Write results.{json,md} (after every row, so an interrupted run leaves what it measured)."""
    meta = {**meta, 'detected_share': detected_share}
    (out / 'results.json').write_text(json.dumps({'meta': meta, 'rows': rows, 'speed': speed}, indent=2))
    (out / 'results.md').write_text(markdown(rows, speed, meta))


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--model', type=Path, default=ROOT / 'starpose_ros/assets/starpose_small_real.pt')
    parser.add_argument('--labels', type=Path, default=ROOT / 'outputs/real/vtest')
    parser.add_argument('--split', default='test')
    parser.add_argument('--scales', type=int, nargs='+', default=[1, 4, 8])
    parser.add_argument('--boxes', nargs='+', default=['tight', 'detector'], choices=['tight', 'detector'])
    parser.add_argument('--methods', nargs='+', default=[*MODEL_METHODS, 'prior', 'teacher'],
                        choices=[*MODEL_METHODS, 'prior', 'teacher'])
    parser.add_argument('--teacher-python', type=Path, default=ROOT / '.venv-teacher/bin/python')
    parser.add_argument('--threads', type=int, default=2)
    parser.add_argument('--max-frames', type=int, default=None)
    parser.add_argument('--out', type=Path, default=ROOT / 'outputs/bench_real')
    parser.add_argument('--no-speed', action='store_true', help='skip the ONNX Runtime throughput line')
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run every (scale, boxes, method) and write results.{json,md} and filmstrip.png."""
    args = _parser().parse_args(argv)
    torch.set_num_threads(args.threads)
    methods = list(args.methods)
    if 'teacher' in methods and not args.teacher_python.is_file():
        print(f'teacher skipped: {args.teacher_python} missing (bash scripts/setup_teacher.sh)', file=sys.stderr)
        methods.remove('teacher')
    args.out.mkdir(parents=True, exist_ok=True)
    video, images, frames = load_split(args.labels, args.split, args.max_frames)
    priors = fit_prior(args.labels, 1.5) if 'prior' in methods else {}
    rows, detected_share = [], {}
    meta = {'split': args.split, 'frames': len(images), 'model': str(args.model), 'threads': args.threads,
            'load_average_start': os.getloadavg()}
    for scale in args.scales:
        small = [shrink(frame, scale) for frame in frames]
        boxes = box_sets(video, images, small, scale, hog_upscale=1.5 * scale, detect='detector' in args.boxes)
        detected = [{i for i in b if i >= 0} for b in boxes['detector']]
        total = sum(len(video.people_in(im)) for im in images)
        if 'detector' in args.boxes:
            detected_share[f'x{scale}'] = round(sum(map(len, detected)) / max(total, 1), 3)
        for mode in args.boxes:
            crops_by_method, poses_by_method = {}, {}
            for method in methods:
                start = time.perf_counter()
                if method in MODEL_METHODS:
                    poses, ms, seen = run_model(args.model, method, small, boxes[mode], args.threads)
                    poses_by_method[method], crops_by_method[method] = poses, seen
                elif method == 'prior':
                    poses = {(k, i): priors[mode].place(box) for k, b in enumerate(boxes[mode])
                             for i, (box, _) in b.items() if i >= 0}
                    ms = 0.0
                else:
                    with tempfile.TemporaryDirectory(dir=args.out) as tmp:
                        poses, ms = run_teacher(args.teacher_python, small, boxes[mode], images, scale, Path(tmp))
                row = {'scale': scale, 'boxes': mode, 'method': method, 'ms_per_person': ms,
                       **score(video, images, poses, scale, detected if mode == 'detector' else None),
                       'seconds': time.perf_counter() - start}
                rows.append(row)
                save(args.out, rows, {}, {**meta, 'complete': False}, detected_share)
                print(f"x{scale} {mode:8s} {TITLES[method]:40s} PCK {row['pck']:.3f}  OKS AP {row['oks_ap']:.3f}  "
                      f"answered {row['answered']:.2f}  {ms:.1f} ms/person", flush=True)
            if scale == 4 and mode == 'tight' and len(crops_by_method) > 1:
                filmstrip(args.out / 'filmstrip.png', frames, images, video, crops_by_method, poses_by_method)
    speed = {} if args.no_speed else throughput(args.model, args.threads)
    save(args.out, rows, speed, {**meta, 'complete': True, 'load_average_end': os.getloadavg()}, detected_share)
    print((args.out / 'results.md').read_text())
    print(f'-> {args.out}/results.{{json,md}}, filmstrip.png')
    return 0


if __name__ == '__main__':
    sys.exit(main())
