"""Per-frame cost of the ROS-free core without the network, at camera sizes and track counts.

Stages timed per frame (milliseconds, median and p95 over the measured frames):
  decode  sensor_msgs/Image bytes -> RGB (bgr8, the common camera encoding; rgb8 is zero-copy)
  pair    StampPairer (image + detections by stamp)
  track   box validation + IoU tracker
  crop    aligned LR windows (T frames per track, from the shared frame ring)
  map     HR-crop keypoints -> image pixels
  draw    overlay (skeleton, box, id) + SR mosaic
  core    the sum of the above per frame (the target: < 1 ms + 0.3 ms per track at 1080p)
  nodraw  core without draw (what the node pays when nobody subscribes to overlay or mosaic)
  encode  overlay -> rgb8 message bytes (reported apart: only when the overlay is published)

The network is replaced by a backend that returns fixed outputs instantly, so only the core is
measured. The configurations run in interleaved rounds (`benchmarks/harness.py`), each round
`--frames` frames; the core time is given as median [min-max] over the rounds' medians, the
stages as medians over all frames; the machine's load goes in the JSON.
Usage:  python benchmarks/bench_core.py [--frames 20] [--rounds 5] [--quick] [--out outputs/bench_core.json]
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import cv2
import numpy as np
from harness import Case, Plan, Timed, compare, fmt_spread, machine, quick_plan, report

from starpose_model.keypoints import NUM_KEYPOINTS
from starpose_ros.core.backends.base import SR_HEIGHT, SR_WIDTH, InferenceBackend, InferenceOutput, ModelInfo
from starpose_ros.core.image_codec import decode_image, encode_image
from starpose_ros.core.pairing import StampPairer
from starpose_ros.core.pipeline import PipelineConfig, PosePipeline
from starpose_ros.core.types import Detection, FrameInput

RESOLUTIONS = {'640x480': (480, 640), '1920x1080': (1080, 1920)}
TRACK_COUNTS = (1, 5, 20)
STAGES = ('decode', 'pair', 'track', 'crop', 'map', 'draw')
FRAME_NS = 33_333_333


class InstantBackend(InferenceBackend):
    """Fixed outputs of the right shapes (joints spread over the crop, all confident): no network."""

    name = 'instant'

    def __init__(self, info: ModelInfo):
        self._info = info
        rng = np.random.default_rng(0)
        self._keypoints = np.dstack([rng.uniform(20, SR_WIDTH - 20, NUM_KEYPOINTS),
                                     rng.uniform(20, SR_HEIGHT - 20, NUM_KEYPOINTS), np.full(NUM_KEYPOINTS, 0.9)])[0]
        self._sr = rng.integers(0, 256, (SR_HEIGHT, SR_WIDTH, 3), dtype=np.uint8)

    @property
    def model_info(self) -> ModelInfo:
        """The metadata given at construction."""
        return self._info

    def _run(self, lr_frames):
        batch = lr_frames.shape[0]
        return InferenceOutput(np.broadcast_to(self._sr, (batch, *self._sr.shape)),
                               np.broadcast_to(self._keypoints.astype(np.float32), (batch, 17, 3)))

    def close(self) -> None:
        """Nothing to release."""


def _people(count: int, height: int, width: int, frame: int) -> list[Detection]:
    """`count` small people (1/8 of the image high) swaying on a grid, without ids (tracked here)."""
    h = height / 8.0
    columns = int(np.ceil(np.sqrt(count * 2)))
    people = []
    for i in range(count):
        x = (i % columns + 0.5) * width / columns + 0.2 * h * np.sin(frame / 8.0) * (1 if i % 2 else -1)
        y = (i // columns + 0.5) * height / (count / columns + 1)
        people.append(Detection((x, y, 0.4 * h, h), None, 0.9))
    return people


class CoreFrames:
    """A harness case: each call runs `frames` frames of one configuration through the core.

    Returns the median core time of those frames (so a round is one such median); every stage's
    samples are kept for the table (`extras`).
    """

    def __init__(self, height: int, width: int, tracks: int, frames: int, clock):
        info = ModelInfo(window=5, lr_height=64, lr_width=48, keypoint_layout='posetrack', target_frame='last')
        self.pipeline = PosePipeline(InstantBackend(info), PipelineConfig(draw_overlay=True, draw_mosaic=True,
                                                                          max_tracks=64), clock=clock)
        self.pairer = StampPairer()
        rng = np.random.default_rng(1)
        self.sources = [rng.integers(0, 256, (height, width, 3), dtype=np.uint8).tobytes() for _ in range(3)]
        self.shape, self.tracks, self.frames, self.clock = (height, width), tracks, frames, clock
        self.samples: dict[str, list[float]] = {name: [] for name in (*STAGES, 'core', 'nodraw', 'encode')}
        self.frame = 0

    def _one(self) -> dict[str, float]:
        (height, width), clock, stamp = self.shape, self.clock, self.frame * FRAME_NS
        start = clock()
        image = decode_image(height, width, 'bgr8', width * 3, self.sources[self.frame % len(self.sources)])
        decoded = clock()
        self.pairer.add_image(stamp, image)
        pair = self.pairer.add_detections(stamp, _people(self.tracks, height, width, self.frame))
        paired = clock()
        result = self.pipeline.process(FrameInput(stamp, 'camera', pair.image, pair.detections))
        end = clock()
        encode_image(result.overlay_rgb)
        encoded = clock()
        assert len(result.persons) == self.tracks
        self.frame += 1
        t = result.timings_ms
        return {'decode': (decoded - start) * 1e3, 'pair': (paired - decoded) * 1e3, 'track': t['detect'] + t['track'],
                'crop': t['crop'], 'map': t['infer'] + t['decode'],  # infer is the instant backend: ~0
                'draw': t['draw'], 'core': (end - start) * 1e3, 'nodraw': (end - start) * 1e3 - t['draw'],
                'encode': (encoded - end) * 1e3}

    def __call__(self) -> Timed:
        """`frames` frames; their median core time."""
        core = []
        for _ in range(self.frames):
            sample = self._one()
            for name, value in sample.items():
                self.samples[name].append(value)
            core.append(sample['core'])
        return Timed(float(np.median(core)) / 1e3)

    def extras(self) -> dict:
        """Median, p95 and min per stage over every timed frame (warm-up frames included)."""
        return {name: {'median_ms': float(np.median(v)), 'p95_ms': float(np.percentile(v, 95)),
                       'min_ms': float(np.min(v))} for name, v in self.samples.items()}


def core_case(threads: int, height: int, width: int, tracks: int, frames: int, clock: str) -> CoreFrames:
    """Harness factory (OpenCV gets `threads` threads; 1 keeps all its work on the timed thread)."""
    cv2.setNumThreads(threads)
    return CoreFrames(height, width, tracks, frames, time.thread_time if clock == 'cpu' else time.perf_counter)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--frames', type=int, default=20, help='frames per round and configuration')
    parser.add_argument('--rounds', type=int, default=5, help='interleaved rounds over all configurations')
    parser.add_argument('--out', type=Path, default=Path('outputs/bench_core.json'))
    parser.add_argument('--clock', choices=('cpu', 'wall'), default='cpu',
                        help='cpu: this thread\'s CPU time (robust on a busy shared machine); wall: perf_counter')
    parser.add_argument('--cv-threads', type=int, default=1,
                        help='cv2.setNumThreads (1: all OpenCV work on the timed thread, as the node runs it)')
    parser.add_argument('--quick', action='store_true', help='640x480 only, 5 frames, 2 rounds')
    args = parser.parse_args(argv)
    load_before = machine()
    resolutions = {'640x480': RESOLUTIONS['640x480']} if args.quick else RESOLUTIONS
    frames = 5 if args.quick else args.frames
    cases = [Case(f'{name}_{tracks}', core_case, args.cv_threads,
                  {'height': h, 'width': w, 'tracks': tracks, 'frames': frames, 'clock': args.clock})
             for name, (h, w) in resolutions.items() for tracks in TRACK_COUNTS]
    plan = quick_plan() if args.quick else Plan(rounds=args.rounds, calls_per_round=1, stable_tolerance=0.2)
    result = compare(cases, plan, in_process=True)
    rows = []
    for case in cases:
        timed = result['cases'][case.name]
        target = 1.0 + 0.3 * case.kwargs['tracks']
        rows.append({'resolution': f"{case.kwargs['width']}x{case.kwargs['height']}", 'tracks': case.kwargs['tracks'],
                     'core_ms': timed['ms_per_unit'], 'stages': timed['extras'], 'target_ms': target,
                     'meets_target': timed['ms_per_unit']['median'] <= target})
    print(f'median {args.clock} ms per frame, cv2 threads {args.cv_threads}, {plan.rounds} interleaved rounds of '
          f'{frames} frames (core = decode + pair + track + crop + map + draw; target = 1 + 0.3 x tracks)')
    print(f'{"image":>10} {"tracks":>6} ' + ' '.join(f'{s:>7}' for s in STAGES)
          + f' {"core over rounds":>20} {"target":>7} {"ok":>3} {"nodraw":>7} {"encode":>7}')
    for row in rows:
        s = row['stages']
        print(f'{row["resolution"]:>10} {row["tracks"]:>6} ' + ' '.join(f'{s[n]["median_ms"]:7.2f}' for n in STAGES)
              + f' {fmt_spread(row["core_ms"], 2):>20} {row["target_ms"]:7.2f}'
              f' {"yes" if row["meets_target"] else "NO":>3}'
              f' {s["nodraw"]["median_ms"]:7.2f} {s["encode"]["median_ms"]:7.2f}')
    report(args.out, {'benchmark': 'core', 'clock': args.clock, 'cv_threads': args.cv_threads, 'quick': args.quick,
                      'comparison': {k: v for k, v in result.items() if k != 'cases'}, 'results': rows}, load_before)
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
