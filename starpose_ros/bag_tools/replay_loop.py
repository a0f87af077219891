"""The replay loop of `starpose-bag-eval`: bag images through the pipeline into the outputs, counted.

`replay` decodes every image, pairs it with its detections, runs `PosePipeline.process` and
writes each result as it comes (`replay_outputs`); a bad frame, a failed write or an interrupt
stops it and still writes the report of what was done. `bag_eval` opens the bag and the model.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from starpose_ros.bag_tools import bagio
from starpose_ros.bag_tools.bag_source import DETECTION_TYPES, BagEvalError, BagSource
from starpose_ros.bag_tools.replay_accuracy import accuracy, ground_truth_detections, quality
from starpose_ros.bag_tools.replay_outputs import Outputs
from starpose_ros.bag_tools.report import FilmstripSampler, latency_summary, write_report
from starpose_ros.core.backends.base import BackendError
from starpose_ros.core.messages import tracked_detections, vision_detections
from starpose_ros.core.models import BUNDLED_MODEL
from starpose_ros.core.person_filter import PersonFilter
from starpose_ros.core.pipeline import PipelineConfig, PosePipeline
from starpose_ros.core.types import Detection, FrameInput, FrameResult

LOG = logging.getLogger('starpose-bag-eval')


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


@dataclass
class ReplayRun:
    """Mutable state of one replay: what it saw, counted and kept for the report."""

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


def read_detections(source: BagSource, options: EvalOptions, counts: dict[str, int]
                     ) -> tuple[dict[int, list[Detection]], str]:
    """All detection messages by header stamp (a first pass: detections are small); counts what is filtered."""
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


def image_count(source: BagSource, options: EvalOptions) -> int:
    """How many images the replay reads: those on the image topic, at most `max_frames`."""
    images = source.counts.get(options.image_topic, 0)
    return images if options.max_frames is None else min(images, options.max_frames)


def replay(run: ReplayRun, source: BagSource, options: EvalOptions, image_type: str,
           topic_detections: tuple[dict[int, list[Detection]], str | None], pipeline: PosePipeline, gt_video,
           output: Path) -> dict:
    """Replay the images, write the report and return it; BagEvalError after the report when the replay stopped."""
    detections, detection_type = topic_detections
    info = pipeline.info
    filmstrip = FilmstripSampler((info.lr_height, info.lr_width), info.keypoint_layout,
                                 pipeline.config.min_keypoint_score)
    outputs = Outputs(output, source.typestore, fps=source.image_rate(options.image_topic), write_video=options.video,
                      bag_images=options.bag_images)
    used_stamps: set[int] = set()
    error = None
    started = time.perf_counter()
    try:
        _replay_frames(run, source, options, image_type, (detections, used_stamps), pipeline, gt_video, outputs,
                       filmstrip)
    except (BagEvalError, BackendError) as failure:
        error = str(failure)
    except KeyboardInterrupt:  # Ctrl-C, or SIGTERM (see bag_eval.main): close and report what was done
        error = f'interrupted after {run.counts["frames"]} frames'
    finally:
        outputs.close()
    if outputs.close_errors:
        error = '; '.join(([error] if error else []) + outputs.close_errors)
    wall = time.perf_counter() - started
    run.counts['tracks'] = len(run.track_ids)
    run.counts['unused_detections'] = len(set(detections) - used_stamps)
    run.counts['rejected_detections'] = pipeline.counters.rejected_detections
    run.counts['over_capacity_detections'] = pipeline.counters.over_capacity_detections
    report = _report(run, options, image_type, detection_type, pipeline.info, outputs, wall, error)
    if outputs.video is not None:
        report['outputs']['overlay video'] = str(outputs.video_path)
    joint_ap = None
    if gt_video is not None and run.poses:
        report['accuracy'], joint_ap = accuracy(run.poses, run.quality, len(run.stamps), gt_video,
                                                 pipeline.info.keypoint_layout)
    json_path, md_path = write_report(output, report, run.latency, joint_ap, filmstrip.image())
    report['outputs'].update({'report': str(md_path), 'report json': str(json_path)})
    if error is not None:
        raise BagEvalError(f'{error}\n(results of the {run.counts["results"]} frames processed before are in '
                           f'{output})')
    return report


def _replay_frames(run: ReplayRun, source: BagSource, options: EvalOptions, image_type: str,
                   topic_detections: tuple[dict[int, list[Detection]], set[int]], pipeline: PosePipeline, gt_video,
                   outputs: Outputs, filmstrip: FilmstripSampler) -> None:
    """Every image through the pipeline, then the frames still in its delay line; each result written."""
    from tqdm import tqdm

    want_quality = gt_video is not None
    progress = tqdm(total=image_count(source, options), unit='frame', desc='bag-eval', disable=not options.progress)
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
            _index_stamp(run, options, source, stamp, bag_time)
            frame_detections = _frame_detections(options, topic_detections, gt_video, stamp, len(run.stamps), run)
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
    finally:
        progress.close()


def _index_stamp(run: ReplayRun, options: EvalOptions, source: BagSource, stamp: int, bag_time: int) -> None:
    """Count a stamp going backwards (or stop, with --out-of-order error) or repeated; index a new one."""
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


def _record(run: ReplayRun, result: FrameResult, outputs: Outputs, filmstrip: FilmstripSampler,
            want_quality: bool) -> None:
    """Write one result and keep what the report needs from it."""
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
        run.quality += quality(result)
        run.poses[index] = [(p.track_id, p.keypoints.copy(), float(p.score)) for p in result.persons]


def _report(run: ReplayRun, options: EvalOptions, image_type: str, detection_type: str | None, info, outputs: Outputs,
            wall: float, error: str | None) -> dict:
    """The report's run description, counts, throughput and latency (accuracy is added by the caller)."""
    detections = (f'{options.detections_topic} [{detection_type}]' if options.detector == 'topic'
                  else 'OpenCV HOG people detector' if options.detector == 'hog'
                  else f'ground-truth boxes from {options.gt_json}')
    return {
        'run': {'bag': str(options.bag), 'model': str(options.model or BUNDLED_MODEL), 'backend': options.backend,
                'method': options.method, 'device': options.device,
                'image_topic': f'{options.image_topic} [{image_type}]', 'detections': detections,
                'keypoint_layout': info.keypoint_layout, 'window': info.window,
                'lr_size': [info.lr_height, info.lr_width], 'target_frame': info.target_frame},
        'counts': run.counts, 'wall_time_s': wall, 'throughput_fps': run.counts['frames'] / wall if wall else 0.0,
        'latency_ms': latency_summary(run.latency), 'error': error,
        'interrupted': error is not None and error.startswith('interrupted'),
        'outputs': {'output bag': str(outputs.bag_path), 'frames': str(outputs.jsonl_path)},
    }


def _frame_detections(options: EvalOptions, topic_detections: tuple[dict[int, list[Detection]], set[int]], gt_video,
                      stamp: int, index: int, run: ReplayRun) -> list[Detection] | None:
    """Detections for one image: paired by stamp, from the GT sidecar, or None (the pipeline's HOG)."""
    if options.detector == 'hog':
        return None
    if options.detector == 'gt':
        return ground_truth_detections(gt_video, index)
    detections, used_stamps = topic_detections
    if stamp in detections:
        used_stamps.add(stamp)
        return detections[stamp]
    run.counts['unpaired_images'] += 1
    return []
