"""Small ONNX graphs and machines for the TensorRT tests (shared by test_tensorrt*.py)."""
from __future__ import annotations

import onnx
from onnx import TensorProto, helper

from starpose_ros.core.backends.tensorrt_engine import BuildEnvironment

JETSON = BuildEnvironment('10.3.0', 'Orin', '8.7', 16, 62841)  # AGX Orin 64 GB
ORIN_NX = BuildEnvironment('10.3.0', 'Orin', '8.7', 8, 15656)  # same name and sm_87, another chip
DESKTOP = BuildEnvironment('10.3.0', 'NVIDIA GeForce RTX 3090', '8.6', 82, 24245)


def graph_model(nodes, inputs, outputs, opset=18, initializers=()):
    graph = helper.make_graph(nodes, 'g', inputs, outputs, initializer=list(initializers))
    return helper.make_model(graph, opset_imports=[helper.make_opsetid('', opset)])


def contract_like_model(path):
    """A small graph with the inference contract's I/O that TensorRT can build (Cast at both ends)."""
    lr = helper.make_tensor_value_info('lr_frames', TensorProto.UINT8, ['batch', 5, 8, 6, 3])
    sr = helper.make_tensor_value_info('sr_image', TensorProto.UINT8, ['batch', 8, 6, 3])
    keypoints = helper.make_tensor_value_info('keypoints', TensorProto.FLOAT, ['batch', 8, 6, 3])
    axes = helper.make_tensor('axes', TensorProto.INT64, [1], [1])
    nodes = [helper.make_node('Cast', ['lr_frames'], ['f'], to=TensorProto.FLOAT, name='cast_in'),
             helper.make_node('ReduceMean', ['f', 'axes'], ['keypoints'], keepdims=0, name='mean'),
             helper.make_node('Cast', ['keypoints'], ['sr_image'], to=TensorProto.UINT8, name='cast_out')]
    model = graph_model(nodes, [lr], [sr, keypoints], initializers=[axes])
    for key, value in {'starpose.window': '5', 'starpose.lr_height': '8', 'starpose.lr_width': '6'}.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save(model, str(path))
    return path
