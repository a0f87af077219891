"""The node's parameters -> backend constructor options mapping (no TensorRT or model needed)."""
import dataclasses
import inspect

import pytest

from starpose_ros.core.backends.tensorrt_backend import TensorRTBackend
from starpose_ros.core.backends.tensorrt_engine import DEFAULT_CACHE_DIR
from starpose_ros.core.models import backend_options
from starpose_ros.node import StarPoseNode
from starpose_ros.node_parameters import PARAMETERS, NodeSettings
from starpose_testing.paths import REPO_ROOT

pytestmark = pytest.mark.ros


def _settings(**overrides) -> NodeSettings:
    """Settings as the node reads them with every parameter at its declared default."""
    values = {f.name: PARAMETERS[f.name].default for f in dataclasses.fields(NodeSettings)}
    values['person_class_ids'] = tuple(values['person_class_ids'])
    return NodeSettings(**{**values, **overrides})


def _tensorrt_accepts(options: dict) -> inspect.BoundArguments:
    """Bind the options to TensorRTBackend's constructor: a wrong or missing name raises TypeError."""
    return inspect.signature(TensorRTBackend.__init__).bind(None, 'model.onnx', **options)


def test_tensorrt_defaults_pass_precision_rebuild_flag_and_max_batch():
    options = backend_options('tensorrt', _settings(backend='tensorrt', max_batch=8).runtime)
    assert options == {'max_batch': 8, 'precision': 'fp16', 'force_engine_rebuild': False}
    bound = _tensorrt_accepts(options)
    bound.apply_defaults()
    assert bound.arguments['cache_dir'] == DEFAULT_CACHE_DIR  # empty engine_cache_dir: the documented default


def test_tensorrt_engine_parameters_reach_the_constructor(tmp_path):
    settings = _settings(backend='tensorrt', engine_precision='int8', force_engine_rebuild=True,
                         engine_cache_dir=str(tmp_path), engine_calibration_data='windows.npy')
    options = backend_options('tensorrt', settings.runtime)
    assert options == {'max_batch': 16, 'precision': 'int8', 'force_engine_rebuild': True,
                       'cache_dir': str(tmp_path), 'calibration_data': 'windows.npy'}
    _tensorrt_accepts(options)


def test_other_backends_get_no_engine_options():
    settings = _settings(backend='onnxruntime', engine_precision='fp32', force_engine_rebuild=True)
    assert backend_options('onnxruntime', settings.runtime) == {'device': 'cpu', 'intra_op_threads': 2}
    assert backend_options('torch', _settings(backend='torch', device='cuda', num_threads=4).runtime) == {
        'device': 'cuda', 'num_threads': 4}


def test_engine_parameters_are_read_from_the_command_line(rclpy_context):
    node = StarPoseNode(context=rclpy_context, cli_args=[
        '--ros-args', '--params-file', str(REPO_ROOT / 'config' / 'starpose.yaml'), '-p', 'backend:=tensorrt',
        '-p', 'engine_precision:=fp32', '-p', 'force_engine_rebuild:=true', '-p', 'engine_cache_dir:=/tmp/engines'])
    try:
        options = backend_options('tensorrt', NodeSettings.from_node(node).runtime)
    finally:
        node.destroy_node()
    assert options == {'max_batch': 16, 'precision': 'fp32', 'force_engine_rebuild': True,
                       'cache_dir': '/tmp/engines'}


def test_unknown_engine_precision_is_refused(rclpy_context):
    from rclpy.parameter import Parameter

    node = StarPoseNode(context=rclpy_context)
    try:
        result = node.set_parameters([Parameter('engine_precision', value='fp8')])[0]
    finally:
        node.destroy_node()
    assert not result.successful and 'fp16' in result.reason
