"""The StarPose node on this machine: round trip by people and image size, the bare model call, idle CPU.

Every case owns a node (`python -m starpose_ros.node`, as `ros2 run` starts it, in its own
namespace) and a client in the case's own process: the client publishes a bgr8 image with
`persons` 30x80 boxes (ids given), waits for the pose array with that stamp and times the round
trip; the cases of one image size run in interleaved rounds (`benchmarks/harness.py`). Beside
each round trip: the node's own `/diagnostics` latency (receipt to published, the last frames of
that case's node) and the bare backend call at the same batch, timed on its own beforehand (so
that no ONNX Runtime thread pool of this benchmark runs beside the node's).

Spinning (issue 15, item 5): two nodes, ONNX Runtime intra-op spinning off and on
(`STARPOSE_ORT_SPINNING`), in interleaved rounds at a camera-like 10 frames/s: round trip,
the node's CPU while serving, and its CPU while active with no frames arriving.

    python benchmarks/bench_node_latency.py                  # bundled model, ~10 minutes
    python benchmarks/bench_node_latency.py --quick          # smoke run
"""
from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
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

import numpy as np  # noqa: E402
from bench_model_latency import BUNDLED, ort_call  # noqa: E402
from harness import Case, Plan, Timed, compare, fmt_spread, machine, quick_plan, report  # noqa: E402

VISUAL_OUTPUTS = ('publish_overlay', 'publish_mosaic', 'publish_sr_crops', 'publish_markers')
STOP_S = 5.0  # SIGINT, then SIGKILL: a node that hangs must not hang the benchmark


