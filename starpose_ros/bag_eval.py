"""`starpose-bag-eval`: replay a rosbag2 through the node's pipeline, frame by frame, and report.

Reads a rosbag2 directory (sqlite3 or mcap) or a bare `.mcap` file with `rosbags` (no ROS
install needed), runs every image through `PosePipeline.process` (the node's core, unchanged,
without the node's newest-wins frame dropping, so results are deterministic), and writes into
the output folder, as it goes:

* `output_bag/` (mcap): `/poses` (starpose_msgs/PersonPoseArray), `/overlay` and `/sr_mosaic`
  (sensor_msgs/Image), each with the input image's header and bag time;
* `frames.jsonl`: one line per frame (stamp, persons, keypoints, stage timings), flushed each frame;
* `overlay.mp4`: the overlay video (OpenCV, mp4v);
* `report.json`, `report.md`, `plots/*.png` (see `starpose_ros.report`).

Detections come from a topic (`--detector topic`: starpose_msgs/TrackedDetectionArray or
vision_msgs/Detection2DArray, paired with images by exact header stamp), OpenCV's HOG people
detector (`--detector hog`) or the boxes of a PoseTrack JSON sidecar (`--detector gt`). With
`--gt-json` the report adds OKS AP, PoseTrack AP and PSNR/SSIM. `--demo` generates a synthetic
clip and evaluates the bundled demo model on it (the README's main-job command).

Bad input gives a clear error and keeps what was done: the output bag is closed, the JSONL and
report cover the frames processed before the failure. See docs/bag_replay.md.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import math
import shutil
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from starpose_model.crops import box_to_center_scale, crop_affine, warp_crop
from starpose_model.inference import METHODS
from starpose_ros import bagio, cli
from starpose_ros.core.backends import create_backend
from starpose_ros.core.backends.base import SR_HEIGHT, SR_WIDTH, BackendError, InferenceBackend, InferenceOutput
from starpose_ros.core.messages import pose_array, tracked_detections, vision_detections
from starpose_ros.core.models import BACKEND_CHOICES, BUNDLED_MODEL, RuntimeOptions, backend_options, resolve_model
from starpose_ros.core.person_filter import DEFAULT_PERSON_CLASSES, PersonFilter
from starpose_ros.core.pipeline import PipelineConfig, PosePipeline
from starpose_ros.core.types import Detection, FrameInput, FrameResult
from starpose_ros.report import FilmstripSampler, latency_summary, write_report
from starpose_ros.video2bag import convert

LOG = logging.getLogger('starpose-bag-eval')
IMAGE_TYPES = (bagio.IMAGE, bagio.COMPRESSED_IMAGE)
VISION_DETECTIONS = 'vision_msgs/msg/Detection2DArray'
DETECTION_TYPES = (bagio.DETECTIONS, VISION_DETECTIONS)
POSES_TOPIC, OVERLAY_TOPIC, MOSAIC_TOPIC = '/poses', '/overlay', '/sr_mosaic'
DETECTORS = ('topic', 'hog', 'gt')
OUT_OF_ORDER = ('warn', 'error')

# vision_msgs 4.x (Humble and newer), registered when a bag's detections use it but carry no definitions.
VISION_MSGS = {
    'vision_msgs/msg/Point2D': 'float64 x\nfloat64 y\n',
    'vision_msgs/msg/Pose2D': 'vision_msgs/Point2D position\nfloat64 theta\n',
    'vision_msgs/msg/BoundingBox2D': 'vision_msgs/Pose2D center\nfloat64 size_x\nfloat64 size_y\n',
    'vision_msgs/msg/ObjectHypothesis': 'string class_id\nfloat64 score\n',
    'vision_msgs/msg/ObjectHypothesisWithPose': 'vision_msgs/ObjectHypothesis hypothesis\n'
                                                'geometry_msgs/PoseWithCovariance pose\n',
    'vision_msgs/msg/Detection2D': 'std_msgs/Header header\nvision_msgs/ObjectHypothesisWithPose[] results\n'
                                   'vision_msgs/BoundingBox2D bbox\nstring id\n',
    'vision_msgs/msg/Detection2DArray': 'std_msgs/Header header\nvision_msgs/Detection2D[] detections\n',
}


class BagEvalError(RuntimeError):
    """The evaluation cannot go on; the message names the bag, topic, type or frame at fault."""


def eval_typestore():
    """starpose_msgs + the distro's standard messages + vision_msgs 4.x definitions."""
    from rosbags.typesys import get_types_from_msg

    typestore = bagio.starpose_typestore()
    types = {}
    for name, text in VISION_MSGS.items():
        types.update(get_types_from_msg(text, name))
    typestore.register(types)
    return typestore


# ---------------------------------------------------------------------------------------------
# Reading
# ---------------------------------------------------------------------------------------------

