"""Precision plans carried by the ONNX file itself: an FP16 graph and an INT8 Q/DQ graph.

TensorRT builds strongly typed networks (the only mode of TensorRT 11), so the exported graph
must say which tensors are FP16 or INT8; builder flags no longer choose. Both transforms work
on an exported FP32 ONNX file with ONNX and ONNX Runtime's own tools (no torch, no GPU):

* FP16 (`to_fp16`): the SR and pose networks' layers become FP16; the linear attention (kernel
  phi, K^T V, the normaliser and the division: sums over up to ~1000 tokens that overflow or
  lose the normaliser in FP16), LayerNormalization, and the graph's own pre/post-processing
  (uint8 scaling, rounding, heatmap decoding whose flat argmax index exceeds FP16's exact
  integers above 2048) stay FP32 behind explicit Cast nodes.
* INT8 (`quantize_int8`): `onnxruntime.quantization.quantize_static` in the Q/DQ format
  TensorRT consumes (symmetric INT8 activations and per-channel weights), calibrated on real
  uint8 LR windows; the same FP32 regions are left unquantised.

The FP32 regions are found through the PyTorch module each node was exported from
(`module_scope`), so a renamed module fails loudly (`PrecisionError`) instead of silently
running the attention in reduced precision.
"""
from __future__ import annotations

import re
import tempfile
from pathlib import Path

import numpy as np
import onnx

from starpose_model.contract import METADATA_PREFIX, set_onnx_metadata

PRECISIONS = ('fp32', 'fp16', 'int8')
PRECISION_KEY = METADATA_PREFIX + 'precision'
FP32_SCOPE_KEY = METADATA_PREFIX + 'fp32_scope'
# Module paths whose arithmetic stays FP32, e.g. "sr_net.layers.0.attention" and its ".kernel".
DEFAULT_FP32_SCOPE_PATTERN = r'\.attention(\.kernel)?$'
# Only the two networks are reduced; the graph's own pre/post-processing stays FP32.
REDUCED_PRECISION_ROOTS = ('sr_net', 'pose_net')
FP32_OP_TYPES = frozenset({'LayerNormalization'})


class PrecisionError(ValueError):
    """A precision plan cannot be made for this graph (the message says why)."""


def module_scope(node: onnx.NodeProto) -> str:
    """The PyTorch module path a node was exported from ("sr_net.layers.0.attention"), or "".

    The dynamo exporter records it in the node's `namespace` metadata ("path: Class/..."; the last
    segment is the op itself); the TorchScript exporter encodes it in the node name
    ("/sr_net/layers.0/attention/MatMul").
    """
    namespace = next((p.value for p in node.metadata_props if p.key == 'namespace'), '')
    segments = namespace.split('/')
    if len(segments) >= 2:
        return segments[-2].split(':')[0].strip()
    if node.name.startswith('/'):
        return '.'.join(node.name.strip('/').split('/')[:-1])
    return ''


def attention_nodes(model: onnx.ModelProto, pattern: str = DEFAULT_FP32_SCOPE_PATTERN) -> list[str]:
    """Names of the nodes exported from modules matching `pattern` (the linear attention)."""
    return [node.name for node in model.graph.node if re.search(pattern, module_scope(node))]


def fp32_nodes(model: onnx.ModelProto, pattern: str = DEFAULT_FP32_SCOPE_PATTERN) -> list[str]:
    """Every node kept FP32 under FP16/INT8: attention, LayerNormalization, pre/post-processing."""
    attention = set(attention_nodes(model, pattern))
    if not attention:
        raise PrecisionError(f'no node comes from a module matching {pattern!r}: the linear attention would run '
                             'in reduced precision; pass the pattern of the attention module path')
    return [node.name for node in model.graph.node
            if node.name in attention or node.op_type in FP32_OP_TYPES
            or not module_scope(node).startswith(REDUCED_PRECISION_ROOTS)]


def _require_named_fp32(model: onnx.ModelProto) -> None:
    nodes = model.graph.node
    if len({n.name for n in nodes}) != len(nodes) or not all(n.name for n in nodes):
        raise PrecisionError('every node needs a unique name to pin it to FP32 (re-export with starpose-export)')
    if any(n.domain not in ('', 'ai.onnx') for n in nodes) or model.functions:
        raise PrecisionError('ONNX local functions or custom domains are not converted; export with '
                             'starpose-export (it inlines them)')


def graph_precision(model: onnx.ModelProto) -> str:
    """The precision plan a file was made with (`starpose.precision`, FP32 when absent)."""
    return next((p.value for p in model.metadata_props if p.key == PRECISION_KEY), 'fp32')


def _sort_topologically(graph: onnx.GraphProto) -> None:
    """Reorder nodes so each follows its producers (the converter appends its Casts at the end)."""
    producer = {output: index for index, node in enumerate(graph.node) for output in node.output}
    order, placed, visiting = [], set(), set()

    def place(index: int) -> None:
        stack = [(index, False)]
        while stack:
            current, expanded = stack.pop()
            if current in placed:
                continue
            if expanded:
                placed.add(current)
                order.append(graph.node[current])
                continue
            if current in visiting:
                raise PrecisionError(f'the graph has a cycle through node {graph.node[current].name!r}')
            visiting.add(current)
            stack.append((current, True))
            stack.extend((producer[name], False) for name in graph.node[current].input
                         if name in producer and producer[name] not in placed)

    for index in range(len(graph.node)):
        place(index)
    sorted_nodes = [onnx.NodeProto.FromString(node.SerializeToString()) for node in order]
    del graph.node[:]
    graph.node.extend(sorted_nodes)