def _cpu_seconds(pid: int) -> float:
    """CPU seconds (user + system) a process has used so far (Linux /proc)."""
    with open(f'/proc/{pid}/stat') as stat:
        fields = stat.read().rsplit(')', 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf('SC_CLK_TCK')


def stop_node(process: subprocess.Popen) -> str:
    """SIGINT; SIGKILL after STOP_S. Says how it ended."""
    if process.poll() is not None:
        return f'had exited ({process.returncode})'
    process.send_signal(signal.SIGINT)
    try:
        process.wait(STOP_S)
        return f'exited on SIGINT ({process.returncode})'
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        return f'killed: no exit within {STOP_S:g} s of SIGINT'


class NodeRoundTrip:
    """A node process plus a ROS client in this process; each call is one frame's round trip."""

    def __init__(self, threads: int, model: str, size: str, persons: int, visual: bool, spinning: bool | None,
                 period_s: float, idle_s: float):
        import rclpy
        from lifecycle_msgs.msg import Transition

        self.namespace = f'/starpose_bench_{os.getpid()}'
        self.fqn = f'{self.namespace}/starpose_node'
        env = dict(os.environ)
        if spinning is not None:
            env['STARPOSE_ORT_SPINNING'] = '1' if spinning else '0'
        params = {'model_path': model, 'num_threads': threads, 'max_batch': 16,
                  **{name: visual for name in VISUAL_OUTPUTS}}  # diagnostics every 1 s (default): idle CPU as shipped
        command = [sys.executable, '-m', 'starpose_ros.node', '--ros-args', '-r', f'__ns:={self.namespace}']
        for key, value in params.items():
            command += ['-p', f'{key}:={str(value).lower() if isinstance(value, bool) else value}']
        self.node = subprocess.Popen(command, cwd=REPO_ROOT, env=env, stdout=subprocess.DEVNULL)
        self.period_s, self.idle_s = period_s, idle_s
        self.settle_s = 0.15 if visual else 0.02  # the visual outputs follow the pose array
        self.serving = [0.0, 0.0]  # node CPU seconds, wall seconds over the calls
        self.diagnostics: dict[str, str] = {}
        self.answers: dict[int, int] = {}
        self.context = rclpy.Context()
        rclpy.init(context=self.context)
        self._start_client()
        width, height = (int(v) for v in size.split('x'))
        self.image, self.detections = frame(width, height, persons, np.random.default_rng(0))
        for transition in (Transition.TRANSITION_CONFIGURE, Transition.TRANSITION_ACTIVATE):
            self._transition(transition)
        if not any(self._round_trip(timeout=5.0) for _ in range(12)):  # discovery, or a lost best-effort frame
            raise RuntimeError(f'the node never answered ({stop_node(self.node)})')

    def _start_client(self) -> None:
        import rclpy
        from diagnostic_msgs.msg import DiagnosticArray
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.qos import qos_profile_sensor_data
        from sensor_msgs.msg import Image

        from starpose_msgs.msg import PersonPoseArray, TrackedDetectionArray

        self.client = rclpy.create_node('starpose_bench_client', namespace=self.namespace, context=self.context)
        self.images = self.client.create_publisher(Image, 'image', qos_profile_sensor_data)
        self.boxes = self.client.create_publisher(TrackedDetectionArray, 'detections', 10)
        self.client.create_subscription(PersonPoseArray, 'poses', self._on_poses, 10)
        self.client.create_subscription(DiagnosticArray, '/diagnostics', self._on_diagnostics, 10)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.client)
        self.spinner = threading.Thread(target=self.executor.spin, daemon=True)
        self.spinner.start()

    def _on_poses(self, msg) -> None:
        self.answers[msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec] = time.perf_counter_ns()

    def _on_diagnostics(self, msg) -> None:
        for status in msg.status:
            if status.hardware_id == self.fqn:
                self.diagnostics = {kv.key: kv.value for kv in status.values}

    def _transition(self, transition_id: int) -> None:
        from lifecycle_msgs.srv import ChangeState

        client = self.client.create_client(ChangeState, f'{self.fqn}/change_state')
        if not client.wait_for_service(timeout_sec=60):
            raise RuntimeError(f'no lifecycle service ({stop_node(self.node)})')
        request = ChangeState.Request()
        request.transition.id = transition_id
        done = threading.Event()
        future = client.call_async(request)
        future.add_done_callback(lambda _: done.set())
        if not done.wait(120) or not future.result().success:
            raise RuntimeError(f'transition {transition_id} failed ({stop_node(self.node)})')
        self.client.destroy_client(client)

    def _round_trip(self, timeout: float = 30.0) -> float | None:
        """Publish the frame stamped now; seconds until its pose array, None if none came."""
        stamp_ns = time.time_ns()
        self.image.header.stamp.sec, self.image.header.stamp.nanosec = divmod(stamp_ns, 1_000_000_000)
        self.detections.header = self.image.header
        start = time.perf_counter_ns()
        self.boxes.publish(self.detections)
        self.images.publish(self.image)
        deadline = time.monotonic() + timeout
        while stamp_ns not in self.answers and time.monotonic() < deadline:
            time.sleep(0.0002)
        return (self.answers[stamp_ns] - start) / 1e9 if stamp_ns in self.answers else None

    def __call__(self) -> Timed:
        """One round trip, then wait out the frame period; the node's CPU over both is counted."""
        wall, cpu = time.perf_counter(), _cpu_seconds(self.node.pid)
        seconds = self._round_trip()
        if seconds is None:
            raise RuntimeError('a frame got no answer within 30 s')
        time.sleep(max(self.settle_s, self.period_s - (time.perf_counter() - wall)))
        self.serving[0] += _cpu_seconds(self.node.pid) - cpu
        self.serving[1] += time.perf_counter() - wall
        return Timed(seconds)

    def extras(self) -> dict:
        """Node CPU serving and idle (active, no frames), its own latency, and how it stopped."""
        time.sleep(1.2)  # the next /diagnostics (every 1 s) holds the last frame
        out = {'node_latency_p50_ms': float(self.diagnostics.get('latency_p50_ms', 'nan')),
               'node_cpu_percent_serving': 100 * self.serving[0] / max(self.serving[1], 1e-9)}
        if self.idle_s:
            cpu = _cpu_seconds(self.node.pid)
            time.sleep(self.idle_s)
            out['node_cpu_percent_idle'] = 100 * (_cpu_seconds(self.node.pid) - cpu) / self.idle_s
        self.executor.shutdown()
        self.client.destroy_node()
        self.context.try_shutdown()
        out['node_exit'] = stop_node(self.node)
        return out


def node_case(threads: int, **kwargs):
    """Harness factory: one node and its client (see `NodeRoundTrip`)."""
    return NodeRoundTrip(threads, **kwargs)


def frame(width: int, height: int, persons: int, rng: np.random.Generator):
    """A noisy bgr8 image and `persons` 30x80 boxes with ids, spread over it."""
    from sensor_msgs.msg import Image

    from starpose_msgs.msg import TrackedDetection, TrackedDetectionArray

    pixels = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    image = Image(height=height, width=width, encoding='bgr8', step=width * 3, data=pixels.tobytes())
    image.header.frame_id = 'camera_optical'
    xs = np.linspace(0.05 * width, 0.9 * width, persons)
    boxes = [TrackedDetection(id=str(i), class_id='person', score=0.9, center_x=float(x), center_y=height / 2.0,
                              size_x=30.0, size_y=80.0) for i, x in enumerate(xs)]
    return image, TrackedDetectionArray(detections=boxes)


def bare_calls(model: str, args, plan: Plan) -> dict:
    """The backend alone at each batch (people per frame), its cases interleaved, before any node runs."""
    cases = [Case(f'b{n}', ort_call, args.threads, {'onnx': model, 'batch': n}, units=n) for n in args.persons]
    result = compare(cases, plan)
    return {n: result['cases'][f'b{n}']['seconds'] for n in args.persons}