class BagSource:
    """A rosbag2 directory or `.mcap`/`.db3` file opened with rosbags' AnyReader."""

    def __init__(self, path, typestore=None):
        from rosbags.highlevel import AnyReader, AnyReaderError

        self.path = Path(path)
        if not self.path.exists():
            raise BagEvalError(f'bag not found: {self.path}')
        if self.path.is_dir() and not (self.path / 'metadata.yaml').is_file():
            raise BagEvalError(f'{self.path} is not a rosbag2 directory (no metadata.yaml)')
        self.typestore = typestore or eval_typestore()
        try:
            self.reader = AnyReader([self.path], default_typestore=self.typestore)
            self.reader.open()
        except (AnyReaderError, FileNotFoundError) as error:
            raise BagEvalError(f'cannot open bag {self.path}: {error}') from error
        except Exception as error:  # storage plugins raise their own types on truncated/corrupt files
            raise BagEvalError(f'cannot open bag {self.path} (truncated or corrupt?): {error}') from error
        self.topics = {c.topic: c.msgtype for c in self.reader.connections}
        self.counts = {}
        for connection in self.reader.connections:
            self.counts[connection.topic] = self.counts.get(connection.topic, 0) + connection.msgcount

    def image_rate(self, topic: str) -> float:
        """Messages per second of a topic over the bag's duration (1..120; 25 when it cannot be told)."""
        count, duration = self.counts.get(topic, 0), self.reader.end_time - self.reader.start_time
        return float(np.clip((count - 1) * 1e9 / duration, 1.0, 120.0)) if count > 1 and duration > 0 else 25.0

    def require(self, topic: str, allowed: tuple[str, ...], what: str) -> str:
        """The topic's message type, or BagEvalError naming what the bag has instead."""
        if topic not in self.topics:
            listing = ', '.join(f'{t} [{m}]' for t, m in sorted(self.topics.items())) or 'none'
            raise BagEvalError(f'{self.path}: no {what} topic {topic!r}; the bag has: {listing}')
        msgtype = self.topics[topic]
        if msgtype not in allowed:
            raise BagEvalError(f'{self.path}: {what} topic {topic} carries {msgtype}; expected one of {list(allowed)}')
        return msgtype

    def messages(self, topics: list[str]) -> Iterator[tuple[str, str, int, object]]:
        """(topic, type, bag time, message) in bag-time order; read errors become BagEvalError."""
        connections = [c for c in self.reader.connections if c.topic in topics]
        count = 0
        try:
            for connection, timestamp, raw in self.reader.messages(connections=connections):
                try:
                    msg = self.reader.deserialize(raw, connection.msgtype)
                except Exception as error:
                    raise BagEvalError(f'{self.path}: cannot decode message {count} on {connection.topic} '
                                       f'({connection.msgtype}): {error}') from error
                count += 1
                yield connection.topic, connection.msgtype, timestamp, msg
        except BagEvalError:
            raise
        except Exception as error:  # truncated chunks, bad sqlite pages, ...
            raise BagEvalError(f'{self.path}: reading failed after {count} message(s) on {topics} '
                               f'(truncated or corrupt bag?): {error}') from error

    def close(self) -> None:
        """Close the reader."""
        self.reader.close()


def load_ground_truth(path):
    """The one video of a PoseTrack JSON sidecar (the bag's clip)."""
    from starpose_training.posetrack import PoseTrackFormatError, read_posetrack_file

    try:
        videos = read_posetrack_file(path)
    except (PoseTrackFormatError, OSError, ValueError) as error:
        raise BagEvalError(f'ground truth: {error}') from error
    if len(videos) != 1:
        raise BagEvalError(f'ground truth {path} holds {len(videos)} videos; give the JSON of the bag\'s clip only')
    return videos[0]


def ground_truth_detections(video, index: int) -> list[Detection]:
    """Boxes (and track ids) of the annotated people of GT frame `index`."""
    if index >= len(video.images):
        return []
    return [Detection(tuple(float(v) for v in person.bbox_xywh), None if person.track_id is None
                      else str(person.track_id), 1.0)
            for person in video.people_in(video.images[index]) if person.bbox_xywh is not None]


# ---------------------------------------------------------------------------------------------
# Writing
# ---------------------------------------------------------------------------------------------

def frame_record(result: FrameResult, index: int) -> dict:
    """The JSON line of one frame."""
    return {'frame': index, 'stamp_ns': result.stamp_ns, 'frame_id': result.frame_id,
            'keypoint_layout': result.keypoint_layout,
            'timings_ms': {k: round(v, 3) for k, v in result.timings_ms.items()},
            'persons': [{'track_id': p.track_id, 'box_xywh': [round(float(v), 2) for v in p.box_xywh],
                         'score': round(float(p.score), 4),
                         'keypoints': [[round(float(v), 2) for v in k[:2]] + [round(float(k[2]), 4)]
                                       for k in p.keypoints]}
                        for p in result.persons]}


