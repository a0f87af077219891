"""What TensorRT needs of an ONNX file, decided without a GPU: version policy, operators, shapes.

Pure Python (no tensorrt import): the supported TensorRT range and its one-line refusal, the
operator/type check against the ONNX parser's support matrix, the model facts in the file's
metadata, the optimisation-profile shapes and the I/O buffer plan.
"""
from __future__ import annotations

import dataclasses
import logging
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx

from starpose_ros.core.backends.base import BackendError, ModelInfo

LOG = logging.getLogger(__name__)

# TensorRT releases the engine code is written and type-checked for: 10.3 (JetPack 6.1/6.2) is the
# oldest with every API used here and strongly typed ONNX parsing; 11.x removed only APIs not used.
SUPPORTED_TENSORRT = ((10, 3), (12, 0))
SUPPORTED_TENSORRT_TEXT = '>=10.3,<12'
# ONNX operators the TensorRT 10 ONNX parser supports (onnx-tensorrt docs/operators.md, 10.x).
TRT10_ONNX_OPS = frozenset('''
Abs Acos Acosh Add And ArgMax ArgMin Asin Asinh Atan Atanh AveragePool BatchNormalization
BlackmanWindow Cast CastLike Ceil Celu Clip Concat Constant ConstantOfShape Conv ConvTranspose
Cos Cosh CumSum DeformConv DepthToSpace DequantizeLinear Div Dropout Einsum Elu Equal Erf Exp
Expand EyeLike Flatten Floor Gather GatherElements GatherND Gelu Gemm GlobalAveragePool
GlobalLpPool GlobalMaxPool Greater GreaterOrEqual GridSample GroupNormalization GRU HammingWindow
HannWindow HardSigmoid HardSwish Hardmax Identity If ImageScaler InstanceNormalization IsInf
IsNaN LayerNormalization LeakyRelu Less LessOrEqual Log LogSoftmax Loop LRN LSTM
LpNormalization LpPool MatMul Max MaxPool Mean MeanVarianceNormalization Min Mish Mod Mul Neg
NonMaxSuppression NonZero Not OneHot Or Pad ParametricSoftplus Pow PRelu QuantizeLinear
RandomNormal RandomNormalLike RandomUniform RandomUniformLike Range Reciprocal ReduceL1 ReduceL2
ReduceLogSum ReduceLogSumExp ReduceMax ReduceMean ReduceMin ReduceProd ReduceSum
ReduceSumSquare Relu Reshape Resize ReverseSequence RNN RoiAlign Round ScaledTanh Scan Scatter
ScatterElements ScatterND Selu Shape Shrink Sigmoid Sign Sin Sinh Size Slice Softmax Softplus
Softsign SpaceToDepth Split Sqrt Squeeze Sub Sum Tan Tanh ThresholdedRelu Tile TopK Transpose
Trilu Unsqueeze Upsample Where Xor
'''.split())
TRT10_MIN_OPSET, TRT10_0_MAX_OPSET = 9, 20  # later 10.x releases accept newer opsets
# TensorRT's support matrix lists UINT8 only for network I/O consumed/produced by Cast (Shape and
# Size read no data).
UINT8_OPS = frozenset({'Cast', 'CastLike', 'Shape', 'Size'})
# IResizeLayer interpolation modes (ONNX names); cubic maps to InterpolationMode.CUBIC.
RESIZE_MODES = ('nearest', 'linear', 'cubic')
ONNX_DEFAULT_DOMAINS = ('', 'ai.onnx')

_NUMPY_OF_ONNX = {onnx.TensorProto.UINT8: np.uint8, onnx.TensorProto.FLOAT: np.float32,
                  onnx.TensorProto.FLOAT16: np.float16, onnx.TensorProto.INT32: np.int32,
                  onnx.TensorProto.INT64: np.int64, onnx.TensorProto.BOOL: np.bool_}



class EngineError(BackendError):
    """An engine could not be checked, built or loaded; the message says which file and why."""


class UnsupportedOnnxError(EngineError):
    """The ONNX graph uses something the TensorRT 10 ONNX parser cannot build."""


class EngineMismatchError(EngineError):
    """An engine file was built for another model, GPU or TensorRT version."""

def check_tensorrt_version(version: str) -> None:
    """Raise EngineError (one line) unless `version` is inside SUPPORTED_TENSORRT."""
    if not version:  # tensorrt-stubs alone makes `import tensorrt` an empty namespace package
        raise EngineError('the tensorrt package here has no version: only type stubs are installed, not TensorRT '
                          f'(install tensorrt{SUPPORTED_TENSORRT_TEXT}, see docs/tensorrt.md)')
    match = re.match(r'(\d+)\.(\d+)', version)
    found = (int(match.group(1)), int(match.group(2))) if match else None
    lowest, above = SUPPORTED_TENSORRT
    if found is None or not lowest <= found < above:
        raise EngineError(f'TensorRT {version} is not supported: StarPose needs tensorrt{SUPPORTED_TENSORRT_TEXT} '
                          '(JetPack 6.1/6.2 ship 10.3; desktops: pip install "tensorrt-cu12>=10.3,<12"); '
                          'see docs/tensorrt.md')