def round_trips(model: str, args, plan: Plan, bare: dict) -> list[dict]:
    """Per image size and visual setting: one node per people count, interleaved."""
    rows = []
    for visual in args.visual:
        for size in args.sizes:
            cases = [Case(f'{size}_{n}', node_case, args.threads, {'model': model, 'size': size, 'persons': n,
                          'visual': visual, 'spinning': None, 'period_s': 0.0, 'idle_s': 0.0})
                     for n in args.persons]
            result = compare(cases, plan)
            for n in args.persons:
                case = result['cases'][f'{size}_{n}']
                rows.append({'size': size, 'persons': n, 'visual_outputs': visual,
                             'round_trip_ms': {k: 1000 * v for k, v in case['seconds'].items()},
                             'bare_call_ms': {k: 1000 * v for k, v in bare[n].items()},
                             'round_trip_over_bare': case['seconds']['median'] / bare[n]['median'], **case['extras']})
                row = rows[-1]
                print(f'{size:>10} {n:>3} {"on" if visual else "off":>4} {fmt_spread(row["round_trip_ms"]):>22} '
                      f'{row["node_latency_p50_ms"]:>9.1f} {fmt_spread(row["bare_call_ms"]):>22} '
                      f'{row["round_trip_over_bare"]:>6.2f}  {row["node_exit"]}', flush=True)
    return rows


def spinning(model: str, args, plan: Plan) -> dict:
    """Spinning off vs on: round trip and node CPU at 10 frames/s, then idle CPU (active, no frames)."""
    cases = [Case(f'spinning_{state}', node_case, args.threads,
                  {'model': model, 'size': '640x480', 'persons': args.spin_persons, 'visual': False,
                   'spinning': state == 'on', 'period_s': 0.1, 'idle_s': args.idle_s})
             for state in ('off', 'on')]
    result = compare(cases, plan)
    out = {}
    for name, case in result['cases'].items():
        out[name] = {'round_trip_ms': {k: 1000 * v for k, v in case['seconds'].items()}, **case['extras']}
        print(f'{name:<13} round trip {fmt_spread(out[name]["round_trip_ms"])} ms, node CPU serving 10 fps '
              f'{case["extras"]["node_cpu_percent_serving"]:.1f} %, idle {case["extras"]["node_cpu_percent_idle"]:.2f} '
              f'% of one core; {case["extras"]["node_exit"]}')
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--model', type=Path, default=BUNDLED, help='.pt or .onnx (default: the bundled model)')
    parser.add_argument('--sizes', nargs='+', default=['640x480', '1920x1080'])
    parser.add_argument('--persons', nargs='+', type=int, default=[1, 2, 4, 8, 16])
    parser.add_argument('--visual', nargs='+', type=lambda v: v == 'on', default=[False, True],
                        help='off: pose arrays only; on: also overlay, mosaic, SR crops, markers')
    parser.add_argument('--threads', type=int, default=2, help='ONNX Runtime threads (node and bare backend)')
    parser.add_argument('--rounds', type=int, default=5)
    parser.add_argument('--idle-s', type=float, default=10.0, help='idle CPU measurement per spinning case')
    parser.add_argument('--spin-persons', type=int, default=4)
    parser.add_argument('--quick', action='store_true', help='640x480, 1 and 2 people, outputs off, 2 rounds')
    parser.add_argument('--out', type=Path, default=REPO_ROOT / 'outputs' / 'bench_node_latency.json')
    args = parser.parse_args(argv)
    if args.quick:
        args.sizes, args.persons, args.visual, args.idle_s = ['640x480'], [1, 2], [False], 2.0
    from starpose_ros.core.models import resolve_model

    model = str(resolve_model(args.model, 'onnxruntime')[0])
    load_before = machine()
    plan = quick_plan() if args.quick else Plan(rounds=args.rounds, calls_per_round=5, stable_tolerance=0.2)
    spin_plan = quick_plan() if args.quick else Plan(rounds=args.rounds, calls_per_round=10, stable_tolerance=0.3)
    bare = bare_calls(model, args, plan)
    print(f'{"size":>10} {"ppl":>3} {"vis":>4} {"round trip ms":>22} {"node p50":>9} {"bare call ms":>22} '
          f'{"ratio":>6}')
    rows = round_trips(model, args, plan, bare)
    spin = spinning(model, args, spin_plan)
    report(args.out, {'benchmark': 'node_latency', 'model': str(args.model), 'onnx': model, 'threads': args.threads,
                      'quick': args.quick, 'rows': rows, 'spinning': spin}, load_before)
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
