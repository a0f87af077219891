"""End-to-end latency of the StarPose node on this machine: publisher -> node -> pose array receipt.

The node runs in its own process (`python -m starpose_ros.node`, as `ros2 run` starts it) with the
given model; this process publishes one frame (bgr8 image + detections with ids), waits for the
pose array with that stamp, and times the round trip. For each image size and person count it
reports the end-to-end latency next to the bare backend call for the same batch (the same model
called here, interleaved frame by frame with the round trips), so the ratio shows what ROS
transport, decoding, tracking, cropping and publishing add. Each case runs twice: with every
visual output (overlay, mosaic, SR crops, markers) and with pose arrays only, switched through
the lifecycle (cleanup, configure, activate).

    python benchmarks/bench_node_latency.py                       # tiny random model, CPU
    python benchmarks/bench_node_latency.py --model demo.onnx --frames 50 --out outputs/node.json
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
# DDS stays on this machine; camera-size images need the shipped Fast DDS profile (docs/dds.md).
os.environ['ROS_AUTOMATIC_DISCOVERY_RANGE'] = 'LOCALHOST'
os.environ.pop('ROS_LOCALHOST_ONLY', None)
os.environ.setdefault('ROS_DOMAIN_ID', str(150 + os.getpid() % 50))
os.environ.setdefault('RMW_IMPLEMENTATION', 'rmw_fastrtps_cpp')
os.environ.setdefault('FASTDDS_DEFAULT_PROFILES_FILE', str(REPO_ROOT / 'config' / 'fastdds_profile.xml'))
os.environ.setdefault('OMP_NUM_THREADS', '2')

import numpy as np  # noqa: E402
import rclpy  # noqa: E402
from lifecycle_msgs.msg import Transition  # noqa: E402
from lifecycle_msgs.srv import ChangeState  # noqa: E402
from rcl_interfaces.srv import SetParameters  # noqa: E402
from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402
from rclpy.qos import qos_profile_sensor_data  # noqa: E402
from sensor_msgs.msg import Image  # noqa: E402

from starpose_msgs.msg import PersonPoseArray, TrackedDetection, TrackedDetectionArray  # noqa: E402
from starpose_ros.core.backends import create_backend  # noqa: E402

NAMESPACE = '/starpose_bench'
NODE = f'{NAMESPACE}/starpose_node'
SETTLE_S = 0.15  # after a pose array the node still publishes the visual outputs: let it finish
VISUAL_OUTPUTS = ('publish_overlay', 'publish_mosaic', 'publish_sr_crops', 'publish_markers')


class Bench:
    """A client that drives the node's lifecycle and times frames in lock-step."""

    def __init__(self):
        rclpy.init()
        self.node = rclpy.create_node('starpose_bench_client')
        self.images = self.node.create_publisher(Image, f'{NAMESPACE}/image', qos_profile_sensor_data)
        self.detections = self.node.create_publisher(TrackedDetectionArray, f'{NAMESPACE}/detections', 10)
        self.answers: dict[int, int] = {}
        self.node.create_subscription(PersonPoseArray, f'{NAMESPACE}/poses', self._on_poses, 10)
        self.executor = SingleThreadedExecutor()
        self.executor.add_node(self.node)
        self.thread = threading.Thread(target=self.executor.spin, daemon=True)
        self.thread.start()

    def _on_poses(self, msg: PersonPoseArray) -> None:
        self.answers[msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec] = time.perf_counter_ns()

    def call(self, srv_type, name: str, request):
        """Call a service of the node and return its response."""
        client = self.node.create_client(srv_type, name)
        if not client.wait_for_service(timeout_sec=60):
            raise SystemExit(f'service {name} never appeared; is the node running?')
        done = threading.Event()
        future = client.call_async(request)
        future.add_done_callback(lambda _: done.set())
        if not done.wait(120):
            raise SystemExit(f'no answer from {name}')
        self.node.destroy_client(client)
        return future.result()

    def transition(self, transition_id: int) -> None:
        """Drive one lifecycle transition; stop the benchmark if it fails."""
        request = ChangeState.Request()
        request.transition.id = transition_id
        if not self.call(ChangeState, f'{NODE}/change_state', request).success:
            raise SystemExit(f'transition {transition_id} failed; see the node output above')

    def set_parameters(self, **values) -> None:
        """Set node parameters (they take effect at the next configure)."""
        parameters = [Parameter(k, value=v).to_parameter_msg() for k, v in values.items()]
        request = SetParameters.Request(parameters=parameters)
        self.call(SetParameters, f'{NODE}/set_parameters', request)

    def round_trip_ms(self, image: Image, detections: TrackedDetectionArray, timeout: float = 30.0) -> float | None:
        """Publish one frame stamped now and wait for its pose array; None if it was lost."""
        stamp_ns = time.time_ns()
        image.header.stamp.sec, image.header.stamp.nanosec = divmod(stamp_ns, 1_000_000_000)
        detections.header = image.header
        start = time.perf_counter_ns()
        self.detections.publish(detections)
        self.images.publish(image)
        deadline = time.monotonic() + timeout
        while stamp_ns not in self.answers and time.monotonic() < deadline:
            time.sleep(0.0005)
        return (self.answers[stamp_ns] - start) / 1e6 if stamp_ns in self.answers else None

    def close(self) -> None:
        """Stop spinning and shut rclpy down."""
        self.executor.shutdown()
        self.thread.join()
        self.node.destroy_node()
        rclpy.shutdown()