class Outputs:
    """Output bag, per-frame JSONL and overlay video, appended frame by frame.

    The bag holds the poses; the overlay and mosaic images (~2 MB a frame at full resolution)
    only with `bag_images`. A failed write (a full disk) becomes one BagEvalError naming the
    file; `close` still finishes every file it can, so what was written stays readable.
    """

    def __init__(self, folder: Path, typestore, fps: float, write_video: bool, bag_images: bool = False):
        self.folder = folder
        self.bag_path = folder / 'output_bag'
        self.jsonl_path = folder / 'frames.jsonl'
        self.video_path = folder / 'overlay.mp4'
        for stale in (self.bag_path, self.jsonl_path, self.video_path):  # outputs of an earlier run
            if stale.is_dir():
                shutil.rmtree(stale)
            elif stale.exists():
                stale.unlink()
        self.typestore = typestore
        self.bag = bagio.BagWriter(self.bag_path, storage='mcap', typestore=typestore)
        self.jsonl = open(self.jsonl_path, 'w')  # noqa: SIM115 - closed in close()
        self.fps, self.write_video, self.bag_images = fps, write_video, bag_images
        self.video = None
        self.frames_written = 0
        self.close_errors: list[str] = []

    def write(self, result: FrameResult, index: int, bag_time_ns: int) -> None:
        """Append one frame's messages, JSON line and video frame."""
        target = self.bag_path
        try:
            self.bag.write(POSES_TOPIC, pose_array(self.typestore.types, result), bag_time_ns)
            for topic, image in ((OVERLAY_TOPIC, result.overlay_rgb), (MOSAIC_TOPIC, result.mosaic_rgb)):
                if self.bag_images and image is not None:
                    self.bag.write(topic, bagio.image_message(self.typestore, image, result.stamp_ns,
                                                              result.frame_id), bag_time_ns)
            target = self.video_path
            if result.overlay_rgb is not None:
                self._video_frame(result.overlay_rgb)
            target = self.jsonl_path
            self.jsonl.write(json.dumps(frame_record(result, index)) + '\n')
            self.jsonl.flush()
        except OSError as error:
            raise BagEvalError(f'cannot write {target}: {error.strerror or error}') from error
        self.frames_written += 1

    def _video_frame(self, overlay_rgb: np.ndarray) -> None:
        if not self.write_video:
            return
        height, width = overlay_rgb.shape[:2]
        if self.video is None:
            self.video = cv2.VideoWriter(str(self.video_path), cv2.VideoWriter_fourcc(*'mp4v'), self.fps,
                                         (width, height))
            if not self.video.isOpened():
                raise BagEvalError(f'OpenCV cannot write {self.video_path} (no mp4v encoder?)')
            self._size = (width, height)
        if (width, height) != self._size:  # a video has one size: later frames are resized
            overlay_rgb = cv2.resize(overlay_rgb, self._size, interpolation=cv2.INTER_AREA)
        self.video.write(cv2.cvtColor(overlay_rgb, cv2.COLOR_RGB2BGR))

    def close(self) -> None:
        """Finish every file (safe to call after an error); failures are kept in `close_errors`."""
        closers = [(self.bag_path, self.bag.close), (self.jsonl_path, self.jsonl.close)]
        if self.video is not None:
            closers.append((self.video_path, self.video.release))
        for path, close in closers:
            try:
                close()
            except OSError as error:
                self.close_errors.append(f'cannot finish {path}: {error.strerror or error}')


class RecordingBackend(InferenceBackend):
    """Passes calls through and keeps up to `limit` LR windows (INT8 calibration data for TensorRT)."""

    def __init__(self, inner: InferenceBackend, limit: int):
        self.inner, self.limit = inner, limit
        self.name = inner.name
        self.windows: list[np.ndarray] = []

    @property
    def model_info(self):
        """The wrapped backend's model info."""
        return self.inner.model_info

    def _run(self, lr_frames: np.ndarray) -> InferenceOutput:
        room = self.limit - sum(len(w) for w in self.windows)
        if room > 0:
            self.windows.append(lr_frames[:room].copy())
        return self.inner.infer(lr_frames)

    def save(self, path) -> tuple[Path, int]:
        """Write the windows as one uint8 .npy (N, T, h, w, 3); return the file (numpy adds .npy) and N."""
        shape = (0, *self.model_info.input_shape)
        windows = np.concatenate(self.windows) if self.windows else np.zeros(shape, np.uint8)
        path = Path(path)
        path = path if path.suffix == '.npy' else path.with_name(path.name + '.npy')
        path.parent.mkdir(parents=True, exist_ok=True)
        np.save(path, windows)
        return path, len(windows)

    def close(self) -> None:
        """Close the wrapped backend."""
        self.inner.close()


# ---------------------------------------------------------------------------------------------
# Evaluation
# ---------------------------------------------------------------------------------------------

@dataclass
class EvalOptions:
    """Everything `evaluate_bag` needs (the command line maps onto it one to one)."""

    bag: Path
    model: Path | None  # None: the bundled model
    output: Path
    backend: str = 'auto'
    method: str = 'star_pose'
    device: str = 'cpu'
    threads: int = 2
    image_topic: str = '/image'
    detections_topic: str = '/detections'
    detector: str = 'topic'
    gt_json: Path | None = None
    persons: PersonFilter = field(default_factory=PersonFilter)  # the node's person_class_ids, min_detection_score
    pipeline: PipelineConfig = field(default_factory=PipelineConfig)  # the node's defaults; detector set by `detector`
    max_frames: int | None = None
    out_of_order: str = 'warn'
    video: bool = True
    bag_images: bool = False  # overlay and mosaic images in the output bag too (~2 MB a frame)
    save_calibration: Path | None = None
    calibration_windows: int = 512
    progress: bool = True