# ---------------------------------------------------------------------------------------------
# ONNX checks (pure Python)
# ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class OnnxIssue:
    """One reason TensorRT cannot build a node."""

    node: str
    op_type: str
    reason: str

    def __str__(self) -> str:
        """Render as `op_type 'node': reason`."""
        return f"{self.op_type} '{self.node}': {self.reason}"


def _walk_nodes(nodes, functions, seen=None):
    """Yield every node, descending into local functions and If/Loop/Scan subgraphs."""
    seen = set() if seen is None else seen
    for node in nodes:
        key = (node.domain, node.op_type)
        if key in functions:
            if key not in seen:  # a function body is checked once, not per call
                seen.add(key)
                yield from _walk_nodes(functions[key].node, functions, seen)
            continue
        yield node
        for attribute in node.attribute:
            if attribute.type == onnx.AttributeProto.GRAPH:
                yield from _walk_nodes(attribute.g.node, functions, seen)
            elif attribute.type == onnx.AttributeProto.GRAPHS:
                for graph in attribute.graphs:
                    yield from _walk_nodes(graph.node, functions, seen)


def _value_types(model: onnx.ModelProto) -> dict[str, int]:
    """ONNX element type of every named value after shape inference."""
    inferred = onnx.shape_inference.infer_shapes(model)
    graph = inferred.graph
    types = {init.name: init.data_type for init in graph.initializer}
    for value in [*graph.input, *graph.output, *graph.value_info]:
        if value.type.HasField('tensor_type'):
            types[value.name] = value.type.tensor_type.elem_type
    return types


def find_tensorrt_issues(model: onnx.ModelProto, supports_operator=None) -> list[OnnxIssue]:
    """List the nodes the TensorRT 10 ONNX parser would reject (empty list: buildable).

    `supports_operator` is the installed parser's `OnnxParser.supports_operator` when TensorRT
    is importable; without it the support matrix of TensorRT 10 (`TRT10_ONNX_OPS`) decides.
    """
    issues: list[OnnxIssue] = []
    opset = next((o.version for o in model.opset_import if o.domain in ONNX_DEFAULT_DOMAINS), None)
    if opset is not None and opset < TRT10_MIN_OPSET:
        issues.append(OnnxIssue('<model>', 'opset', f'opset {opset} is older than {TRT10_MIN_OPSET}, '
                                                    'the oldest TensorRT 10 parses'))
    elif opset is not None and opset > TRT10_0_MAX_OPSET:
        LOG.warning('ONNX opset %d is newer than TensorRT 10.0 parses (%d); use TensorRT >= 10.x that '
                    'lists it, or re-export with an older opset', opset, TRT10_0_MAX_OPSET)
    functions = {(f.domain, f.name): f for f in model.functions}
    types = _value_types(model)
    for node in _walk_nodes(model.graph.node, functions):
        name = node.name or (node.output[0] if node.output else '?')
        if node.domain not in ONNX_DEFAULT_DOMAINS:
            issues.append(OnnxIssue(name, node.op_type, f'custom domain {node.domain!r} needs a TensorRT plugin'))
            continue
        supported = supports_operator(node.op_type) if supports_operator else node.op_type in TRT10_ONNX_OPS
        if not supported:
            issues.append(OnnxIssue(name, node.op_type, 'operator not supported by the TensorRT 10 ONNX parser'))
            continue
        attributes = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        if node.op_type == 'Resize':
            mode = attributes.get('mode', b'nearest')
            mode = mode.decode() if isinstance(mode, bytes) else mode
            if mode not in RESIZE_MODES:
                modes = '/'.join(RESIZE_MODES)
                issues.append(OnnxIssue(name, node.op_type, f"mode '{mode}' (TensorRT resizes {modes})"))
            if attributes.get('antialias', 0):
                issues.append(OnnxIssue(name, node.op_type, 'antialias is not supported'))
        if node.op_type == 'MaxPool' and len([o for o in node.output if o]) > 1:
            issues.append(OnnxIssue(name, node.op_type, 'the Indices output is not supported'))
        uint8_values = [v for v in [*node.input, *node.output] if v and types.get(v) == onnx.TensorProto.UINT8]
        if uint8_values and node.op_type not in UINT8_OPS:
            issues.append(OnnxIssue(name, node.op_type, f'uint8 tensor {uint8_values[0]!r}: TensorRT supports uint8 '
                                                        'only as a network input/output read or written by Cast'))
    return issues