def frame(width: int, height: int, persons: int, rng: np.random.Generator) -> tuple[Image, TrackedDetectionArray]:
    """A noisy bgr8 image and `persons` 30x80 boxes with ids, spread over it."""
    pixels = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    image = Image(height=height, width=width, encoding='bgr8', step=width * 3, data=pixels.tobytes())
    image.header.frame_id = 'camera_optical'
    xs = np.linspace(0.05 * width, 0.9 * width, persons)
    boxes = [TrackedDetection(id=str(i), class_id='person', score=0.9, center_x=float(x), center_y=height / 2.0,
                              size_x=30.0, size_y=80.0) for i, x in enumerate(xs)]
    return image, TrackedDetectionArray(detections=boxes)


class BareBackend:
    """The same model called directly in this process: the reference each round trip is compared to."""

    def __init__(self, model: Path, threads: int):
        self.backend = create_backend('onnxruntime', model, intra_op_threads=threads)

    def call_ms(self, persons: int) -> float:
        """Time of one backend call on a batch of `persons` windows."""
        batch = np.random.default_rng(0).integers(0, 256, (persons, *self.backend.model_info.input_shape),
                                                  dtype=np.uint8)
        start = time.perf_counter()
        self.backend.infer(batch)
        return (time.perf_counter() - start) * 1e3


def tiny_model(directory: Path) -> Path:
    """Export a randomly initialised tiny model (latency does not depend on trained weights)."""
    from starpose_model.export import export_onnx, random_model

    path = directory / 'starpose_tiny_random.onnx'
    export_onnx(random_model('tiny', seed=0), path)
    return path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--model', type=Path, help='ONNX model (default: a randomly initialised tiny model)')
    parser.add_argument('--frames', type=int, default=15, help='timed frames per case (after 3 warm-up frames)')
    parser.add_argument('--sizes', default='640x480,1920x1080')
    parser.add_argument('--persons', default='1,5')
    parser.add_argument('--threads', type=int, default=2, help='ONNX Runtime threads (node and bare backend)')
    parser.add_argument('--out', type=Path, default=REPO_ROOT / 'outputs' / 'bench_node_latency.json')
    args = parser.parse_args()
    sizes = [tuple(int(v) for v in size.split('x')) for size in args.sizes.split(',')]
    person_counts = [int(v) for v in args.persons.split(',')]

    with tempfile.TemporaryDirectory() as scratch:
        model = args.model or tiny_model(Path(scratch))
        node = subprocess.Popen([sys.executable, '-m', 'starpose_ros.node', '--ros-args', '-r', f'__ns:={NAMESPACE}',
                                 '-p', f'model_path:={model}', '-p', f'num_threads:={args.threads}'], cwd=REPO_ROOT)
        bench = Bench()
        bare = BareBackend(model, args.threads)
        rows = []
        try:
            for outputs_on in (True, False):
                bench.set_parameters(**{name: outputs_on for name in VISUAL_OUTPUTS})
                bench.transition(Transition.TRANSITION_CONFIGURE)
                bench.transition(Transition.TRANSITION_ACTIVATE)
                rng = np.random.default_rng(0)
                for width, height in sizes:
                    for persons in person_counts:
                        image, detections = frame(width, height, persons, rng)
                        # discovery, or a lost best-effort frame: retry until one answer comes back
                        if not any(bench.round_trip_ms(image, detections, timeout=5.0) for _ in range(12)):
                            raise SystemExit('the node never answered; see its output above')
                        bare.call_ms(persons)
                        for _ in range(2):
                            bench.round_trip_ms(image, detections)
                        # interleaved, so that both see the same load on a shared machine
                        times, bare_times = [], []
                        for _ in range(args.frames):
                            bare_times.append(bare.call_ms(persons))
                            times.append(bench.round_trip_ms(image, detections))
                            time.sleep(SETTLE_S)
                        times = [t for t in times if t is not None]
                        rows.append({'size': f'{width}x{height}', 'persons': persons, 'visual_outputs': outputs_on,
                                     'frames': len(times), 'lost': args.frames - len(times),
                                     'e2e_p50_ms': float(np.percentile(times, 50)),
                                     'e2e_p95_ms': float(np.percentile(times, 95)),
                                     'backend_p50_ms': float(np.median(bare_times)),
                                     'e2e_over_backend': float(np.median(times) / np.median(bare_times))})
                        print_row(rows[-1])
                bench.transition(Transition.TRANSITION_DEACTIVATE)
                bench.transition(Transition.TRANSITION_CLEANUP)
        finally:
            bench.close()
            node.send_signal(signal.SIGINT)
            node.wait(timeout=30)

    report = {'benchmark': 'node end-to-end latency', 'model': str(args.model or 'tiny (random weights)'),
              'backend': 'onnxruntime CPU', 'threads': args.threads, 'cpu_count': os.cpu_count(),
              'machine': platform.processor() or platform.machine(), 'load_average_1min': os.getloadavg()[0],
              'rows': rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    print(f'wrote {args.out}')
    return 0


def print_row(row: dict) -> None:
    if not hasattr(print_row, 'header_done'):
        print(f'{"size":>10} {"persons":>7} {"visual":>6} {"e2e p50 ms":>10} {"e2e p95 ms":>10} '
              f'{"backend ms":>10} {"e2e/backend":>11} {"lost":>4}')
        print_row.header_done = True
    print(f'{row["size"]:>10} {row["persons"]:>7} {"on" if row["visual_outputs"] else "off":>6} '
          f'{row["e2e_p50_ms"]:>10.1f} {row["e2e_p95_ms"]:>10.1f} {row["backend_p50_ms"]:>10.1f} '
          f'{row["e2e_over_backend"]:>11.2f} {row["lost"]:>4}')


if __name__ == '__main__':
    sys.exit(main())
