"""`starpose-label`: teacher labels for real footage (MediaPipe BlazePose on full-resolution crops).

Without PoseTrack here, real people get their labels from a strong pretrained model run where it
is strongest: on the full-resolution frame. People are found by the built-in HOG detector
(upscaled so that 60 px pedestrians are seen) and tracked by the built-in IoU tracker; each box
is cropped square at full resolution and given to BlazePose (legacy `mp.solutions.pose`,
`model_complexity=1`, the one model the wheel bundles; static mode, so every label is
independent of the previous frame). Only confident poses become labels; the other boxes become
`ignore_regions`, so an evaluation neither rewards nor punishes answers there.

Output: a PoseTrack18 folder (`images/<split>/<seq>/NNNNNN.jpg`, `annotations/<split>/<seq>.json`)
in PoseTrack's channel order (COCO-17 with head_bottom/head_top in the eye slots, derived from
BlazePose's face landmarks; ears unannotated), so the readers, `starpose-eval` and training take it
as they take PoseTrack. `labels_report.json` says how many people were kept and how well the
teacher agrees with itself when the same person is framed differently.

With `--boxes JSON` the teacher is run as a *method* instead: on the given boxes (e.g. the
reference boxes scaled to a downscaled copy of the frames), keeping every answer, with scores,
and its per-person CPU time: the peer in `benchmarks/bench_real_footage.py`.

The teacher needs the optional extra (`bash scripts/setup_teacher.sh`: its own venv, since
mediapipe 0.10.21 needs protobuf < 5 where ONNX needs >= 6).

    starpose-label vtest.avi --frames 300:795 --split train --out data/vtest
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from starpose_ros.bag_tools.frames import FrameSourceError, image_folder_frames, video_frames
from starpose_ros.core.detector import HogPersonDetector
from starpose_ros.core.drawing import draw_skeleton
from starpose_ros.core.tracker import GENERATED_ID_PREFIX, IoUTracker
from starpose_training.metrics.pck import PCKAccumulator
from starpose_training.posetrack import (
    PoseTrackImage,
    PoseTrackPerson,
    PoseTrackVideo,
    read_posetrack_file,
    write_posetrack_video,
)

TEACHER_INPUT = 256  # side of the square crop handed to BlazePose
# BlazePose's 33 landmarks -> PoseTrack channels 5..16 (shoulders, elbows, wrists, hips, knees, ankles).
_LIMB_LANDMARKS = (11, 12, 13, 14, 15, 16, 23, 24, 25, 26, 27, 28)
_NOSE, _EYES, _MOUTH = 0, (2, 5), (9, 10)


class LabelError(RuntimeError):
    """Bad input or a missing extra; the message says which and what to do."""


def blazepose_to_posetrack(landmarks: np.ndarray) -> np.ndarray:
    """(33, 3) BlazePose x, y, visibility -> (17, 3) PoseTrack x, y, score.

    head_bottom (chin) and head_top (crown) are not BlazePose landmarks: they are placed on the
    eye-mouth axis, 0.7 and 1.7 eye-mouth distances from the mouth and the eyes (the eyes sit at
    half the head's height); their score is the lowest of the landmarks used.
    """
    out = np.zeros((17, 3), dtype=np.float64)
    out[0] = landmarks[_NOSE]
    eyes = landmarks[list(_EYES)]
    mouth = landmarks[list(_MOUTH)]
    eye_mid, mouth_mid = eyes[:, :2].mean(axis=0), mouth[:, :2].mean(axis=0)
    down = mouth_mid - eye_mid
    face_score = float(min(eyes[:, 2].min(), mouth[:, 2].min()))
    out[1] = (*(mouth_mid + 0.7 * down), face_score)
    out[2] = (*(eye_mid - 1.7 * down), face_score)
    out[5:] = landmarks[list(_LIMB_LANDMARKS)]
    return out


class BlazePoseTeacher:
    """Single-person BlazePose on a square full-resolution crop around a box."""

    def __init__(self, min_detection_confidence: float = 0.5):
        try:
            from mediapipe.python.solutions import pose as mp_pose
        except ImportError as error:
            raise LabelError(f'the teacher needs MediaPipe ({error}); run `bash scripts/setup_teacher.sh` and use '
                             '.venv-teacher/bin/starpose-label') from None
        self._pose = mp_pose.Pose(static_image_mode=True, model_complexity=1, enable_segmentation=False,
                                  min_detection_confidence=min_detection_confidence)
        self.seconds = 0.0
        self.calls = 0

    def estimate(self, image_rgb: np.ndarray, box_xywh, margin: float = 1.25) -> np.ndarray | None:
        """(17, 3) PoseTrack-order keypoints in image pixels with BlazePose's visibility, or None."""
        x, y, w, h = (float(v) for v in box_xywh)
        side = margin * max(w, h)
        scale = TEACHER_INPUT / side
        to_crop = np.array([[scale, 0, TEACHER_INPUT / 2 - scale * (x + w / 2)],
                            [0, scale, TEACHER_INPUT / 2 - scale * (y + h / 2)]])
        start = time.perf_counter()
        crop = cv2.warpAffine(image_rgb, to_crop, (TEACHER_INPUT, TEACHER_INPUT), flags=cv2.INTER_LINEAR,
                              borderMode=cv2.BORDER_CONSTANT)
        result = self._pose.process(crop)
        self.seconds += time.perf_counter() - start
        self.calls += 1
        if result.pose_landmarks is None:
            return None
        marks = np.array([(m.x * TEACHER_INPUT, m.y * TEACHER_INPUT, m.visibility)
                          for m in result.pose_landmarks.landmark], dtype=np.float64)
        marks[:, :2] = (marks[:, :2] - to_crop[:, 2]) / scale
        return blazepose_to_posetrack(marks)

    def close(self) -> None:
        """Free MediaPipe's graph."""
        self._pose.close()


@dataclass
class LabelPolicy:
    """Which teacher answers become labels."""

    min_person_score: float = 0.6  # mean visibility over the 12 limb joints
    min_joint_score: float = 0.5  # per-joint visibility for the joint to be labeled
    min_joints: int = 8  # labeled limb joints for the person to be kept


def accept(keypoints: np.ndarray | None, box_xywh, policy: LabelPolicy) -> bool:
    """A confident pose of the person in the box (its torso centre inside the box)."""
    if keypoints is None:
        return False
    limbs = keypoints[5:]
    confident = (limbs[:, 2] >= policy.min_joint_score).sum()
    if limbs[:, 2].mean() < policy.min_person_score or confident < policy.min_joints:
        return False
    x, y, w, h = box_xywh
    cx, cy = keypoints[[5, 6, 11, 12], :2].mean(axis=0)
    return bool(x <= cx <= x + w and y <= cy <= y + h)


def label_person(keypoints: np.ndarray, policy: LabelPolicy) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """PoseTrack keypoints (x, y, 1 where confident, else 0, 0, 0), bbox and bbox_head (xywh)."""
    labeled = keypoints.copy()
    labeled[:, 2] = (keypoints[:, 2] >= policy.min_joint_score).astype(np.float64)
    labeled[[3, 4]] = 0.0
    labeled[labeled[:, 2] == 0, :2] = 0.0
    points = keypoints[[0, 1, 2, *range(5, 17)], :2]
    low, high = points.min(axis=0), points.max(axis=0)
    pad = 0.1 * (high - low)
    box = np.array([*(low - pad), *(high - low + 2 * pad)])
    head_mid = keypoints[[1, 2], :2].mean(axis=0)
    head_side = float(np.linalg.norm(keypoints[2, :2] - keypoints[1, :2]))
    head = np.array([head_mid[0] - head_side / 2, head_mid[1] - head_side / 2, head_side, head_side])
    return labeled, box, head


def _box_polygon(box_xywh) -> np.ndarray:
    x, y, w, h = box_xywh
    return np.array([[x, y], [x + w, y], [x + w, y + h], [x, y + h]], dtype=np.float64)


def read_frames(source: Path, frames: range | None):
    """(index, RGB frame) of a video file or an image folder, restricted to `frames`."""
    if source.is_dir():
        _files, stream = image_folder_frames(source)
    else:
        _fps, _claimed, stream = video_frames(source)
    for index, frame in enumerate(stream):
        if frames is not None and index >= frames.stop:
            stream.close()  # releases the video
            return
        if frames is None or index in frames:
            yield index, frame


def parse_frames(text: str | None) -> range | None:
    """'300:795' -> range(300, 795); None -> all frames."""
    if text is None:
        return None
    try:
        start, stop = (int(part) for part in text.split(':'))
    except ValueError:
        raise LabelError(f"--frames wants START:STOP (e.g. 300:795), got {text!r}") from None
    if not 0 <= start < stop:
        raise LabelError(f'--frames {text}: need 0 <= START < STOP')
    return range(start, stop)


@dataclass
class Agreement:
    """The teacher against itself on a re-framed crop (shifted 10 %, 20 % larger)."""

    pck: PCKAccumulator = field(default_factory=PCKAccumulator)

    def check(self, teacher: BlazePoseTeacher, image: np.ndarray, box, labeled: np.ndarray) -> None:
        """Run the teacher again on a moved, enlarged box and score it against the label."""
        x, y, w, h = box
        moved = (x + 0.1 * w, y - 0.1 * h, w, h)
        self.pck.add(labeled, teacher.estimate(image, moved, margin=1.5))


def label_footage(source: Path, out: Path, *, split: str, seq: str, frames: range | None,
                  upscale: float = 1.5, policy: LabelPolicy | None = None, agreement_every: int = 5,
                  overlays: int = 4, progress=None, teacher=None, detector=None) -> dict:
    """Label every frame of `source` (HOG + tracker + BlazePose); return the report.

    `teacher` (`estimate(image, box, margin)`, `close()`, `seconds`, `calls`) and `detector`
    (`detect(image)`) default to BlazePose and HOG; tests give their own.
    """
    policy = policy or LabelPolicy()
    teacher = teacher or BlazePoseTeacher()
    detector = detector or HogPersonDetector(upscale=upscale)
    tracker = IoUTracker(track_max_age_s=0.5)
    agreement = Agreement()
    images, people = [], {}
    kept = ignored = seen = 0
    overlay_dir = out / 'overlays' / split
    try:
        for k, (index, frame) in enumerate(read_frames(source, frames)):
            file_name = f'images/{split}/{seq}/{index:06d}.jpg'
            (out / file_name).parent.mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(out / file_name), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 95])
            image_id = 10_000 + index
            detections = tracker.update(index * 100_000_000, detector.detect(frame))
            frame_people, regions = [], []
            for detection in detections:
                seen += 1
                keypoints = teacher.estimate(frame, detection.box_xywh)
                if not accept(keypoints, detection.box_xywh, policy):
                    regions.append(_box_polygon(detection.box_xywh))
                    continue
                labeled, box, head = label_person(keypoints, policy)
                track = int(detection.track_id.removeprefix(GENERATED_ID_PREFIX))
                frame_people.append(PoseTrackPerson(id=len(frame_people), image_id=image_id, track_id=track,
                                                    keypoints=labeled, bbox_xywh=box, bbox_head_xywh=head))
                if agreement_every and seen % agreement_every == 0:
                    agreement.check(teacher, frame, detection.box_xywh, labeled)
            kept += len(frame_people)
            ignored += len(regions)
            images.append(PoseTrackImage(id=image_id, file_name=file_name, vid_id=seq, frame_id=index,
                                         nframes=None, is_labeled=True, ignore_regions=regions))
            people[image_id] = frame_people
            if k < overlays * 25 and k % 25 == 0:
                _write_overlay(frame, frame_people, regions, overlay_dir / f'{index:06d}.png')
            if progress:
                progress(k, kept)
    finally:
        teacher.close()
    if not images:
        raise LabelError(f'{source}: no frames in the range asked for')
    video = PoseTrackVideo(name=seq, source=out, images=images, people=people)
    write_posetrack_video(video, out / 'annotations' / split / f'{seq}.json')
    report = {'source': str(source), 'split': split, 'frames': len(images), 'detections': seen,
              'labeled_people': kept, 'ignore_regions': ignored, 'policy': policy.__dict__,
              'teacher_ms_per_call': 1000 * teacher.seconds / max(teacher.calls, 1),
              'self_agreement_pck@0.2': agreement.pck.summary()}
    (out / f'labels_report_{split}.json').write_text(json.dumps(report, indent=2))
    return report