def to_fp16(model: onnx.ModelProto, pattern: str = DEFAULT_FP32_SCOPE_PATTERN) -> onnx.ModelProto:
    """An FP16 copy of an FP32 graph with the FP32 regions kept behind explicit Casts (I/O unchanged)."""
    from onnxruntime.transformers.float16 import convert_float_to_float16

    if graph_precision(model) != 'fp32':
        raise PrecisionError(f'the graph is already {graph_precision(model)}; convert the FP32 export')
    _require_named_fp32(model)
    keep = fp32_nodes(model, pattern)
    converted = convert_float_to_float16(model, keep_io_types=True, node_block_list=keep, op_block_list=[])
    del converted.graph.value_info[:]  # the converter leaves stale FP16 entries; types are re-inferred
    _sort_topologically(converted.graph)
    _require_fp32_attention(converted, pattern)
    set_onnx_metadata(converted, {PRECISION_KEY: 'fp16', FP32_SCOPE_KEY: pattern})
    return converted


def value_types(model: onnx.ModelProto) -> dict[str, int]:
    """ONNX element type of every named value, inferred afresh (strict: a type clash raises)."""
    fresh = onnx.ModelProto()
    fresh.CopyFrom(model)
    del fresh.graph.value_info[:]
    graph = onnx.shape_inference.infer_shapes(fresh, strict_mode=True).graph
    types = {init.name: init.data_type for init in graph.initializer}
    for value in [*graph.input, *graph.output, *graph.value_info]:
        if value.type.HasField('tensor_type'):
            types[value.name] = value.type.tensor_type.elem_type
    for node in graph.node:
        if node.op_type == 'Constant' and node.attribute[0].name == 'value':
            types.setdefault(node.output[0], node.attribute[0].t.data_type)
    return types


def _require_fp32_attention(model: onnx.ModelProto, pattern: str) -> None:
    """Raise PrecisionError if any float tensor the attention computes is not FP32."""
    types = value_types(model)
    attention = set(attention_nodes(model, pattern))
    reduced = [node.name for node in model.graph.node if node.name in attention
               and any(types.get(output) == onnx.TensorProto.FLOAT16 for output in node.output)]
    if reduced:
        raise PrecisionError(f'{len(reduced)} attention node(s) would compute in FP16, e.g. {reduced[0]!r}')


def _calibration_reader(input_name: str, windows: np.ndarray, batch: int):
    from onnxruntime.quantization import CalibrationDataReader

    class WindowReader(CalibrationDataReader):
        """Feeds the real LR windows in batches (the calibrator collects activation ranges)."""

        def __init__(self):
            self._batches = iter(np.array_split(windows, max(1, len(windows) // batch)))

        def get_next(self):
            chunk = next(self._batches, None)
            return None if chunk is None else {input_name: np.ascontiguousarray(chunk)}

    return WindowReader()


def quantize_int8(model: onnx.ModelProto, windows: np.ndarray, pattern: str = DEFAULT_FP32_SCOPE_PATTERN,
                  batch: int = 8) -> onnx.ModelProto:
    """An INT8 Q/DQ copy of an FP32 graph, calibrated on uint8 LR `windows` (N, T, h, w, 3).

    Q/DQ pairs as TensorRT reads them: symmetric INT8 activations and weights (zero points 0),
    weights per output channel, biases left float (TensorRT has no INT32 dequantisation); the
    FP32 regions get no Q/DQ and so stay FP32 in a strongly typed engine.
    """
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    if graph_precision(model) != 'fp32':
        raise PrecisionError(f'the graph is already {graph_precision(model)}; quantise the FP32 export')
    if windows.dtype != np.uint8 or windows.ndim != 5 or len(windows) == 0:
        raise PrecisionError(f'calibration windows must be uint8 (N, T, h, w, 3) with N >= 1, '
                             f'got {windows.dtype} {windows.shape}')
    _require_named_fp32(model)
    keep = fp32_nodes(model, pattern)
    with tempfile.TemporaryDirectory(prefix='starpose-qdq-') as folder:
        source, target = Path(folder) / 'fp32.onnx', Path(folder) / 'int8.onnx'
        onnx.save(model, str(source))
        quantize_static(str(source), str(target), _calibration_reader(model.graph.input[0].name, windows, batch),
                        quant_format=QuantFormat.QDQ, activation_type=QuantType.QInt8, weight_type=QuantType.QInt8,
                        per_channel=True, nodes_to_exclude=keep, calibrate_method=CalibrationMethod.MinMax,
                        extra_options={'ActivationSymmetric': True, 'WeightSymmetric': True, 'QuantizeBias': False})
        quantized = onnx.load(str(target))
    set_onnx_metadata(quantized, {PRECISION_KEY: 'int8', FP32_SCOPE_KEY: pattern})
    return quantized
