"""The StarPose ROS 2 lifecycle node: transitions, callbacks and threading.

All pose logic lives in the ROS-free core (`starpose_ros.core`); this module only wires it to
ROS, with its parameters in `node_parameters`, its topics and QoS in `node_topics`, message
conversion in `ros_conversions` and the process's signal handling in `node_signals`. Lifecycle:

- configure: read and check the parameters, load the model through the chosen backend, build
  the pipeline. A missing or corrupt model logs a readable error and fails the transition; the
  node stays alive and can be configured again.
- configure also creates the lifecycle publishers (the topics exist while inactive, as in the ROS 2
  lifecycle talker demo); activate creates the subscriptions, the worker thread and timers.
- deactivate / cleanup / shutdown: undo the above in reverse order; cleanup destroys the
  publishers and closes the backend.

Threading: the executor thread only decodes images, converts detections, pairs them by stamp
and drops the result into a newest-wins slot. One worker thread takes the newest frame, runs the
pipeline (one batched model call per frame) and publishes. When the model is slower than the
camera, older frames are overwritten and counted as drops: latency stays bounded.
"""
from __future__ import annotations

import os
import signal
import time
import traceback

import rclpy
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from rclpy.signals import SignalHandlerOptions

from starpose_ros import ros_conversions as conv
from starpose_ros.core.backends import create_backend
from starpose_ros.core.backends.base import BackendError
from starpose_ros.core.image_codec import ImageDecodeError, image_message_to_rgb
from starpose_ros.core.latest import LatestWorker
from starpose_ros.core.messages import stamp_to_ns, tracked_detections, vision_detections
from starpose_ros.core.models import BUNDLED_MODEL, backend_options, resolve_model
from starpose_ros.core.pairing import StampPairer
from starpose_ros.core.person_filter import PersonFilter
from starpose_ros.core.pipeline import PosePipeline
from starpose_ros.core.types import FrameInput
from starpose_ros.node_parameters import NodeSettings, check_new_parameters, declare_parameters, warn_unknown_parameters
from starpose_ros.node_signals import interrupt, wake_executor_on_signals
from starpose_ros.node_stats import NodeStats, diagnostics_level
from starpose_ros.node_topics import create_publishers, create_subscriptions

NODE_NAME = 'starpose_node'
BAD_INPUT_LOG_PERIOD_S = 1.0  # a camera sending only bad frames logs once a second (all are counted)
WORKER_STOP_TIMEOUT_S = 1.25  # a frame still in the model after this is abandoned (exit stays under 2 s)
FASTDDS_PROFILE_HINT = ('camera-size images need the Fast DDS profile in every process on the image path: '
                        'export FASTDDS_DEFAULT_PROFILES_FILE=<share/starpose_ros>/config/fastdds_profile.xml '
                        '(see docs/dds.md)')


