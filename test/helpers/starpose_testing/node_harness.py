"""Helpers for the node tests: the tiny test model, the node in its own process, a ROS client.

The node always runs as `python -m starpose_ros.node` in a child process (as `ros2 run` would
start it), and the tests talk to it only through ROS: lifecycle services, parameters, topics.
"""
from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import rclpy
from lifecycle_msgs.msg import Transition
from lifecycle_msgs.srv import ChangeState, GetState
from rcl_interfaces.srv import SetParameters
from rclpy.executors import SingleThreadedExecutor
from rclpy.parameter import Parameter

from starpose_testing.paths import REPO_ROOT


def tiny_onnx_model(pytest_config) -> Path:
    """A randomly initialised `tiny` model exported to ONNX, cached across test sessions.

    The cache key hashes the model package's sources and the torch version, so a change to the
    network is always re-exported. Node tests must not depend on trained accuracy, only on
    shapes, plumbing and timing.
    """
    import hashlib

    import torch

    digest = hashlib.sha256(torch.__version__.encode())
    for source in sorted((REPO_ROOT / 'starpose_model').glob('*.py')):
        digest.update(source.name.encode() + source.read_bytes())
    path = pytest_config.cache.mkdir('starpose_models') / f'tiny_random_{digest.hexdigest()[:16]}.onnx'
    if not path.exists():
        from starpose_model.export import export_onnx, random_model

        torch.set_num_threads(2)
        partial = path.with_suffix('.partial.onnx')
        export_onnx(random_model('tiny', seed=0), partial)
        partial.replace(path)
    return path


def _parameter_text(value) -> str:
    if isinstance(value, bool):
        return 'true' if value else 'false'
    if isinstance(value, (list, tuple)):
        return '[' + ','.join(f"'{v}'" for v in value) + ']'
    return str(value)


class NodeProcess:
    """`python -m starpose_ros.node` in a child process, its output captured in a log file.

    Every instance is tracked: `kill_leftovers` (run after each ROS test, see test/ros/conftest.py)
    kills one a failing test left running, so no node outlives its test.
    """

    started: list[NodeProcess] = []

    def __init__(self, log_path: Path, namespace: str, parameters: dict, name: str = 'starpose_node',
                 params_file: Path | None = None, env: dict | None = None):
        self.name = name
        self.fqn = f'{namespace.rstrip("/")}/{name}'
        self.log_path = log_path
        command = [sys.executable, '-m', 'starpose_ros.node', '--ros-args', '-r', f'__ns:={namespace}',
                   '-r', f'__node:={name}']
        if params_file is not None:
            command += ['--params-file', str(params_file)]
        for key, value in parameters.items():
            command += ['-p', f'{key}:={_parameter_text(value)}']
        self._log = open(log_path, 'w')  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(command, cwd=REPO_ROOT, stdout=self._log, stderr=subprocess.STDOUT,
                                        env=None if env is None else {**os.environ, **env})
        NodeProcess.started.append(self)

    @classmethod
    def kill_leftovers(cls, keep: int = 0) -> list[str]:
        """Kill the node processes started after the first `keep` ones that still run; return their names."""
        left = [node for node in cls.started[keep:] if node.alive()]
        for node in left:
            node.process.kill()
            node.process.wait()
            node._log.close()
        del cls.started[keep:]
        return [node.fqn for node in left]

    def alive(self) -> bool:
        return self.process.poll() is None

    def log(self) -> str:
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text()

    def stop(self, timeout: float = 20.0) -> int:
        """Ctrl-C the node (a clean shutdown) and return its exit code; kill it if it hangs."""
        if self.alive():
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()
        return self.process.returncode


class NoResponseError(TimeoutError):
    """A service was found but never answered within the timeout."""


# The state each lifecycle transition leads to when it succeeds.
TRANSITION_GOALS = {Transition.TRANSITION_CONFIGURE: 'inactive', Transition.TRANSITION_ACTIVATE: 'active',
                    Transition.TRANSITION_DEACTIVATE: 'inactive', Transition.TRANSITION_CLEANUP: 'unconfigured'}