def open_backend(options: EvalOptions) -> InferenceBackend:
    """The model of `options` (bundled when None) on its backend; baselines (`method`) run on torch."""
    backend = options.backend
    if options.method != 'star_pose':
        model = options.model or BUNDLED_MODEL
        if Path(model).suffix != '.pt' or backend not in ('auto', 'torch'):
            raise BagEvalError(f'--method {options.method} swaps the SR network of a .pt checkpoint and runs on '
                               f'the torch backend; got model {model} with backend {backend}')
        backend = 'torch'
    try:
        path, name = resolve_model(options.model, backend)
        runtime = RuntimeOptions(device=options.device, threads=options.threads,
                                 max_batch=options.pipeline.max_batch, method=options.method)
        return create_backend(name, path, **backend_options(name, runtime))
    except BackendError as error:
        raise BagEvalError(f'cannot load model {options.model or BUNDLED_MODEL} with backend {backend}: '
                           f'{error}') from error


@dataclass
class _Run:
    """Mutable state of one evaluation."""

    stamps: list[int] = field(default_factory=list)  # header stamps of the images, in bag order
    bag_times: dict[int, int] = field(default_factory=dict)  # header stamp -> bag time of its image
    index_of: dict[int, int] = field(default_factory=dict)  # header stamp -> image index
    # image index -> (track id, keypoints, score) per person: what accuracy needs, kept only with ground
    # truth; never the SR crops, so memory grows by a few hundred bytes per person, not 150 kB
    poses: dict[int, list[tuple[str, np.ndarray, float]]] = field(default_factory=dict)
    latency: dict[str, list[float]] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=lambda: {
        'frames': 0, 'results': 0, 'persons': 0, 'tracks': 0, 'unpaired_images': 0, 'unused_detections': 0,
        'out_of_order_stamps': 0, 'duplicate_stamps': 0, 'detections_in': 0, 'filtered_detections': 0,
        'rejected_detections': 0, 'over_capacity_detections': 0})
    track_ids: set[str] = field(default_factory=set)
    quality: list[tuple[float, float]] = field(default_factory=list)  # (PSNR, SSIM) per person


def _read_detections(source: BagSource, options: EvalOptions, counts: dict[str, int]
                     ) -> tuple[dict[int, list[Detection]], str]:
    """All detection messages by header stamp (first pass; detections are small); counts what is filtered."""
    if options.detections_topic not in source.topics:
        raise BagEvalError(f'{source.path}: no detections topic {options.detections_topic!r} (topics: '
                           f'{", ".join(sorted(source.topics))}); name it with --detections-topic, or find people '
                           'with --detector hog, or use ground-truth boxes with --detector gt --gt-json FILE')
    msgtype = source.require(options.detections_topic, DETECTION_TYPES, 'detections')
    decode = tracked_detections if msgtype == bagio.DETECTIONS else vision_detections
    by_stamp = {}
    for _topic, _type, _time, msg in source.messages([options.detections_topic]):
        kept, filtered = decode(msg, options.persons)
        counts['detections_in'] += len(kept) + filtered
        counts['filtered_detections'] += filtered
        by_stamp.setdefault(bagio.header_stamp_ns(msg), kept)
    if counts['detections_in'] and counts['filtered_detections'] == counts['detections_in']:
        LOG.warning('every one of the %d detections on %s is filtered out: no class id is in --person-classes %s '
                    'or the scores are below --min-detection-score %s', counts['detections_in'],
                    options.detections_topic, ','.join(sorted(options.persons.classes)), options.persons.min_score)
    return by_stamp, msgtype


def _quality(result: FrameResult) -> list[tuple[float, float]]:
    """PSNR/SSIM of each SR crop against the camera image resampled into the same HR crop."""
    from starpose_training.metrics.image_quality import psnr, ssim

    values = []
    for person in result.persons:
        center, size = box_to_center_scale(person.box_xywh)
        reference = warp_crop(result.image_rgb, crop_affine(center, size, (SR_HEIGHT, SR_WIDTH)),
                              (SR_HEIGHT, SR_WIDTH))
        values.append((psnr(person.sr_crop, reference), ssim(person.sr_crop, reference)))
    return values


def _record(run: _Run, result: FrameResult, outputs: Outputs, filmstrip: FilmstripSampler, want_quality: bool):
    index = run.index_of[result.stamp_ns]
    started = time.perf_counter()
    outputs.write(result, index, run.bag_times[result.stamp_ns])
    write_ms = (time.perf_counter() - started) * 1e3
    for stage, value in {**result.timings_ms, 'write': write_ms}.items():
        run.latency.setdefault(stage, []).append(value)
    run.counts['results'] += 1
    run.counts['persons'] += len(result.persons)
    run.track_ids.update(p.track_id for p in result.persons)
    for person in result.persons:
        filmstrip.add(index, result.image_rgb, person)
    if want_quality:  # with ground truth: image quality and the poses for accuracy
        run.quality += _quality(result)
        run.poses[index] = [(p.track_id, p.keypoints.copy(), float(p.score)) for p in result.persons]


