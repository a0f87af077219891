"""`starpose-video2bag`: a video file or an image folder (+ PoseTrack JSON) -> rosbag2.

The bag has the node's inputs: `/image` (sensor_msgs/Image; `/image/compressed` with
CompressedImage for jpeg/png) and, given a PoseTrack JSON of the clip, `/detections`
(starpose_msgs/TrackedDetectionArray: the annotated boxes, id = PoseTrack track_id), with equal
headers per frame. Frame k gets the stamp `start + k / fps`. So any clip can be played into the
node (`ros2 bag play`) or evaluated (`starpose-bag-eval`, with the same JSON as `--gt-json`).

    starpose-video2bag clip.mp4 clip_bag --fps 30
    starpose-video2bag images/val/000342_mpii_test clip_bag --posetrack-json annotations/val/000342_mpii_test.json
"""
from __future__ import annotations

import argparse
import logging
import shutil
import sys
from pathlib import Path

import cv2

from starpose_ros.bag_tools import bagio, cli
from starpose_ros.bag_tools.frames import FrameSourceError, image_folder_frames, video_frames
from starpose_ros.core.types import Detection

DEFAULT_START_NS = 1_700_000_000 * 10**9
LOG = logging.getLogger('starpose-video2bag')
Video2BagError = FrameSourceError  # one error for "this input cannot be read or turned into a bag"


def posetrack_boxes(json_path: Path) -> list[list[Detection]]:
    """Per frame (in frame order) the annotated people's boxes with their track ids."""
    from starpose_training.posetrack import PoseTrackFormatError, read_posetrack_file

    try:
        videos = read_posetrack_file(json_path)
    except (PoseTrackFormatError, OSError, ValueError) as error:
        raise Video2BagError(str(error)) from error
    if len(videos) != 1:
        raise Video2BagError(f'{json_path} holds {len(videos)} videos; give the JSON of one clip')
    video = videos[0]
    return [[Detection(tuple(float(v) for v in p.bbox_xywh), None if p.track_id is None else str(p.track_id), 1.0)
             for p in video.people_in(image) if p.bbox_xywh is not None] for image in video.images]


def convert(source, output, posetrack_json=None, fps: float | None = None, storage: str = 'sqlite3',
            image_format: str = 'rgb8', frame_id: str = 'camera', start_ns: int = DEFAULT_START_NS,
            max_frames: int | None = None, downscale: int = 1) -> dict:
    """Write the bag; return a summary (frames, topics, fps, size).

    `downscale` > 1 shrinks every frame (and the boxes) by that factor with `cv2.INTER_AREA`: the
    clip as a camera that many times farther away would see it.
    """
    source, output = Path(source), Path(output)
    if output.exists():
        raise Video2BagError(f'{output} exists already (rosbag2 writers never overwrite)')
    unwritable = cli.creatable(output)
    if unwritable:
        raise Video2BagError(f'cannot create {output}: {unwritable}')
    claimed = 0
    if source.is_dir():
        _files, frames = image_folder_frames(source)
        source_fps = 0.0
    elif source.is_file():
        source_fps, claimed, frames = video_frames(source)
    else:
        raise Video2BagError(f'input not found: {source}')
    fps = fps or source_fps or 25.0
    if fps <= 0:
        raise Video2BagError(f'fps must be > 0, got {fps}')
    if downscale < 1:
        raise Video2BagError(f'downscale must be >= 1, got {downscale}')
    boxes = posetrack_boxes(Path(posetrack_json)) if posetrack_json is not None else None
    if boxes is not None and downscale > 1:
        boxes = [[Detection(tuple(v / downscale for v in d.box_xywh), d.track_id, d.score) for d in frame]
                 for frame in boxes]
    period = int(round(1e9 / fps))
    typestore = bagio.starpose_typestore()
    image_topic = '/image' if image_format in ('rgb8', 'bgr8') else '/image/compressed'
    try:
        with bagio.BagWriter(output, storage=storage, typestore=typestore) as bag:
            count, size = _write_frames(bag, typestore, frames, boxes, image_format, frame_id, start_ns, period,
                                        max_frames, downscale)
    except (Video2BagError, bagio.BagIOError, OSError) as error:  # a bad frame, a full disk: no partial bag left
        shutil.rmtree(output, ignore_errors=True)
        raise Video2BagError(f'{error} (no bag written: {output} removed)') from error
    if claimed and count < claimed and (max_frames is None or count < max_frames):
        LOG.warning('%s: read %d of the %d frames its container claims (truncated or damaged file?); the bag '
                    'has the %d that could be read', source, count, claimed, count)
    if count == 0:
        shutil.rmtree(output, ignore_errors=True)
        raise Video2BagError(f'{source}: no frames could be read')
    if boxes is not None and len(boxes) != count and max_frames is None:
        raise Video2BagError(f'{posetrack_json} has {len(boxes)} frames but {source} has {count}: not the same clip '
                             f'(the bag {output} was written; its detections are wrong)')
    topics = [image_topic] + (['/detections'] if boxes is not None else [])
    return {'bag': str(output), 'frames': count, 'fps': fps, 'size': size, 'topics': topics, 'storage': storage}