def _write_overlay(frame: np.ndarray, people: list[PoseTrackPerson], regions: list[np.ndarray], path: Path) -> None:
    canvas = frame.copy()
    for region in regions:
        cv2.polylines(canvas, [region.astype(np.int32)], True, (128, 128, 128), 1)
    for person in people:
        draw_skeleton(canvas, person.keypoints, 'posetrack', (0, 255, 0), 0.5, 1)
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), cv2.cvtColor(canvas, cv2.COLOR_RGB2BGR))


def predict_on_boxes(source: Path, boxes_json: Path, out_json: Path, *, box_scale: float = 1.0) -> dict:
    """Run the teacher as a method on the boxes of a PoseTrack file; write predictions with scores."""
    try:
        (reference,) = read_posetrack_file(boxes_json)
    except ValueError as error:
        raise LabelError(f'{boxes_json}: expected one video ({error})') from None
    teacher = BlazePoseTeacher()
    people, answered, asked = {}, 0, 0
    try:
        frames = dict(read_frames(source, None))
        if len(frames) < len(reference.images):
            raise LabelError(f'{source} has {len(frames)} frames, {boxes_json} describes {len(reference.images)}')
        for k, image in enumerate(reference.images):
            out = []
            for person in reference.people_in(image):
                if person.bbox_xywh is None:
                    continue
                asked += 1
                keypoints = teacher.estimate(frames[k], person.bbox_xywh * box_scale)
                if keypoints is None:
                    continue
                answered += 1
                keypoints[:, :2] /= box_scale
                scores = keypoints[:, 2].copy()
                keypoints[:, 2] = 1.0
                out.append(PoseTrackPerson(id=person.id, image_id=image.id, track_id=person.track_id,
                                           keypoints=keypoints, bbox_xywh=person.bbox_xywh, scores=scores,
                                           score=float(scores[5:].mean())))
            people[image.id] = out
    finally:
        teacher.close()
    write_posetrack_video(PoseTrackVideo(reference.name, out_json, reference.images, people), out_json)
    return {'people': asked, 'answered': answered, 'ms_per_person': 1000 * teacher.seconds / max(teacher.calls, 1)}


