"""The node's parameters: declared once, as the fields of `NodeSettings` (default, description, range).

`PARAMETERS` (derived from those fields) makes the descriptors; `declare_parameters` declares them
on the node (a bad start-up value fails configure, not the process) and `check_new_parameters`
vets `ros2 param set`. `NodeSettings` is one consistent snapshot of them, turned into the core's
objects (`pipeline`, `runtime`, `person_filter`) under the core's names.
Defaults come from the core's own dataclasses, so the node and the bag replay agree.
"""
from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor, SetParametersResult
from rclpy.exceptions import InvalidParameterTypeException, InvalidParameterValueException
from rclpy.lifecycle import LifecycleNode

from starpose_ros import ros_conversions as conv
from starpose_ros.core.models import BACKEND_CHOICES, RuntimeOptions
from starpose_ros.core.person_filter import DEFAULT_PERSON_CLASSES, PersonFilter
from starpose_ros.core.pipeline import PipelineConfig

ROS_OWN_PARAMETERS = ('use_sim_time', 'start_type_description_service', 'qos_overrides.')  # not ours, not unknown
_DEFAULTS = PipelineConfig()


@dataclass(frozen=True)
class Param:
    """One declared parameter: default, description and constraints."""

    default: object
    description: str
    choices: tuple[str, ...] = ()
    int_range: tuple[int, int] | None = None
    float_range: tuple[float, float] | None = None
    read_only: bool = False

    def descriptor(self, name: str) -> ParameterDescriptor:
        """The rclpy descriptor: description, choices, range, read-only flag."""
        constraints = f'one of: {", ".join(self.choices)}' if self.choices else ''
        descriptor = ParameterDescriptor(name=name, description=self.description, read_only=self.read_only,
                                         additional_constraints=constraints)
        if self.int_range is not None:
            descriptor.integer_range = [IntegerRange(from_value=self.int_range[0], to_value=self.int_range[1], step=0)]
        if self.float_range is not None:
            descriptor.floating_point_range = [FloatingPointRange(from_value=self.float_range[0],
                                                                  to_value=self.float_range[1], step=0.0)]
        return descriptor


def param(default, description: str, **constraints) -> Any:
    """A `NodeSettings` field that is also a node parameter: its default, description and constraints."""
    return field(metadata={'param': Param(default, description, **constraints)})