def check_onnx_for_tensorrt(onnx_path, supports_operator=None, max_listed: int = 20) -> onnx.ModelProto:
    """Load `onnx_path` and raise UnsupportedOnnxError listing what TensorRT cannot build."""
    model = load_onnx(onnx_path)
    issues = find_tensorrt_issues(model, supports_operator)
    if issues:
        listed = '; '.join(str(issue) for issue in issues[:max_listed])
        more = f'; ... and {len(issues) - max_listed} more' if len(issues) > max_listed else ''
        raise UnsupportedOnnxError(f'{onnx_path}: {len(issues)} node(s) TensorRT 10 cannot build: {listed}{more} '
                                   '(re-export with supported operators, see docs/tensorrt.md)')
    return model


def load_onnx(onnx_path) -> onnx.ModelProto:
    """Read an ONNX file, raising EngineError naming the file if it is missing or not ONNX."""
    path = Path(onnx_path)
    if not path.is_file():
        raise EngineError(f'ONNX model not found: {path}')
    try:
        return onnx.load(str(path))
    except Exception as error:  # onnx raises DecodeError / google.protobuf errors
        raise EngineError(f'{path}: not a readable ONNX model ({error})') from error


def model_info_from_metadata(metadata: dict[str, str], source: str) -> ModelInfo:
    """`ModelInfo.from_metadata`, failing as an EngineError (the engine tools report those)."""
    try:
        return ModelInfo.from_metadata(metadata, source)
    except BackendError as error:
        raise EngineError(str(error)) from None


# ---------------------------------------------------------------------------------------------
# Shapes: optimisation profile and buffers (pure Python)
# ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class TensorSpec:
    """A network input or output: name, numpy dtype and shape (-1 for the batch axis until a buffer fixes it)."""

    name: str
    dtype: np.dtype
    shape: tuple[int, ...]
    is_input: bool

    @property
    def nbytes(self) -> int:
        """Bytes of a buffer of this shape (every axis fixed)."""
        if any(size < 0 for size in self.shape):
            raise EngineError(f'tensor {self.name!r} has no fixed shape: {self.shape}')
        return int(np.prod(self.shape)) * self.dtype.itemsize


@dataclass(frozen=True)
class BatchProfile:
    """The optimisation profile's batch sizes (TensorRT tunes kernels for `opt`)."""

    min: int = 1
    opt: int = 4
    max: int = 16

    def __post_init__(self):
        """Require 1 <= min <= opt <= max."""
        if not 1 <= self.min <= self.opt <= self.max:
            raise EngineError(f'batch profile must satisfy 1 <= min <= opt <= max, got '
                              f'min={self.min} opt={self.opt} max={self.max}')


def onnx_io_specs(model: onnx.ModelProto) -> list[TensorSpec]:
    """Inputs and outputs of the graph with symbolic/unknown dimensions as -1."""
    initializers = {init.name for init in model.graph.initializer}
    specs = []
    for values, is_input in ((model.graph.input, True), (model.graph.output, False)):
        for value in values:
            if value.name in initializers:
                continue
            tensor = value.type.tensor_type
            if tensor.elem_type not in _NUMPY_OF_ONNX:
                type_name = onnx.TensorProto.DataType.Name(tensor.elem_type)
                raise EngineError(f'tensor {value.name!r} has ONNX type {type_name}, which no backend buffer supports')
            shape = tuple(d.dim_value if d.HasField('dim_value') else -1 for d in tensor.shape.dim)
            specs.append(TensorSpec(value.name, np.dtype(_NUMPY_OF_ONNX[tensor.elem_type]), shape, is_input))
    return specs


def _check_batch_only_dynamic(spec: TensorSpec) -> None:
    if not spec.shape or spec.shape[0] != -1:
        raise EngineError(f'tensor {spec.name!r} has shape {spec.shape}: expected a dynamic batch axis first '
                          '(export with dynamic_axes on axis 0)')
    dynamic = [axis for axis, size in enumerate(spec.shape[1:], start=1) if size < 1]
    if dynamic:
        raise EngineError(f'tensor {spec.name!r} has shape {spec.shape}: only the batch axis may be dynamic, '
                          f'axes {dynamic} are too')


def profile_shapes(spec: TensorSpec, profile: BatchProfile) -> tuple[tuple[int, ...], ...]:
    """(min, opt, max) shapes of an input for `IOptimizationProfile.set_shape`."""
    _check_batch_only_dynamic(spec)
    return tuple((batch, *spec.shape[1:]) for batch in (profile.min, profile.opt, profile.max))


def plan_buffers(specs: list[TensorSpec], max_batch: int) -> list[TensorSpec]:
    """Buffers for every network I/O tensor at `max_batch` (validates batch-only dynamism)."""
    if max_batch < 1:
        raise EngineError(f'max batch must be >= 1, got {max_batch}')
    plans = []
    for spec in specs:
        _check_batch_only_dynamic(spec)
        plans.append(dataclasses.replace(spec, shape=(max_batch, *spec.shape[1:])))
    return plans