def _accuracy(run: _Run, gt_video, layout: str) -> tuple[dict, tuple[list[str], list[float]] | None]:
    """OKS AP, PoseTrack AP (+ per joint) over the processed frames, PSNR/SSIM over all persons."""
    from starpose_training.metrics.oks import evaluate_oks
    from starpose_training.metrics.poseval import POSEVAL_JOINTS, EvaluationInputError, evaluate_posetrack_ap
    from starpose_training.posetrack import PoseTrackPerson, PoseTrackVideo

    frames = len(run.stamps)
    if len(gt_video.images) < frames:
        raise BagEvalError(f'ground truth {gt_video.source} has {len(gt_video.images)} frames, the bag {frames} '
                           'images: they must be the same clip (frame k of the bag = frame k of the JSON)')
    images = gt_video.images[:frames]
    ids = {image.id for image in images}
    gt = PoseTrackVideo(gt_video.name, gt_video.source, images, {i: p for i, p in gt_video.people.items() if i in ids},
                        gt_video.version)
    predictions = {}
    track_numbers: dict[str, int] = {}  # PoseTrack wants integer ids; ours are strings ('t3', upstream '7', ...)
    for index, image in enumerate(images):
        predictions[image.id] = [
            PoseTrackPerson(id=None, image_id=image.id, track_id=track_numbers.setdefault(track, len(track_numbers)),
                            keypoints=keypoints.astype(np.float64), scores=keypoints[:, 2].astype(np.float64),
                            score=score) for track, keypoints, score in run.poses.get(index, [])]
    prediction = PoseTrackVideo(gt_video.name, Path('predictions'), images, predictions, gt_video.version)
    accuracy = {}
    if layout != 'posetrack':
        accuracy['note'] = (f'The model outputs the {layout!r} keypoint layout and the ground truth is PoseTrack: '
                            'slots 1/2 (eyes vs head_bottom/head_top) are compared as they are.')
    try:
        accuracy.update({f'OKS {k}': v for k, v in evaluate_oks([(gt, prediction)]).items()})
        posetrack = evaluate_posetrack_ap([(gt, prediction)])
    except EvaluationInputError as error:
        accuracy['note'] = f'accuracy not computed: {error}'
        return accuracy, None
    accuracy.update({f'PoseTrack AP {k}': v for k, v in posetrack.parts.items()})
    if run.quality:
        accuracy['PSNR (dB)'] = float(np.mean([q[0] for q in run.quality if math.isfinite(q[0])] or [math.nan]))
        accuracy['SSIM'] = float(np.mean([q[1] for q in run.quality]))
    names = [name for name, _ in POSEVAL_JOINTS]
    return accuracy, (names, [float(v) for v in posetrack.ap])


def evaluate_bag(options: EvalOptions) -> dict:
    """Run the whole evaluation; return the report dict (also written to the output folder).

    Raises BagEvalError for bad input after writing everything processed so far.
    """
    if options.detector not in DETECTORS:
        raise BagEvalError(f'detector must be one of {DETECTORS}, got {options.detector!r}')
    if options.detector == 'gt' and options.gt_json is None:
        raise BagEvalError('--detector gt needs --gt-json (the PoseTrack JSON of the clip)')
    output = Path(options.output)
    bag = Path(options.bag).resolve()
    for ours in ('output_bag', 'frames.jsonl', 'overlay.mp4'):  # what a run replaces in --output
        if bag == (output / ours).resolve() or (output / ours).resolve() in bag.parents:
            raise BagEvalError(f'the input {options.bag} is this run\'s own output {output / ours}, which a run '
                               'replaces: copy it elsewhere or choose another --output')
    output.mkdir(parents=True, exist_ok=True)
    gt_video = load_ground_truth(options.gt_json) if options.gt_json is not None else None
    source = BagSource(options.bag)
    try:
        image_type = source.require(options.image_topic, IMAGE_TYPES, 'image')
        images = source.counts.get(options.image_topic, 0)
        if options.max_frames is not None:
            images = min(images, options.max_frames)
        if gt_video is not None and len(gt_video.images) < images:  # before the replay, not after it
            raise BagEvalError(f'ground truth {options.gt_json} has {len(gt_video.images)} frames, the bag '
                               f'{images} images on {options.image_topic}: they must be the same clip (frame k of '
                               'the bag = frame k of the JSON); --max-frames can cut the bag to the JSON')
        run = _Run()
        detections, detection_type = ({}, None)
        if options.detector == 'topic':
            detections, detection_type = _read_detections(source, options, run.counts)
        backend = open_backend(options)
        recorder = None
        if options.save_calibration is not None:
            backend = recorder = RecordingBackend(backend, options.calibration_windows)
        with backend:
            pipeline = PosePipeline(backend, dataclasses.replace(
                options.pipeline, detector='hog' if options.detector == 'hog' else 'none',
                hog_min_score=options.persons.min_score, draw_overlay=options.video or options.bag_images,
                draw_mosaic=options.bag_images))
            report = _replay(run, source, options, image_type, (detections, detection_type), pipeline, gt_video,
                             output)
            if recorder is not None:
                saved_path, saved = recorder.save(options.save_calibration)
                report['outputs']['calibration windows'] = f'{saved_path} ({saved} windows)'
    finally:
        source.close()
    return report


