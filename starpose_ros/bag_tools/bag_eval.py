"""`starpose-bag-eval`: replay a rosbag2 through the node's pipeline, frame by frame, and report.

Reads a rosbag2 directory (sqlite3 or mcap) or a bare `.mcap` file with `rosbags` (no ROS
install needed), runs every image through `PosePipeline.process` (the node's core, unchanged,
without the node's newest-wins frame dropping, so results are deterministic), and writes into
the output folder, as it goes:

* `output_bag/` (mcap): `/poses` (starpose_msgs/PersonPoseArray), `/overlay` and `/sr_mosaic`
  (sensor_msgs/Image), each with the input image's header and bag time;
* `frames.jsonl`: one line per frame (stamp, persons, keypoints, stage timings), flushed each frame;
* `overlay.mp4`: the overlay video (OpenCV, mp4v);
* `report.json`, `report.md`, `plots/*.png` (see `starpose_ros.bag_tools.report`).

Detections come from a topic (`--detector topic`: starpose_msgs/TrackedDetectionArray or
vision_msgs/Detection2DArray, paired with images by exact header stamp), OpenCV's HOG people
detector (`--detector hog`) or the boxes of a PoseTrack JSON sidecar (`--detector gt`). With
`--gt-json` the report adds OKS AP, PoseTrack AP and PSNR/SSIM. `--demo` generates a synthetic
clip and evaluates the bundled demo model on it (the README's main-job command).

Bad input gives a clear error and keeps what was done: the output bag is closed, the JSONL and
report cover the frames processed before the failure. See docs/bag_replay.md.

This module is the command (its options, the demo) and opens the bag and the model; the frame
loop is `starpose_ros.bag_tools.replay_loop`.
"""
from __future__ import annotations

import argparse
import dataclasses
import logging
import shutil
import sys
from pathlib import Path

from starpose_model.inference import METHODS
from starpose_ros.bag_tools import bagio, cli
from starpose_ros.bag_tools.bag_source import IMAGE_TYPES, BagEvalError, BagSource
from starpose_ros.bag_tools.replay_accuracy import load_ground_truth
from starpose_ros.bag_tools.replay_loop import EvalOptions, ReplayRun, image_count, read_detections, replay
from starpose_ros.bag_tools.replay_outputs import RecordingBackend
from starpose_ros.bag_tools.video2bag import convert
from starpose_ros.core.backends import create_backend
from starpose_ros.core.backends.base import BackendError, InferenceBackend
from starpose_ros.core.models import (
    BACKEND_CHOICES,
    BUNDLED_MODEL,
    RuntimeOptions,
    backend_options,
    model_file,
    resolve_model,
)
from starpose_ros.core.person_filter import DEFAULT_PERSON_CLASSES, PersonFilter
from starpose_ros.core.pipeline import PipelineConfig, PosePipeline

DETECTORS = ('topic', 'hog', 'gt')
OUT_OF_ORDER = ('warn', 'error')

# ---------------------------------------------------------------------------------------------
# Evaluation
# ---------------------------------------------------------------------------------------------

def open_backend(options: EvalOptions) -> InferenceBackend:
    """The model of `options` (bundled when None) on its backend; baselines (`method`) run on torch."""
    backend = options.backend
    if options.method != 'star_pose':
        model = model_file(options.model)
        if model.suffix != '.pt' or backend not in ('auto', 'torch'):
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
        images = image_count(source, options)
        if gt_video is not None and len(gt_video.images) < images:  # before the replay, not after it
            raise BagEvalError(f'ground truth {options.gt_json} has {len(gt_video.images)} frames, the bag '
                               f'{images} images on {options.image_topic}: they must be the same clip (frame k of '
                               'the bag = frame k of the JSON); --max-frames can cut the bag to the JSON')
        run = ReplayRun()
        detections, detection_type = ({}, None)
        if options.detector == 'topic':
            detections, detection_type = read_detections(source, options, run.counts)
        backend = open_backend(options)
        recorder = None
        if options.save_calibration is not None:
            backend = recorder = RecordingBackend(backend, options.calibration_windows)
        with backend:
            pipeline = PosePipeline(backend, dataclasses.replace(
                options.pipeline, detector='hog' if options.detector == 'hog' else 'none',
                hog_min_score=options.persons.min_score, draw_overlay=options.video or options.bag_images,
                draw_mosaic=options.bag_images))
            report = replay(run, source, options, image_type, (detections, detection_type), pipeline, gt_video,
                             output)
            if recorder is not None:
                saved_path, saved = recorder.save(options.save_calibration)
                report['outputs']['calibration windows'] = f'{saved_path} ({saved} windows)'
    finally:
        source.close()
    return report


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
                        '--backend torch), .engine, or a bundled model\'s name (default: the bundled '
                        'starpose_small_real)')
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
