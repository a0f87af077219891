"""The FP16 and INT8 graphs TensorRT builds, checked in ONNX Runtime (CPU) on real LR windows.

The bundled model is exported, converted to the strongly typed FP16 graph (attention FP32)
and quantised to the INT8 Q/DQ graph, then all three run over the real fixture
(`test/fixtures/vtest_x4`, 68 people, as in test_real_footage_floor.py) through the node's own
core. ONNX Runtime's CPU provider has no FP16 kernel for most operators and runs them in FP32
between Casts, so the FP16 figures measure FP16 weights and FP16 tensors between layers, not
FP16 accumulation inside a layer (that needs TensorRT on a GPU). The INT8 graph is calibrated
on the windows of the first half of the frames and scored on all of them. Run with `-s` to see
the figures. Measured here: FP16 heatmaps within 2.0e-3 of FP32, SR crops within 1 grey level,
98.9% of keypoints within 1 px, PCK@0.2 0.624 vs 0.626; INT8 PCK@0.2 0.619 (-0.007).
"""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from starpose_model.checkpoint import load_inference_model
from starpose_model.export import export_onnx
from starpose_model.precision import attention_nodes, quantize_int8, to_fp16, value_types
from starpose_ros.bag_tools.replay_outputs import RecordingBackend
from starpose_ros.core.backends.onnxruntime_backend import OnnxRuntimeBackend
from starpose_ros.core.backends.tensorrt_onnx import find_tensorrt_issues
from starpose_ros.core.models import BUNDLED_MODEL
from starpose_ros.core.pipeline import PipelineConfig, PosePipeline
from starpose_ros.core.types import Detection, FrameInput
from starpose_testing.paths import REPO_ROOT
from starpose_training.metrics.pck import PCKAccumulator
from starpose_training.posetrack import read_posetrack

FIXTURE = REPO_ROOT / 'test' / 'fixtures' / 'vtest_x4'
# FP16 against FP32 on the real windows (measured: 2.0e-3, 1, 98.9 %, 0.0014).
FP16_HEATMAP_ATOL = 5e-3
FP16_SR_GREY_LEVELS = 2
FP16_KEYPOINTS_WITHIN_1PX = 0.97
FP16_PCK_DELTA = 0.01
INT8_PCK_DROP = 0.03  # PCK@0.2 the INT8 graph may lose against FP32


def _session(path: Path) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 2
    return ort.InferenceSession(str(path), options, providers=['CPUExecutionProvider'])


def _score(backend) -> tuple[float, int]:
    """PCK@0.2 of `backend` over the fixture and how many windows came from its first half of frames."""
    (video,) = read_posetrack(FIXTURE / 'labels.json')
    accumulator, first_half = PCKAccumulator(), 0
    pipeline = PosePipeline(backend, PipelineConfig(max_batch=16))
    for k, image in enumerate(video.images):
        frame = cv2.cvtColor(cv2.imread(str(FIXTURE / image.file_name)), cv2.COLOR_BGR2RGB)
        people = video.people_in(image)
        detections = [Detection(tuple(p.bbox_xywh), f'ref{p.track_id}') for p in people]
        poses = {r.track_id: r.keypoints
                 for r in pipeline.process(FrameInput(k * 100_000_000, 'camera', frame, detections)).persons}
        for person in people:
            accumulator.add(person.keypoints, poses[f'ref{person.track_id}'])
        first_half += len(people) if k < len(video.images) // 2 else 0
    return accumulator.summary()['pck'], first_half


@pytest.fixture(scope='module')
def graphs(tmp_path_factory):
    """FP32/FP16/INT8 ONNX files of the bundled model, the real windows and each graph's PCK@0.2."""
    folder = tmp_path_factory.mktemp('precision')
    torch.set_num_threads(2)
    fp32 = export_onnx(load_inference_model(BUNDLED_MODEL), folder / 'fp32.onnx')
    recorder = RecordingBackend(OnnxRuntimeBackend(fp32, intra_op_threads=2), limit=10_000)
    pck = {}
    pck['fp32'], first_half = _score(recorder)
    windows = np.concatenate(recorder.windows)
    model = onnx.load(str(fp32))
    paths = {'fp32': fp32, 'fp16': folder / 'fp16.onnx', 'int8': folder / 'int8.onnx'}
    onnx.save(to_fp16(model), str(paths['fp16']))
    onnx.save(quantize_int8(model, windows[:first_half]), str(paths['int8']))
    for name in ('fp16', 'int8'):
        with OnnxRuntimeBackend(paths[name], intra_op_threads=2) as backend:
            pck[name] = _score(backend)[0]
    print(f'\nreal windows: {len(windows)} (INT8 calibrated on the first {first_half}); PCK@0.2 {pck}')
    return paths, windows, pck