def _replay(run, source, options, image_type, topic_detections, pipeline, gt_video, output) -> dict:
    from tqdm import tqdm

    detections, detection_type = topic_detections
    total = source.counts.get(options.image_topic, 0)
    if options.max_frames is not None:
        total = min(total, options.max_frames)
    info = pipeline.info
    filmstrip = FilmstripSampler((info.lr_height, info.lr_width), info.keypoint_layout)
    outputs = Outputs(output, source.typestore, fps=source.image_rate(options.image_topic), write_video=options.video,
                      bag_images=options.bag_images)
    used_stamps: set[int] = set()
    error = None
    started = time.perf_counter()
    want_quality = gt_video is not None
    progress = tqdm(total=total, unit='frame', desc='bag-eval', disable=not options.progress)
    try:
        loop_mark = time.perf_counter()
        for _topic, _type, bag_time, msg in source.messages([options.image_topic]):
            if options.max_frames is not None and run.counts['frames'] >= options.max_frames:
                break
            stamp = bagio.header_stamp_ns(msg)
            try:
                image = bagio.decode_image(msg)
            except Exception as decode_error:
                raise BagEvalError(f'{source.path}: image {len(run.stamps)} on {options.image_topic} '
                                   f'({image_type}) cannot be decoded: {decode_error}') from decode_error
            read_ms = (time.perf_counter() - loop_mark) * 1e3  # bag read + deserialise + image decode
            if run.stamps and stamp < run.stamps[-1]:
                run.counts['out_of_order_stamps'] += 1
                message = (f'image {len(run.stamps)} has header stamp {stamp} ns, earlier than the previous '
                           f'image ({run.stamps[-1]} ns)')
                if options.out_of_order == 'error':
                    raise BagEvalError(f'{source.path}: {message}')
                LOG.warning('%s: tracks restart (the pipeline treats it as a new stream)', message)
            if stamp in run.index_of:
                run.counts['duplicate_stamps'] += 1
            else:
                run.index_of[stamp] = len(run.stamps)
                run.bag_times[stamp] = bag_time
            frame_detections = _frame_detections(options, detections, gt_video, stamp, len(run.stamps), run,
                                                 used_stamps)
            run.stamps.append(stamp)
            run.counts['frames'] += 1
            result = pipeline.process(FrameInput(stamp, msg.header.frame_id, image, frame_detections))
            run.latency.setdefault('read', []).append(read_ms)
            if result is not None:
                _record(run, result, outputs, filmstrip, want_quality)
            progress.update(1)
            loop_mark = time.perf_counter()
        for result in pipeline.flush():
            _record(run, result, outputs, filmstrip, want_quality)
    except (BagEvalError, BackendError) as failure:
        error = str(failure)
    except KeyboardInterrupt:  # Ctrl-C, or SIGTERM (see main): close and report what was done
        error = f'interrupted after {run.counts["frames"]} frames'
    finally:
        progress.close()
        outputs.close()
    if outputs.close_errors:
        error = '; '.join(([error] if error else []) + outputs.close_errors)
    wall = time.perf_counter() - started
    run.counts['tracks'] = len(run.track_ids)
    run.counts['unused_detections'] = len(set(detections) - used_stamps)
    run.counts['rejected_detections'] = pipeline.counters.rejected_detections
    run.counts['over_capacity_detections'] = pipeline.counters.over_capacity_detections
    report = {
        'run': {'bag': str(options.bag), 'model': str(options.model or BUNDLED_MODEL), 'backend': options.backend,
                'method': options.method,
                'device': options.device, 'image_topic': f'{options.image_topic} [{image_type}]',
                'detections': (f'{options.detections_topic} [{detection_type}]' if options.detector == 'topic'
                               else 'OpenCV HOG people detector' if options.detector == 'hog'
                               else f'ground-truth boxes from {options.gt_json}'),
                'keypoint_layout': pipeline.info.keypoint_layout, 'window': pipeline.info.window,
                'lr_size': [pipeline.info.lr_height, pipeline.info.lr_width],
                'target_frame': pipeline.info.target_frame},
        'counts': run.counts, 'wall_time_s': wall, 'throughput_fps': run.counts['frames'] / wall if wall else 0.0,
        'latency_ms': latency_summary(run.latency), 'error': error,
        'interrupted': error is not None and error.startswith('interrupted'),
        'outputs': {'output bag': str(outputs.bag_path), 'frames': str(outputs.jsonl_path)},
    }
    if outputs.video is not None:
        report['outputs']['overlay video'] = str(outputs.video_path)
    joint_ap = None
    if gt_video is not None and run.poses:
        report['accuracy'], joint_ap = _accuracy(run, gt_video, pipeline.info.keypoint_layout)
    json_path, md_path = write_report(output, report, run.latency, joint_ap, filmstrip.image())
    report['outputs'].update({'report': str(md_path), 'report json': str(json_path)})
    if error is not None:
        raise BagEvalError(f'{error}\n(results of the {run.counts["results"]} frames processed before are in '
                           f'{output})')
    return report