@dataclass(frozen=True)
class NodeSettings:
    """The parameters as read at configure time (one consistent snapshot); each field declares one.

    config/starpose.yaml and the table in docs/node.md list the same names and defaults (tests
    compare them). Parameters that shape the node's topics and QoS are read-only (set them at
    launch); the rest take effect on the next configure transition.
    """

    # model and backend
    model_path: str = param('', 'model file: .onnx, .pt checkpoint or TensorRT .engine, or a bundled model\'s name '
                                 '(starpose_small_real); empty = the bundled default; configure fails with a '
                                 'readable error when missing or corrupt')
    backend: str = param('auto', 'inference backend; auto follows model_path (.onnx and .pt: onnxruntime, a .pt '
                                  'exported once to a cached ONNX; .engine: tensorrt)', choices=BACKEND_CHOICES)
    device: str = param('cpu', 'where the model runs (cuda needs a CUDA build of the backend)', choices=('cpu', 'cuda'))
    num_threads: int = param(2, 'CPU threads for the backend (0 = the runtime decides)', int_range=(0, 256))
    engine_precision: str = param('fp16', 'backend tensorrt: precision of the engine built from the ONNX model (the '
                                           'linear attention stays FP32; int8 needs engine_calibration_data)',
                                   choices=('fp16', 'fp32', 'int8'))
    engine_calibration_data: str = param('', 'backend tensorrt with engine_precision int8: .npy of real uint8 LR '
                                              'windows (N, T, h, w, 3) to calibrate with (starpose-bag-eval '
                                              '--save-calibration writes one)')
    engine_cache_dir: str = param('', 'backend tensorrt: folder of built engines (empty = ~/.cache/starpose/engines, '
                                       'or $XDG_CACHE_HOME/starpose/engines)')
    force_engine_rebuild: bool = param(False, 'backend tensorrt: rebuild the engine from the .onnx model_path at '
                                               'configure even if a matching cached one exists')
    # inputs
    image_transport: str = param('raw', 'raw: sensor_msgs/Image on `image`; compressed: sensor_msgs/CompressedImage '
                                         'on `image/compressed`', choices=('raw', 'compressed'), read_only=True)
    image_reliability: str = param('best_effort', 'image QoS reliability (best_effort = sensor-data QoS)',
                                    choices=('best_effort', 'reliable'), read_only=True)
    image_queue_depth: int = param(5, 'image QoS history depth', int_range=(1, 100), read_only=True)
    detector: str = param('topic', 'where person boxes come from: topic (the `detections` topic, paired by stamp; '
                                    'best: a real detector such as a YOLO node), hog (OpenCV HOG people detector on '
                                    'the image; a first try with a camera alone), none (no boxes: no poses)',
                           choices=('topic', 'hog', 'none'))
    detections_type: str = param('auto', 'message type on `detections`: vision_msgs (Detection2DArray 4.x), '
                                          'starpose_msgs (TrackedDetectionArray) or auto (vision_msgs when installed)',
                                  choices=('auto', 'vision_msgs', 'starpose_msgs'), read_only=True)
    detections_reliability: str = param('reliable', 'detections QoS reliability',
                                        choices=('best_effort', 'reliable'), read_only=True)
    detections_queue_depth: int = param(10, 'detections QoS history depth', int_range=(1, 100), read_only=True)
    person_class_ids: tuple[str, ...] = param(list(DEFAULT_PERSON_CLASSES),
                                              'detector class ids that mean "person" (COCO id 0 for YOLO); "*" '
                                              'accepts every class; detections without a class are kept')
    min_detection_score: float = param(PersonFilter().min_score, 'detections scoring below this are ignored (with '
                                                                  'detector hog: the HOG SVM margin)',
                                        float_range=(0.0, 1.0))
    hog_upscale: float = param(_DEFAULTS.hog_upscale, 'with detector hog: image upscale before detection (> 1 finds '
                                                       'smaller people, slower)', float_range=(0.25, 8.0))
    min_box_size: float = param(_DEFAULTS.min_box_size, 'boxes smaller than this (pixels, after clipping to the image) '
                                                         'are rejected', float_range=(0.5, 1000.0))
    pairing_max_pending: int = param(30, 'images (or detection sets) waiting for their partner, per side',
                                      int_range=(1, 1000))
    # tracking
    track_iou_threshold: float = param(_DEFAULTS.track_iou_threshold, 'minimum IoU to continue a track',
                                        float_range=(0.01, 1.0))
    track_max_age_s: float = param(_DEFAULTS.track_max_age_s, 'a track unseen for this long (stamp time) is evicted',
                                    float_range=(0.0, 60.0))
    max_tracks: int = param(_DEFAULTS.max_tracks, 'most people processed per frame (also bounds tracker memory)',
                             int_range=(1, 256))
    max_batch: int = param(_DEFAULTS.max_batch, 'person windows per model call; more people take several calls',
                            int_range=(1, 256))
    # outputs
    publish_sr_crops: bool = param(True, 'publish `sr_crops` (per-person super-resolved crops)')
    publish_mosaic: bool = param(True, 'publish `sr_mosaic` (all super-resolved crops in one image)')
    publish_overlay: bool = param(True, 'publish `overlay` (input image with skeletons, boxes and track ids)')
    publish_markers: bool = param(True, 'publish `markers` (skeletons as visualization_msgs/MarkerArray)')
    min_keypoint_score: float = param(_DEFAULTS.min_keypoint_score, 'keypoints scoring below this are not drawn',
                                       float_range=(0.0, 1.0))
    mosaic_columns: int = param(_DEFAULTS.mosaic_columns, 'SR crops per row in `sr_mosaic`', int_range=(1, 64))
    marker_lifetime_s: float = param(0.5, 'RViz markers disappear after this long', float_range=(0.0, 10.0))
    marker_pixel_size_m: float = param(0.002, 'size of one image pixel on the marker picture plane, metres',
                                        float_range=(1e-6, 1.0))
    marker_distance_m: float = param(2.0, 'distance of the marker picture plane in front of the camera, metres',
                                      float_range=(0.0, 100.0))
    # monitoring
    diagnostics_period_s: float = param(1.0, 'period of `/diagnostics` messages', float_range=(0.1, 60.0))
    no_image_warning_s: float = param(5.0, 'warn (once) when publishers exist on the image topic but no image ever '
                                            'arrived for this long (usually a camera without the Fast DDS profile)',
                                       float_range=(0.5, 600.0))

    @classmethod
    def from_node(cls, node: LifecycleNode) -> NodeSettings:
        """Read every parameter; raise ValueError naming one that has an invalid value."""
        values = {f.name: node.get_parameter(f.name).value for f in fields(cls)}
        values['person_class_ids'] = tuple(c for c in values['person_class_ids'] if c.strip())
        if not values['person_class_ids']:
            raise ValueError("person_class_ids is empty: no detection would count as a person (['*'] accepts any "
                             f'class, the default is {list(DEFAULT_PERSON_CLASSES)})')
        for name, value in values.items():
            check_choice(name, value)
        if values['detections_type'] == 'vision_msgs' and conv.Detection2DArray is None:
            raise ValueError('detections_type is vision_msgs but vision_msgs is not installed; '
                             'use starpose_msgs or auto')
        return cls(**values)

    @property
    def pipeline(self) -> PipelineConfig:
        """The core's configuration (the same names where the concept is the same)."""
        return PipelineConfig(
            detector='hog' if self.detector == 'hog' else 'none', hog_upscale=self.hog_upscale,
            hog_min_score=self.min_detection_score, max_batch=self.max_batch, max_tracks=self.max_tracks,
            track_iou_threshold=self.track_iou_threshold, track_max_age_s=self.track_max_age_s,
            min_box_size=self.min_box_size, draw_overlay=self.publish_overlay, draw_mosaic=self.publish_mosaic,
            min_keypoint_score=self.min_keypoint_score, mosaic_columns=self.mosaic_columns)

    @property
    def runtime(self) -> RuntimeOptions:
        """How the backend runs (`core.models.backend_options` turns it into constructor options)."""
        return RuntimeOptions(device=self.device, threads=self.num_threads, max_batch=self.max_batch,
                              engine_precision=self.engine_precision,
                              engine_calibration_data=self.engine_calibration_data,
                              engine_cache_dir=self.engine_cache_dir, force_engine_rebuild=self.force_engine_rebuild)

    @property
    def person_filter(self) -> PersonFilter:
        """Which detections on `detections` count as people."""
        return PersonFilter(frozenset(self.person_class_ids), self.min_detection_score)

    @property
    def uses_vision_msgs(self) -> bool:
        """Whether `detections` carries vision_msgs/Detection2DArray (else TrackedDetectionArray)."""
        return self.detections_type == 'vision_msgs' or (self.detections_type == 'auto'
                                                          and conv.Detection2DArray is not None)