def test_fp16_graph_keeps_the_linear_attention_fp32(graphs):
    paths, _windows, _pck = graphs
    model = onnx.load(str(paths['fp16']))
    types = value_types(model)
    attention = set(attention_nodes(model))
    float_outputs = [(n.name, types[o]) for n in model.graph.node if n.name in attention for o in n.output
                     if types.get(o) in (onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16)]
    assert {n.op_type for n in model.graph.node if n.name in attention} >= {'MatMul', 'Div', 'Relu', 'Clip'}
    assert float_outputs and all(t == onnx.TensorProto.FLOAT for _name, t in float_outputs)
    convs = [n for n in model.graph.node if n.op_type == 'Conv']
    assert convs and all(types[n.output[0]] == onnx.TensorProto.FLOAT16 for n in convs)
    io = {v.name: v.type.tensor_type.elem_type for v in [*model.graph.input, *model.graph.output]}
    assert find_tensorrt_issues(model) == []
    assert io == {'lr_frames': onnx.TensorProto.UINT8, 'sr_image': onnx.TensorProto.UINT8,
                  'keypoints': onnx.TensorProto.FLOAT, 'heatmaps': onnx.TensorProto.FLOAT}


def test_fp16_graph_matches_fp32_on_real_windows(graphs):
    paths, windows, pck = graphs
    fp32 = _session(paths['fp32']).run(None, {'lr_frames': windows})
    fp16 = _session(paths['fp16']).run(None, {'lr_frames': windows})
    sr_levels = int(np.abs(fp16[0].astype(int) - fp32[0]).max())
    heatmap_error = float(np.abs(fp16[2] - fp32[2]).max())
    within_1px = float((np.linalg.norm(fp16[1][..., :2] - fp32[1][..., :2], axis=-1) <= 1.0).mean())
    print(f'\nFP16 vs FP32 on {len(windows)} real windows: heatmaps max abs {heatmap_error:.2e}, SR crops '
          f'{sr_levels} grey levels, keypoints within 1 px {within_1px:.1%}, PCK@0.2 {pck["fp16"]:.4f} '
          f'vs {pck["fp32"]:.4f}')
    assert heatmap_error <= FP16_HEATMAP_ATOL and sr_levels <= FP16_SR_GREY_LEVELS
    assert within_1px >= FP16_KEYPOINTS_WITHIN_1PX
    assert abs(pck['fp16'] - pck['fp32']) <= FP16_PCK_DELTA


def test_int8_qdq_graph_is_symmetric_per_channel_and_keeps_its_accuracy(graphs):
    paths, _windows, pck = graphs
    model = onnx.load(str(paths['int8']))
    initializers = {i.name: onnx.numpy_helper.to_array(i) for i in model.graph.initializer}
    dequantize = [n for n in model.graph.node if n.op_type == 'DequantizeLinear']
    quantized_convs = [n for n in model.graph.node if n.op_type == 'Conv' and n.input[1] in
                       {d.output[0] for d in dequantize}]
    assert quantized_convs, 'no Conv reads a dequantised weight'
    assert find_tensorrt_issues(model) == []
    weights = {c.input[1] for c in quantized_convs}
    weight_scales = [initializers[d.input[1]] for d in dequantize if d.output[0] in weights]
    assert all(scale.ndim == 1 and scale.size > 1 for scale in weight_scales)  # per output channel
    zero_points = [initializers[d.input[2]] for d in dequantize if len(d.input) > 2]
    assert zero_points and all(z.dtype == np.int8 and not z.any() for z in zero_points)  # symmetric INT8
    # K^T V, Q (K^T V) and the normaliser division read and write float tensors, never Q/DQ ones
    dequantized = {d.output[0] for d in dequantize}
    quantized_inputs = {n.input[0] for n in model.graph.node if n.op_type == 'QuantizeLinear'}
    attention = set(attention_nodes(model))
    sums = [n for n in model.graph.node if n.name in attention and n.op_type in ('MatMul', 'Div')]
    assert sums and not [n.name for n in sums if set(n.input) & dequantized or set(n.output) & quantized_inputs]
    print(f'\nINT8 Q/DQ PCK@0.2 {pck["int8"]:.4f} vs FP32 {pck["fp32"]:.4f} '
          f'(delta {pck["int8"] - pck["fp32"]:+.4f})')
    assert pck['int8'] >= pck['fp32'] - INT8_PCK_DROP
