"""Child process of the node tests: publishes a generated clip (images + detections) to the node.

Scenarios:
- `synthetic`: a clip of the synthetic-video generator (small people walking, occluders, noise);
  detections are the generator's ground-truth boxes of the annotated people.
- `crossing`: two people walking towards each other and crossing, over generated frames.
- `churn`: every frame brings brand-new track ids (the tracker's memory must stay bounded),
  followed by empty frames after a pause (vanished tracks must be evicted).

Images are bgr8 with sensor-data QoS, detections `starpose_msgs/TrackedDetectionArray` with the
image's header. With `--lockstep` each frame waits for the node's pose array of that stamp
before the next one (deterministic tests), and stamps advance by exactly 1/`--rate` per frame,
as a camera's would, so motion per stamp time is what the clip shows whatever the waits.
Otherwise frames go out at `--rate` regardless of the node (overload), stamped with the wall
clock at publishing, so a receiver can measure latency.
Before the clip, one warm-up frame is repeated until the node answers (discovery and the
first inference are done). What was sent is written as JSON to `--out`.
"""
from __future__ import annotations

import argparse
import json
import threading
import time

import cv2
import numpy as np
import rclpy
from rclpy.executors import SingleThreadedExecutor
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import Image

from starpose_msgs.msg import PersonPoseArray, TrackedDetection, TrackedDetectionArray
from starpose_training.synthetic.config import make_config
from starpose_training.synthetic.dataset import is_annotated
from starpose_training.synthetic.render import ClipRenderer

FRAME_ID = 'camera_optical'


def synthetic_frames(width: int, height: int, frames: int, seed: int) -> list[tuple[np.ndarray, list]]:
    """(RGB image, [(ground-truth id, box xywh)]) per frame of a generated clip."""
    config = make_config('demo', width=width, height=height, frames=frames, people=(2, 3), entering_fraction=0.0)
    renderer = ClipRenderer(config, seed)
    clip = []
    for index in range(frames):
        rendered = renderer.render(index)
        people = [p for p in rendered.people if is_annotated(p, config)]
        clip.append((rendered.image, [(str(p.track_id), [float(v) for v in p.bbox_xywh]) for p in people]))
    return clip


def crossing_frames(width: int, height: int, frames: int, seed: int) -> list[tuple[np.ndarray, list]]:
    """Two 30x80 boxes walking towards each other on generated frames, swapping places."""
    backgrounds = synthetic_frames(width, height, frames, seed)
    y = height * 0.5
    clip = []
    for index, (image, _) in enumerate(backgrounds):
        t = index / max(frames - 1, 1)
        left_x = width * (0.3 + 0.4 * t)
        right_x = width * (0.7 - 0.4 * t)
        clip.append((image, [('walker_a', [left_x, y, 30.0, 80.0]), ('walker_b', [right_x, y + 12.0, 30.0, 80.0])]))
    return clip


def churn_frames(width: int, height: int, frames: int, seed: int) -> list[tuple[np.ndarray, list]]:
    """Every frame: 4 people at random places, each with an id never used before."""
    rng = np.random.default_rng(seed)
    image = np.full((height, width, 3), 90, dtype=np.uint8)
    clip = []
    for index in range(frames):
        people = [(f'churn{index}_{j}', [float(rng.uniform(0, width - 20)), float(rng.uniform(0, height - 40)),
                                         16.0, 36.0]) for j in range(4)]
        clip.append((image, people))
    return clip


SCENARIOS = {'synthetic': synthetic_frames, 'crossing': crossing_frames, 'churn': churn_frames}