class StarPoseNode(LifecycleNode):
    """Pose estimation for small people: images + person boxes in, poses and visualisations out."""

    def __init__(self, node_name: str = NODE_NAME, **kwargs):
        super().__init__(node_name, **kwargs)
        self._bad_start_values = declare_parameters(self)  # parameter -> why its start-up value was refused
        self.add_on_set_parameters_callback(
            lambda parameters: check_new_parameters(parameters, self._bad_start_values))
        self._settings: NodeSettings | None = None
        self._backend = None
        self._pipeline: PosePipeline | None = None
        self._pairer: StampPairer | None = None
        self._worker: LatestWorker | None = None
        self._input_subs = []
        self._outputs: dict[str, object] = {}
        self._node_timers = []
        self._stats = NodeStats()
        self._dropped_before = 0  # drops of workers from earlier activations
        self._diag_previous = (time.monotonic(), 0, 0)
        self._warned_no_images = False
        self._abandoned_worker = False  # a worker that did not stop may still use the backend
        self._person_filter: PersonFilter | None = None
        warn_unknown_parameters(self)

    # ------------------------------------------------------------------ lifecycle transitions

    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Read parameters, load the model, build the pipeline; FAILURE (node alive) on any problem."""
        if self._bad_start_values:
            self.get_logger().error('configure failed: invalid start-up value of ' + '; '.join(
                f'{name} ({reason})' for name, reason in self._bad_start_values.items()) +
                '; set a valid value (ros2 param set) and configure again')
            return TransitionCallbackReturn.FAILURE
        try:
            settings = NodeSettings.from_node(self)
        except ValueError as error:
            self.get_logger().error(f'configure failed: {error}')
            return TransitionCallbackReturn.FAILURE
        try:
            model_path, backend_name = resolve_model(settings.model_path, settings.backend)
            backend = create_backend(backend_name, model_path, **backend_options(backend_name, settings.runtime))
        except (BackendError, OSError, ValueError) as error:
            self.get_logger().error(f'configure failed: cannot load model {settings.model_path or BUNDLED_MODEL!s} '
                                    f'with backend {settings.backend}: {error}')
            return TransitionCallbackReturn.FAILURE
        try:
            pipeline = PosePipeline(backend, settings.pipeline)
        except ValueError as error:
            backend.close()
            self.get_logger().error(f'configure failed: {error}')
            return TransitionCallbackReturn.FAILURE
        self._backend, self._pipeline, self._settings = backend, pipeline, settings
        self._person_filter = settings.person_filter
        self._pairer = StampPairer(max_pending=settings.pairing_max_pending, images_only=settings.detector != 'topic')
        info = backend.model_info
        self.get_logger().info(f'configured: {backend_name} on {settings.device}, model {model_path} '
                               f'(window {info.window}, LR {info.lr_height}x{info.lr_width}, '
                               f'{info.keypoint_layout} keypoints, target frame {info.target_frame}), '
                               f'detector {settings.detector}')
        # at configure, as in the lifecycle talker: the topics exist while inactive
        self._outputs = create_publishers(self, settings)
        return TransitionCallbackReturn.SUCCESS

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Create the worker, subscriptions and timers, then activate the publishers."""
        settings = self._settings
        self._worker = LatestWorker(self._handle_frame, self._on_frame_error, name='starpose-worker')
        self._input_subs = create_subscriptions(self, settings, self._on_image, self._on_detections)
        self._diag_previous = (time.monotonic(), self._stats.images_in, self._stats.frames_out)
        self._no_image_timer = self.create_timer(settings.no_image_warning_s, self._warn_if_images_missing)
        self._node_timers = [self.create_timer(settings.diagnostics_period_s, self._publish_diagnostics),
                             self._no_image_timer]
        source = (f'detections on {self._input_subs[1].topic_name}' if settings.detector == 'topic'
                  else f'{settings.detector} detector')
        self.get_logger().info(f'active: images on {self._image_topic()}, {source}')
        return super().on_activate(state)

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Stop the worker, deactivate the publishers, destroy subscriptions and timers."""
        self._stop_worker()  # before the publishers go inactive: no publish into a deactivated one
        result = super().on_deactivate(state)
        self._destroy_inputs()
        return result

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Destroy the publishers, close the backend (frees its memory, GPU included), forget the pipeline."""
        self._destroy_publishers()
        self._release_model()
        return TransitionCallbackReturn.SUCCESS

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Release whatever the current state holds."""
        self._release_everything()
        return TransitionCallbackReturn.SUCCESS

    def on_error(self, state: LifecycleState) -> TransitionCallbackReturn:
        """A transition raised: release everything and go back to unconfigured."""
        self.get_logger().error(f'error in a transition from {state.label}; releasing everything')
        self._release_everything()
        return TransitionCallbackReturn.SUCCESS

    def destroy_node(self):
        """Stop the worker and close the model even when the process exits without a transition."""
        self._release_everything()
        return super().destroy_node()

    # ------------------------------------------------------------------ set-up and tear-down

    def _stop_worker(self) -> bool:
        """Stop the worker after its frame in progress; False when it is still inside the model.

        That frame's publish goes to still-active publishers. A worker that does not stop in time
        keeps the backend (see `_release_model`): closing a model under a running call can crash.
        """
        if self._worker is None:
            return True
        stopped = self._worker.stop(timeout=WORKER_STOP_TIMEOUT_S)
        self._dropped_before += self._worker.dropped
        if not stopped:
            self.get_logger().error(f'the worker is still processing a frame after {WORKER_STOP_TIMEOUT_S} s; '
                                    'it is abandoned and the model stays loaded until the process exits')
            self._abandoned_worker = True
        self._worker = None
        return stopped

    def _destroy_inputs(self) -> None:
        """Remove timers and subscriptions (idempotent)."""
        for timer in self._node_timers:
            self.destroy_timer(timer)
        for subscription in self._input_subs:
            self.destroy_subscription(subscription)
        self._node_timers, self._input_subs = [], []

    def _destroy_publishers(self) -> None:
        for publisher in self._outputs.values():
            self.destroy_lifecycle_publisher(publisher)
        self._outputs = {}

    def _release_model(self) -> None:
        if self._backend is not None and not self._abandoned_worker:
            self._backend.close()
        self._backend = self._pipeline = self._pairer = self._settings = None

    def _release_everything(self) -> None:
        self._stop_worker()
        self._destroy_inputs()
        self._destroy_publishers()
        self._release_model()

    # ------------------------------------------------------------------ executor-thread callbacks

    def _on_image(self, msg) -> None:
        received = time.monotonic()
        self._stats.images_in += 1
        try:
            image_rgb = image_message_to_rgb(msg)
        except ImageDecodeError as error:
            self._stats.bad_images += 1
            stamp = msg.header.stamp
            self.get_logger().warning(f'dropped a bad image (stamp {stamp.sec}.{stamp.nanosec:09d}): {error}',
                                   throttle_duration_sec=BAD_INPUT_LOG_PERIOD_S)
            return
        frame = FrameInput(stamp_ns=stamp_to_ns(msg.header.stamp), frame_id=msg.header.frame_id,
                           image_rgb=image_rgb)
        self._submit(self._pairer.add_image(frame.stamp_ns, (frame, received)))

    def _on_detections(self, msg) -> None:
        decode = vision_detections if self._settings.uses_vision_msgs else tracked_detections
        detections, filtered = decode(msg, self._person_filter)
        self._stats.detections_in += len(detections) + filtered
        self._stats.filtered_detections += filtered
        if filtered and self._stats.filtered_detections == self._stats.detections_in:
            self.get_logger().warning(
                f'every detection so far was filtered out ({filtered} in the last message): no class id is in '
                f'person_class_ids {list(self._settings.person_class_ids)} or the scores are below '
                f'min_detection_score {self._settings.min_detection_score}', throttle_duration_sec=10.0)
        self._submit(self._pairer.add_detections(stamp_to_ns(msg.header.stamp), detections))

    def _submit(self, pair) -> None:
        """Hand a complete frame to the worker; an older frame it had not started is dropped."""
        if pair is None or self._worker is None:
            return
        frame, received = pair.image
        frame.detections = pair.detections  # None in images-only mode: the pipeline's detector runs
        self._worker.submit((frame, received))

    # ------------------------------------------------------------------ worker thread

    def _handle_frame(self, item) -> None:
        frame, received = item
        config = self._pipeline.config  # draw only what someone subscribes to (the overlay copies the image)
        config.draw_overlay, config.draw_mosaic = self._subscribed('overlay'), self._subscribed('sr_mosaic')
        result = self._pipeline.process(frame)
        if result is None:  # a 'center' model fills its delay line first
            return
        self._publish(result)
        self._stats.record_output((time.monotonic() - received) * 1e3, len(result.persons))

    def _on_frame_error(self, item, error: BaseException) -> None:
        """Count and log (with the traceback: a failing frame is a bug to report); the next frame runs."""
        self._stats.pipeline_errors += 1
        trace = ''.join(traceback.format_exception(type(error), error, error.__traceback__))
        self.get_logger().error(f'frame {item[0].stamp_ns} failed in the pipeline: {type(error).__name__}: {error}\n'
                                f'{trace}', throttle_duration_sec=2.0)

    def _subscribed(self, output: str) -> bool:
        publisher = self._outputs.get(output)
        return publisher is not None and publisher.get_subscription_count() > 0

    def _publish(self, result) -> None:
        """Poses always; the visual outputs only when enabled and someone subscribes."""
        settings, outputs = self._settings, self._outputs
        header = conv.make_header(result.stamp_ns, result.frame_id)
        outputs['poses'].publish(conv.pose_array_msg(result))
        if self._subscribed('sr_crops'):
            outputs['sr_crops'].publish(conv.sr_crops_msg(result))
        if 'sr_mosaic' in outputs and result.mosaic_rgb is not None:
            outputs['sr_mosaic'].publish(conv.rgb_to_image_msg(result.mosaic_rgb, header))
        if 'overlay' in outputs and result.overlay_rgb is not None:
            outputs['overlay'].publish(conv.rgb_to_image_msg(result.overlay_rgb, header))
        if self._subscribed('markers'):
            height, width = result.image_rgb.shape[:2]
            outputs['markers'].publish(conv.skeleton_markers_msg(
                result, (width, height), settings.min_keypoint_score, settings.marker_pixel_size_m,
                settings.marker_distance_m, settings.marker_lifetime_s))

    # ------------------------------------------------------------------ timers

    def _image_topic(self) -> str:
        return self._input_subs[0].topic_name

    def _warn_if_images_missing(self) -> None:
        """Point to the Fast DDS profile once, when publishers exist but no image ever arrived.

        A camera that pauses after sending images is not a transport problem: no warning then.
        """
        if self._stats.images_in or self._warned_no_images:
            self._no_image_timer.cancel()  # nothing left to check until the next activation
            return
        topic = self._image_topic()
        publishers = self.count_publishers(topic)
        if publishers > 0:
            self._warned_no_images = True
            self._no_image_timer.cancel()
            self.get_logger().warning(f'{publishers} publisher(s) on {topic} but no image arrived for '
                                      f'{self._settings.no_image_warning_s:.0f} s; {FASTDDS_PROFILE_HINT}')

    def diagnostics_values(self) -> dict[str, object]:
        """Latency, rates and counters since activation started (what `/diagnostics` reports)."""
        stats, pipeline = self._stats, self._pipeline
        now = time.monotonic()
        then, images_then, frames_then = self._diag_previous
        self._diag_previous = (now, stats.images_in, stats.frames_out)
        elapsed = max(now - then, 1e-9)
        p50, p95 = stats.latency_percentiles()
        return {
            'latency_p50_ms': p50, 'latency_p95_ms': p95,
            'fps_in': (stats.images_in - images_then) / elapsed,
            'fps_out': (stats.frames_out - frames_then) / elapsed,
            'tracks': len(pipeline.tracker.tracks), 'persons_last_frame': stats.persons_last_frame,
            'images_in': stats.images_in, 'frames_out': stats.frames_out,
            'dropped_frames': self._dropped_before + (self._worker.dropped if self._worker else 0),
            'bad_images': stats.bad_images, 'pipeline_errors': stats.pipeline_errors,
            'detections_in': stats.detections_in, 'filtered_detections': stats.filtered_detections,
            **{f'pipeline_{key}': value for key, value in pipeline.counters.as_dict().items()},
            **{f'pairing_{key}': value for key, value in self._pairer.counters.as_dict().items()},
        }

    def _publish_diagnostics(self) -> None:
        values = self.diagnostics_values()
        level, message = diagnostics_level(values)
        self._outputs['diagnostics'].publish(conv.diagnostics_msg(
            self.get_clock().now().to_msg(), f'{self.get_name()}: pose pipeline', self.get_fully_qualified_name(),
            level, message, values))


def main(args=None) -> None:
    """Run the node (`ros2 run starpose_ros starpose_node` or `python -m starpose_ros.node`).

    rclpy's own signal handlers are off: its SIGTERM handler leaves a blocked `spin()` waiting
    forever. Python's handlers, woken through `wake_executor_on_signals`, end the process within
    ~2 s of SIGINT or SIGTERM in every state (a frame in the model is abandoned after
    `WORKER_STOP_TIMEOUT_S`).
    """
    os.environ.setdefault('OMP_NUM_THREADS', '2')
    rclpy.init(args=args, signal_handler_options=SignalHandlerOptions.NO)
    signal.signal(signal.SIGINT, interrupt)
    signal.signal(signal.SIGTERM, interrupt)
    node = None
    try:
        node = StarPoseNode()
        wake_executor_on_signals(node)
        executor = SingleThreadedExecutor()
        executor.add_node(node)
        while rclpy.ok():
            executor.spin_once()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        if node is not None:
            node.destroy_node()
        rclpy.try_shutdown()


if __name__ == '__main__':
    main()