def _frame_detections(options, detections, gt_video, stamp, index, run, used_stamps) -> list[Detection] | None:
    """Detections for one image: paired by stamp, from the GT sidecar, or None (the pipeline's HOG)."""
    if options.detector == 'hog':
        return None
    if options.detector == 'gt':
        return ground_truth_detections(gt_video, index)
    if stamp in detections:
        used_stamps.add(stamp)
        return detections[stamp]
    run.counts['unpaired_images'] += 1
    return []


# ---------------------------------------------------------------------------------------------
# Demo and command line
# ---------------------------------------------------------------------------------------------

def run_demo(output, model=None, backend: str = 'auto', frames: int = 100, seed: int = 7,
             progress: bool = True, real: bool = True) -> dict:
    """Replay real footage (vtest test frames at x4: people 17-35 px tall) through the bundled model.

    The clip is fetched on first use (`starpose_training.real_footage`); where that is impossible
    (no apt-get, no network) a synthetic clip with ground truth replaces it. People are found by
    the built-in HOG detector, upscaled 6x for the small frames.
    """
    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    bag = output / 'input_bag'
    if bag.exists():  # ours, from an earlier demo run: rosbag2 writers never overwrite
        shutil.rmtree(bag)
    clip = None
    if real:
        from starpose_training.real_footage import SPLITS, FootageError, fetch_vtest
        try:
            clip = fetch_vtest()
        except FootageError as error:
            print(f'real footage unavailable ({error}); using a synthetic clip', flush=True)
    if clip is not None:
        frames = min(frames, len(SPLITS['test']))
        print(f'replaying {clip} (test frames 0-{frames - 1}, shrunk x4) ...', flush=True)
        convert(clip, bag, fps=10.0, storage='mcap', max_frames=frames, downscale=4)
        options = EvalOptions(bag=bag, model=model, output=output, backend=backend, detector='hog',
                              pipeline=PipelineConfig(hog_upscale=6.0, max_batch=8), progress=progress)
        return evaluate_bag(options)
    from starpose_training.synthetic.dataset import generate_dataset

    clip = output / 'clip'
    print(f'generating a {frames}-frame synthetic clip into {clip} and {bag} ...', flush=True)
    manifest = generate_dataset(clip, 'demo', seed, overwrite=True, frames=frames)
    split, sequences = next(iter(manifest['splits'].items()))
    gt_json = clip / 'annotations' / split / f'{sequences[0]}.json'
    convert(clip / 'images' / split / sequences[0], bag, gt_json, fps=manifest['config']['fps'], storage='mcap')
    options = EvalOptions(bag=bag, model=model, output=output, backend=backend, gt_json=gt_json,
                          image_topic='/image', detections_topic='/detections', detector='topic',
                          pipeline=PipelineConfig(max_batch=8), progress=progress)
    return evaluate_bag(options)