PARAMETERS: dict[str, Param] = {f.name: f.metadata['param'] for f in fields(NodeSettings)}  # everything the node reads


def check_choice(name: str, value) -> None:
    """Raise ValueError naming the parameter when a string value is not one of its choices."""
    choices = PARAMETERS[name].choices
    if choices and value not in choices:
        raise ValueError(f'parameter {name!r} is {value!r}; expected one of: {", ".join(choices)}')


def declare_parameters(node: LifecycleNode) -> dict[str, str]:
    """Declare every parameter; return {name: why its start-up value was refused} (-p, params file)."""
    refused = {}
    for name, param in PARAMETERS.items():
        reason = _declare(node, name, param)
        if reason is not None:
            refused[name] = reason
            node.get_logger().error(f'parameter {name}: start-up value refused ({reason}); it keeps its default '
                                    f'{param.default!r} and configure fails until it is set to a valid value')
    return refused


def _declare(node: LifecycleNode, name: str, param: Param) -> str | None:
    """Declare one parameter; a refused start-up value leaves the default and returns the reason.

    An integer given for a double parameter (`-p hog_upscale:=2`) is taken as that double.
    """
    descriptor = param.descriptor(name)
    try:
        node.declare_parameter(name, param.default, descriptor)
        return None
    except InvalidParameterTypeException as error:
        given = getattr(node._parameter_overrides.get(name), 'value', None)  # rclpy's start-up values
        if isinstance(param.default, float) and isinstance(given, int) and not isinstance(given, bool):
            node.declare_parameter(name, float(given), descriptor, ignore_override=True)
            return None
        reason = str(error)
    except InvalidParameterValueException as error:
        reason = str(error)
    node.declare_parameter(name, param.default, descriptor, ignore_override=True)
    return reason


def warn_unknown_parameters(node: LifecycleNode) -> None:
    """A misspelt name in a params file or `-p` (`detectr: hog`) would otherwise be ignored silently."""
    unknown = sorted(name for name in node._parameter_overrides
                     if name not in PARAMETERS and not name.startswith(ROS_OWN_PARAMETERS))
    if unknown:
        node.get_logger().warning(f'unknown parameter(s) ignored: {", ".join(unknown)} (the node reads: '
                                  f'{", ".join(PARAMETERS)})')


def check_new_parameters(parameters, refused: dict[str, str]) -> SetParametersResult:
    """Vet a `ros2 param set`: refuse a value outside its choices; a valid value clears a refused start-up value."""
    for parameter in parameters:
        if parameter.name in PARAMETERS:
            try:
                check_choice(parameter.name, parameter.value)
            except ValueError as error:
                return SetParametersResult(successful=False, reason=str(error))
    for parameter in parameters:
        refused.pop(parameter.name, None)
    return SetParametersResult(successful=True)