def _write_frames(bag, typestore, frames, boxes, image_format, frame_id, start_ns, period, max_frames, downscale):
    """Write every frame (and its boxes); return (frames written, last frame's width and height)."""
    image_topic = '/image' if image_format in ('rgb8', 'bgr8') else '/image/compressed'  # as in convert's summary
    count, size = 0, None
    for index, rgb in enumerate(frames):
        if max_frames is not None and index >= max_frames:
            break
        stamp = start_ns + index * period
        if downscale > 1:
            rgb = cv2.resize(rgb, (rgb.shape[1] // downscale, rgb.shape[0] // downscale), interpolation=cv2.INTER_AREA)
        if image_format in ('rgb8', 'bgr8'):
            bag.write(image_topic, bagio.image_message(typestore, rgb, stamp, frame_id, image_format))
        else:
            bag.write(image_topic, bagio.compressed_image_message(typestore, rgb, stamp, frame_id, image_format))
        if boxes is not None:
            detections = boxes[index] if index < len(boxes) else []
            bag.write('/detections', bagio.detections_message(typestore, detections, stamp, frame_id))
        size = rgb.shape[1::-1]
        count += 1
    return count, size


def main(argv=None) -> int:
    """Entry point of `starpose-video2bag`."""
    parser = argparse.ArgumentParser(prog='starpose-video2bag', description=__doc__.split('\n\n')[0])
    parser.add_argument('input', type=Path, help='video file or folder of images (name order)')
    parser.add_argument('output', type=Path, help='rosbag2 directory to create')
    parser.add_argument('--posetrack-json', type=Path, help='PoseTrack JSON of the clip: /detections with its boxes')
    parser.add_argument('--fps', type=cli.number(1e-3),
                        help='frame rate of the stamps (default: the video\'s, else 25)')
    parser.add_argument('--storage', choices=sorted(bagio.STORAGES), default='sqlite3')
    parser.add_argument('--image-format', choices=('rgb8', 'bgr8', 'jpeg', 'png'), default='rgb8')
    parser.add_argument('--frame-id', default='camera')
    parser.add_argument('--start-ns', type=int, default=DEFAULT_START_NS, help='stamp of the first frame')
    parser.add_argument('--max-frames', type=cli.count(1))
    parser.add_argument('--downscale', type=cli.count(1), default=1,
                        help='shrink frames (and boxes) by this factor (cv2.INTER_AREA): a farther camera')
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format='%(name)s: %(levelname)s: %(message)s')
    cli.sigterm_as_interrupt()
    try:
        summary = convert(args.input, args.output, args.posetrack_json, args.fps, args.storage, args.image_format,
                          args.frame_id, args.start_ns, args.max_frames, args.downscale)
    except (Video2BagError, bagio.BagIOError) as error:
        print(f'starpose-video2bag: error: {error}', file=sys.stderr)
        return 1
    except KeyboardInterrupt:  # the bag was closed on the way out: readable, with the frames so far
        print(f'starpose-video2bag: interrupted; {args.output} holds the frames converted so far', file=sys.stderr)
        return 130
    width, height = summary['size']
    print(f"wrote {summary['frames']} frames ({width}x{height}, {summary['fps']:g} fps) to {summary['bag']} "
          f"({summary['storage']}): {', '.join(summary['topics'])}")
    return 0


if __name__ == '__main__':
    sys.exit(main())