def build_parser() -> argparse.ArgumentParser:
    """The command line of `starpose-label`."""
    parser = argparse.ArgumentParser(prog='starpose-label', description=__doc__.split('\n\n')[0])
    parser.add_argument('source', type=Path, help='a video file or a folder of frames (name order)')
    parser.add_argument('--out', type=Path, required=True, help='output PoseTrack18 folder (or JSON with --boxes)')
    parser.add_argument('--frames', help='START:STOP frame range (default: all)')
    parser.add_argument('--split', default='train', help='PoseTrack split folder name (default: %(default)s)')
    parser.add_argument('--seq', default=None, help='sequence name (default: the source file name)')
    parser.add_argument('--upscale', type=float, default=1.5, help='HOG upscale (default: %(default)s)')
    parser.add_argument('--min-person-score', type=float, default=LabelPolicy.min_person_score)
    parser.add_argument('--min-joint-score', type=float, default=LabelPolicy.min_joint_score)
    parser.add_argument('--boxes', type=Path, default=None,
                        help='run the teacher as a method on the boxes of this PoseTrack JSON')
    parser.add_argument('--box-scale', type=float, default=1.0, help='with --boxes: multiply boxes by this')
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of `starpose-label`."""
    args = build_parser().parse_args(argv)
    try:
        if not args.source.exists():
            raise LabelError(f'{args.source}: no such file or folder')
        if args.boxes is not None:
            summary = predict_on_boxes(args.source, args.boxes, args.out, box_scale=args.box_scale)
            print(json.dumps(summary))
            return 0
        from tqdm import tqdm
        frames = parse_frames(args.frames)
        bar = tqdm(total=len(frames) if frames else None, unit='frame', disable=None)

        def progress(_k, kept):
            bar.update(1)
            bar.set_postfix(people=kept)
        policy = LabelPolicy(args.min_person_score, args.min_joint_score)
        report = label_footage(args.source, args.out, split=args.split, seq=args.seq or args.source.stem,
                               frames=frames, upscale=args.upscale, policy=policy, progress=progress)
        bar.close()
    except (LabelError, FrameSourceError, OSError) as error:
        print(f'starpose-label: {error}', file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print('starpose-label: interrupted', file=sys.stderr)
        return 130
    groups = report['self_agreement_pck@0.2']
    print(f"{report['labeled_people']} people labeled in {report['frames']} frames "
          f"({report['ignore_regions']} boxes left as ignore regions); self-agreement PCK@0.2 "
          f"{groups['pck']:.3f} over {groups['people']} re-framed people -> {args.out}")
    return 0


if __name__ == '__main__':
    sys.exit(main())