def build_parser() -> argparse.ArgumentParser:
    """The command line."""
    parser = argparse.ArgumentParser(prog='starpose-bag-eval', description=__doc__.split('\n\n')[0],
                                     epilog='See docs/bag_replay.md.')
    parser.add_argument('bag', nargs='?', type=Path, help='rosbag2 directory or .mcap file')
    parser.add_argument('--demo', action='store_true',
                        help='replay real footage at x4 (fetched on first use; else a synthetic clip) through the '
                             'bundled model (CPU)')
    parser.add_argument('--synthetic', action='store_true', help='--demo: the synthetic clip instead')
    parser.add_argument('--model', type=Path, help='model: .onnx, .pt (exported to ONNX once and cached, or run by '
                        '--backend torch), .engine (default: the bundled model)')
    parser.add_argument('--backend', choices=BACKEND_CHOICES, default='auto',
                        help='auto: follow the model file (.onnx/.pt: onnxruntime, .engine: tensorrt)')
    parser.add_argument('--method', choices=METHODS, default='star_pose',
                        help="baselines on the same pose net: 'bicubic' or 'resize' (bilinear) instead of the SR "
                             'network (a .pt model, run on torch)')
    parser.add_argument('--device', choices=('cpu', 'cuda'), default='cpu')
    parser.add_argument('--threads', type=cli.count(0), default=2,
                        help='CPU threads of the backend (0: the runtime decides)')
    parser.add_argument('--output', type=Path, required=True, help='output folder')
    parser.add_argument('--image-topic', default='/image', help='sensor_msgs/Image or CompressedImage topic')
    parser.add_argument('--detections-topic', default='/detections',
                        help='starpose_msgs/TrackedDetectionArray or vision_msgs/Detection2DArray topic')
    parser.add_argument('--detector', choices=DETECTORS, default='topic',
                        help='person boxes: the detections topic, OpenCV HOG, or the --gt-json boxes')
    parser.add_argument('--gt-json', type=Path, help='PoseTrack JSON of the clip: accuracy in the report')
    defaults, persons = PipelineConfig(), PersonFilter()  # the node's defaults, from the same objects
    parser.add_argument('--person-classes', default=','.join(DEFAULT_PERSON_CLASSES),
                        help="comma-separated class ids that are people ('*': any; detections without a class "
                             'are kept); the node\'s person_class_ids')
    parser.add_argument('--min-detection-score', type=cli.number(0.0, 1.0), default=persons.min_score,
                        help='detections scoring below it are ignored (--detector hog: the HOG SVM margin)')
    parser.add_argument('--hog-upscale', type=cli.number(0.25, 8.0), default=defaults.hog_upscale,
                        help='--detector hog: upscale frames first to find people under ~100 px (cost grows ^2)')
    parser.add_argument('--min-box-size', type=cli.number(0.5, 1000.0), default=defaults.min_box_size,
                        help='boxes smaller than this (pixels, after clipping to the image) are rejected')
    parser.add_argument('--track-iou-threshold', type=cli.number(0.01, 1.0), default=defaults.track_iou_threshold)
    parser.add_argument('--track-max-age-s', type=cli.number(0.0, 60.0), default=defaults.track_max_age_s,
                        help='a track unseen this long (stamp time) is evicted')
    parser.add_argument('--max-batch', type=cli.count(1), default=defaults.max_batch)
    parser.add_argument('--max-tracks', type=cli.count(1), default=defaults.max_tracks)
    parser.add_argument('--max-frames', type=cli.count(1), help='stop after this many images')
    parser.add_argument('--out-of-order', choices=OUT_OF_ORDER, default='warn',
                        help='image stamps going backwards: warn and restart tracks, or stop with an error')
    parser.add_argument('--no-video', action='store_true', help='skip overlay.mp4')
    parser.add_argument('--bag-images', action='store_true',
                        help='also write the overlay and SR mosaic images into the output bag (~2 MB a frame); '
                             'by default it holds the poses only')
    parser.add_argument('--save-calibration', type=Path,
                        help='also save the LR windows fed to the model (.npy) for TensorRT INT8 calibration')
    parser.add_argument('--demo-frames', type=cli.count(1), default=100, help='--demo: frames of the clip')
    parser.add_argument('--quiet', action='store_true', help='no progress bar')
    return parser


def _print_outputs(report: dict) -> None:
    counts = report['counts']
    print(f"\n{counts['frames']} frames, {counts['persons']} person poses, {counts['tracks']} tracks, "
          f"{report['throughput_fps']:.2f} frames/s")
    for key, value in report.get('accuracy', {}).items():
        if key.startswith(('OKS mAP', 'PoseTrack AP Total', 'PSNR', 'SSIM')):
            print(f'  {key}: {value:.2f}')
    for name, path in report['outputs'].items():
        print(f'  {name}: {path}')


def main(argv=None) -> int:
    """Entry point of `starpose-bag-eval`."""
    args = build_parser().parse_args(argv)
    cli.sigterm_as_interrupt()  # `timeout`, `docker stop`: end like Ctrl-C, outputs closed
    logging.basicConfig(level=logging.WARNING, format='%(name)s: %(levelname)s: %(message)s')
    try:
        if args.demo:
            report = run_demo(args.output, args.model, args.backend, args.demo_frames, progress=not args.quiet,
                              real=not args.synthetic)
        else:
            if args.bag is None:
                raise BagEvalError('give a bag (or --demo)')
            try:
                persons = PersonFilter.from_text(args.person_classes, args.min_detection_score)
            except ValueError as error:
                raise BagEvalError(f'--person-classes {args.person_classes!r}: {error}') from None
            if args.output.exists() and not args.output.is_dir():
                raise BagEvalError(f'--output {args.output} is a file; give a folder (created if missing)')
            report = evaluate_bag(EvalOptions(
                bag=args.bag, model=args.model, output=args.output, backend=args.backend, method=args.method,
                device=args.device, threads=args.threads, image_topic=args.image_topic,
                detections_topic=args.detections_topic, detector=args.detector, gt_json=args.gt_json,
                persons=persons, pipeline=PipelineConfig(
                    hog_upscale=args.hog_upscale, max_batch=args.max_batch, max_tracks=args.max_tracks,
                    track_iou_threshold=args.track_iou_threshold, track_max_age_s=args.track_max_age_s,
                    min_box_size=args.min_box_size),
                max_frames=args.max_frames, out_of_order=args.out_of_order, video=not args.no_video,
                bag_images=args.bag_images, save_calibration=args.save_calibration, progress=not args.quiet))
    except (BagEvalError, bagio.BagIOError) as error:
        print(f'starpose-bag-eval: error: {error}', file=sys.stderr)
        return 1
    except OSError as error:  # the report itself could not be written (a full disk, a read-only folder)
        print(f'starpose-bag-eval: error: cannot write {error.filename or args.output}: {error.strerror or error}',
              file=sys.stderr)
        return 1
    except KeyboardInterrupt:  # before the replay started (loading, exporting): nothing to keep
        print('starpose-bag-eval: interrupted', file=sys.stderr)
        return 130
    _print_outputs(report)
    return 0


if __name__ == '__main__':
    sys.exit(main())