class RosClient:
    """A client node spinning in a background thread, with blocking helpers for services and topics."""

    def __init__(self, context, name: str = 'starpose_test_client'):
        self.node = rclpy.create_node(name, context=context)
        self.executor = SingleThreadedExecutor(context=context)
        self.executor.add_node(self.node)
        self._thread = threading.Thread(target=self.executor.spin, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self.executor.shutdown()
        self._thread.join(timeout=5)
        self.node.destroy_node()

    def call(self, srv_type, service: str, request, timeout: float = 60.0, resend_s: float | None = 5.0):
        """Call a service and wait for the response (raises TimeoutError naming the service).

        A fresh client's first response can be lost: the node answers before its response writer
        has matched this client's reader (rmw_fastrtps waits 100 ms, then logs "failed to send
        response (timeout)"), which a loaded machine makes likely. So an idempotent request is sent
        again every `resend_s` until `timeout`; pass None for one that must not be repeated.
        """
        client = self.node.create_client(srv_type, service)
        try:
            if not client.wait_for_service(timeout_sec=timeout):
                raise TimeoutError(f'service {service} did not appear within {timeout} s')
            done, futures = threading.Event(), []
            deadline = time.monotonic() + timeout
            while not done.is_set():
                left = deadline - time.monotonic()
                if left <= 0:
                    raise NoResponseError(f'no response from {service} within {timeout} s')
                futures.append(client.call_async(request))
                futures[-1].add_done_callback(lambda _: done.set())
                done.wait(left if resend_s is None else min(resend_s, left))
            return next(f for f in futures if f.done()).result()
        finally:
            self.node.destroy_client(client)

    def change_state(self, node_fqn: str, transition_id: int, timeout: float = 60.0) -> bool:
        """Trigger a lifecycle transition; a lost response is settled by asking the state, then trying once more."""
        request = ChangeState.Request()
        request.transition.id = transition_id
        service = f'{node_fqn}/change_state'
        try:
            return self.call(ChangeState, service, request, timeout, resend_s=None).success
        except NoResponseError:
            goal = TRANSITION_GOALS.get(transition_id)
            if goal is not None and self.get_state(node_fqn, timeout) == goal:
                return True  # it happened; only the answer was lost
            return self.call(ChangeState, service, request, timeout, resend_s=None).success

    def get_state(self, node_fqn: str, timeout: float = 60.0) -> str:
        return self.call(GetState, f'{node_fqn}/get_state', GetState.Request(), timeout).current_state.label

    def set_parameters(self, node_fqn: str, **values) -> list:
        request = SetParameters.Request(parameters=[Parameter(k, value=v).to_parameter_msg()
                                                    for k, v in values.items()])
        return list(self.call(SetParameters, f'{node_fqn}/set_parameters', request).results)

    def collect(self, msg_type, topic: str, qos=10, stamp_received: bool = False) -> list:
        """Append every message on `topic` to the returned list (with receipt time_ns if asked)."""
        received = []
        append = (lambda msg: received.append((msg, time.time_ns()))) if stamp_received else received.append
        self.node.create_subscription(msg_type, topic, append, qos)
        return received

    @staticmethod
    def wait_for(predicate, timeout: float, interval: float = 0.05) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return True
            time.sleep(interval)
        return bool(predicate())


def diagnostics_of(messages: list, node_fqn: str) -> dict[str, str]:
    """Key/values of the newest /diagnostics status the node with `node_fqn` published."""
    for message in reversed(messages):
        for status in message.status:
            if status.hardware_id == node_fqn:
                return {kv.key: kv.value for kv in status.values}
    return {}


@contextlib.contextmanager
def node_in_process(context, namespace: str, parameters: list[Parameter], peer_name: str):
    """A StarPoseNode and a peer node in this process, spun by one executor thread.

    For tests that need to call the node's methods directly; torn down in reverse order.
    """
    from starpose_ros.node import StarPoseNode

    node = StarPoseNode(context=context, namespace=namespace, parameter_overrides=parameters)
    peer = rclpy.create_node(peer_name, namespace=namespace, context=context)
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(node)
    executor.add_node(peer)
    spin = threading.Thread(target=executor.spin, daemon=True)
    spin.start()
    try:
        yield node, peer
    finally:
        node.trigger_deactivate()
        executor.shutdown()
        spin.join(timeout=5)
        peer.destroy_node()
        node.destroy_node()