class ClipPublisher:
    def __init__(self, namespace: str):
        self.node = rclpy.create_node('starpose_clip_publisher', namespace=namespace)
        self.images = self.node.create_publisher(Image, 'image', qos_profile_sensor_data)
        self.detections = self.node.create_publisher(TrackedDetectionArray, 'detections', 10)
        self.answered: set[int] = set()
        self.node.create_subscription(PersonPoseArray, 'poses', self._on_poses, 10)
        self.executor = SingleThreadedExecutor()
        self.executor.add_node(self.node)
        self._spin_thread = threading.Thread(target=self.executor.spin, daemon=True)
        self._spin_thread.start()

    def close(self) -> None:
        self.executor.shutdown()
        self._spin_thread.join()
        self.node.destroy_node()

    def _on_poses(self, msg: PersonPoseArray) -> None:
        self.answered.add(msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec)

    def publish(self, image_rgb: np.ndarray, people: list, send_ids: bool, stamp_ns: int | None = None) -> int:
        stamp_ns = time.time_ns() if stamp_ns is None else stamp_ns
        bgr = cv2.cvtColor(image_rgb, cv2.COLOR_RGB2BGR)
        image = Image(height=bgr.shape[0], width=bgr.shape[1], encoding='bgr8', step=bgr.shape[1] * 3,
                      data=bgr.tobytes())
        image.header.frame_id = FRAME_ID
        image.header.stamp.sec, image.header.stamp.nanosec = divmod(stamp_ns, 1_000_000_000)
        detections = [TrackedDetection(id=track_id if send_ids else '', class_id='person', score=0.9,
                                       center_x=x + w / 2, center_y=y + h / 2, size_x=w, size_y=h)
                      for track_id, (x, y, w, h) in people]
        self.detections.publish(TrackedDetectionArray(header=image.header, detections=detections))
        self.images.publish(image)
        return stamp_ns

    def wait_answer(self, stamp_ns: int, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while stamp_ns not in self.answered and time.monotonic() < deadline:
            time.sleep(0.005)
        return stamp_ns in self.answered


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--namespace', required=True)
    parser.add_argument('--scenario', choices=sorted(SCENARIOS), default='synthetic')
    parser.add_argument('--width', type=int, default=640)
    parser.add_argument('--height', type=int, default=480)
    parser.add_argument('--frames', type=int, default=10)
    parser.add_argument('--seed', type=int, default=3)
    parser.add_argument('--no-ids', action='store_true', help='send detections without track ids')
    parser.add_argument('--lockstep', type=float, default=0.0, help='wait up to this long for each answer')
    parser.add_argument('--rate', type=float, default=10.0, help='frames per second without --lockstep')
    parser.add_argument('--pause-then-empty', type=float, default=0.0,
                        help='after the clip, wait this long, then send 3 frames without detections')
    parser.add_argument('--out', required=True)
    args = parser.parse_args()

    clip = SCENARIOS[args.scenario](args.width, args.height, args.frames, args.seed)
    rclpy.init()
    publisher = ClipPublisher(args.namespace)
    report = {'warmup_stamps': [], 'frames': [], 'width': args.width, 'height': args.height}
    warmup_image, warmup_people = clip[0]
    deadline = time.monotonic() + 60.0
    while time.monotonic() < deadline:
        stamp = publisher.publish(warmup_image, [('warmup', warmup_people[0][1])] if warmup_people else [], True)
        report['warmup_stamps'].append(stamp)
        if publisher.wait_answer(stamp, 2.0):
            break
    else:
        raise SystemExit('the node never answered the warm-up frame')
    time.sleep(0.2)  # let the warm-up answer's trailing outputs pass

    period_ns = int(1e9 / args.rate)
    first_stamp_ns = time.time_ns()

    def send(image, people):
        stamp = first_stamp_ns + len(report['frames']) * period_ns if args.lockstep else None
        stamp = publisher.publish(image, people, send_ids=not args.no_ids, stamp_ns=stamp)
        report['frames'].append({'stamp_ns': stamp, 'people': [{'gt_id': i, 'box': b} for i, b in people]})
        if args.lockstep:
            publisher.wait_answer(stamp, args.lockstep)
        else:
            time.sleep(max(0.0, 1.0 / args.rate - 0.002))

    for image, people in clip:
        send(image, people)
    if args.pause_then_empty:
        time.sleep(args.pause_then_empty)
        for _ in range(3):
            send(clip[-1][0], [])
    time.sleep(0.5)
    with open(args.out, 'w') as file:
        json.dump(report, file)
    publisher.close()
    rclpy.shutdown()


if __name__ == '__main__':
    main()
