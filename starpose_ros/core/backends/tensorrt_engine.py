"""Build, cache and load TensorRT 10 engines of the StarPose inference graph.

Everything that can be decided without a GPU is a plain function here (ONNX operator check,
optimisation-profile shapes, buffer sizes, cache keys and file names, sidecar verification,
which engine to load or build, the trtexec equivalent), so it is tested on any machine. Only
`probe_environment`, `build_serialized_engine`, `load_or_build_engine` and the INT8 calibrator
import `tensorrt` / `pycuda`; they follow the TensorRT 10 Python API (explicit batch is the only
mode, `build_serialized_network`, the named-tensor API) and nothing older.

Precision: FP16 (default) keeps every float compute layer of the linear attention (kernel,
K^T V, the normaliser and the division) in FP32 with layer precision constraints and
`OBEY_PRECISION_CONSTRAINTS`; the layers are found through the PyTorch module path each ONNX
node was exported from, see `DEFAULT_FP32_SCOPE_PATTERN` and `module_scope`.

Console script: `starpose-build-engine` (see `main` and docs/tensorrt.md).
"""
from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import logging
import os
import re
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx

from starpose_ros.core.backends.base import BackendError, ModelInfo

LOG = logging.getLogger(__name__)

PRECISIONS = ('fp32', 'fp16', 'int8')
ENGINE_SUFFIX = '.engine'
SIDECAR_SUFFIX = '.json'
METADATA_PREFIX = 'starpose.'
DEFAULT_CACHE_DIR = Path(os.environ.get('XDG_CACHE_HOME', Path.home() / '.cache')) / 'starpose' / 'engines'
# Module scopes whose float arithmetic stays FP32 under FP16/INT8: the linear attention itself
# (K^T V, Q (K^T V), the normaliser division) and its kernel phi. Matched against the module path
# of each ONNX node (see `module_scope`), e.g. "sr_net.layers.0.attention" and
# "sr_net.layers.0.attention.kernel"; the qkv/proj projections and aggregation convs stay FP16.
DEFAULT_FP32_SCOPE_PATTERN = r'\.attention(\.kernel)?$'

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

# Compute categories whose float layers are pinned to FP32 inside the attention scope, by the
# ONNX op type (for reports and trtexec) and by the TensorRT LayerType name (for the builder).
FP32_ONNX_OPS = frozenset({'MatMul', 'Gemm', 'Einsum', 'ReduceSum', 'ReduceMean', 'Div', 'Mul', 'Add', 'Sub',
                           'Reciprocal', 'Relu', 'LeakyRelu', 'Where', 'Clip', 'Max', 'Min', 'Pow', 'Sqrt',
                           'Softmax'})
FP32_TRT_LAYER_TYPES = frozenset({'MATRIX_MULTIPLY', 'EINSUM', 'REDUCE', 'ELEMENTWISE', 'UNARY', 'ACTIVATION',
                                  'SELECT', 'SOFTMAX'})

_NUMPY_OF_ONNX = {onnx.TensorProto.UINT8: np.uint8, onnx.TensorProto.FLOAT: np.float32,
                  onnx.TensorProto.FLOAT16: np.float16, onnx.TensorProto.INT32: np.int32,
                  onnx.TensorProto.INT64: np.int64, onnx.TensorProto.BOOL: np.bool_}


class EngineError(BackendError):
    """An engine could not be checked, built or loaded; the message says which file and why."""


class UnsupportedOnnxError(EngineError):
    """The ONNX graph uses something the TensorRT 10 ONNX parser cannot build."""


class EngineMismatchError(EngineError):
    """An engine file was built for another model, GPU or TensorRT version."""


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
        listed = '\n  '.join(str(issue) for issue in issues[:max_listed])
        more = f'\n  ... and {len(issues) - max_listed} more' if len(issues) > max_listed else ''
        raise UnsupportedOnnxError(f'{onnx_path}: {len(issues)} node(s) TensorRT 10 cannot build:\n  {listed}{more}\n'
                                   'Re-export with supported operators (see docs/tensorrt.md).')
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


def model_metadata(model: onnx.ModelProto) -> dict[str, str]:
    """The `starpose.*` metadata_props the exporter wrote (window, LR size, layout, ...)."""
    return {p.key: p.value for p in model.metadata_props if p.key.startswith(METADATA_PREFIX)}


def model_info_from_metadata(metadata: dict[str, str], source: str) -> ModelInfo:
    """Build ModelInfo from `starpose.*` metadata, naming `source` if a key is missing."""
    try:
        return ModelInfo(window=int(metadata['starpose.window']),
                         lr_height=int(metadata['starpose.lr_height']),
                         lr_width=int(metadata['starpose.lr_width']),
                         keypoint_layout=metadata.get('starpose.keypoint_layout', 'coco'),
                         target_frame=metadata.get('starpose.target_frame', 'last'))
    except KeyError as missing:
        raise EngineError(f'{source}: model metadata lacks {missing.args[0]!r}') from None
    except ValueError as error:
        raise EngineError(f'{source}: bad model metadata ({error})') from None


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


def fp32_onnx_nodes(model: onnx.ModelProto, pattern: str = DEFAULT_FP32_SCOPE_PATTERN) -> list[str]:
    """Names of the float-arithmetic ONNX nodes the builder keeps in FP32 (the linear attention)."""
    return [node.name for node in model.graph.node
            if node.op_type in FP32_ONNX_OPS and re.search(pattern, module_scope(node))]


def onnx_node_of_layer(layer_name: str, layer_metadata: str, onnx_nodes: set[str]) -> str | None:
    """The ONNX node a TensorRT layer came from: its name, or the parser's "[ONNX Layer: name]" tag."""
    if layer_name in onnx_nodes:
        return layer_name
    for tagged in re.findall(r'\[ONNX Layer: ([^\]]+)\]', layer_metadata or ''):
        if tagged in onnx_nodes:
            return tagged
    return None


# ---------------------------------------------------------------------------------------------
# Shapes: optimisation profile and buffers (pure Python)
# ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class TensorSpec:
    """A network input or output: name, numpy dtype and shape with -1 for the batch axis."""

    name: str
    dtype: np.dtype
    shape: tuple[int, ...]
    is_input: bool


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


@dataclass(frozen=True)
class BufferSpec:
    """A host/device buffer sized once for the largest batch."""

    name: str
    dtype: np.dtype
    max_shape: tuple[int, ...]
    is_input: bool

    @property
    def nbytes(self) -> int:
        """Bytes of the buffer at the maximum batch."""
        return int(np.prod(self.max_shape)) * self.dtype.itemsize

    def batch_shape(self, batch: int) -> tuple[int, ...]:
        """Shape of the used part of the buffer for `batch` windows."""
        return (batch, *self.max_shape[1:])


def plan_buffers(specs: list[TensorSpec], max_batch: int) -> list[BufferSpec]:
    """Buffers for every network I/O tensor at `max_batch` (validates batch-only dynamism)."""
    if max_batch < 1:
        raise EngineError(f'max batch must be >= 1, got {max_batch}')
    plans = []
    for spec in specs:
        _check_batch_only_dynamic(spec)
        plans.append(BufferSpec(spec.name, spec.dtype, (max_batch, *spec.shape[1:]), spec.is_input))
    return plans


# ---------------------------------------------------------------------------------------------
# Engine cache: keys, file names, sidecar metadata, decisions (pure Python)
# ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class BuildEnvironment:
    """What an engine is only valid for besides the model: TensorRT version and the GPU."""

    tensorrt_version: str
    gpu_name: str
    compute_capability: str  # "8.7"


@dataclass(frozen=True)
class BuildOptions:
    """How to build: precision, batch profile, workspace and the FP32-pinned layer pattern."""

    precision: str = 'fp16'
    profile: BatchProfile = BatchProfile()
    workspace_mib: int = 1024
    fp32_scope_pattern: str = DEFAULT_FP32_SCOPE_PATTERN
    calibration_data: str | None = None  # .npy uint8 (N, T, h, w, 3) LR windows, INT8 only

    def __post_init__(self):
        """Reject an unknown precision or an INT8 build without calibration data."""
        if self.precision not in PRECISIONS:
            raise EngineError(f'unknown precision {self.precision!r}; expected one of {PRECISIONS}')
        if self.precision == 'int8' and not self.calibration_data:
            raise EngineError('precision int8 needs calibration_data: a .npy of real LR windows '
                              '(starpose-bag-eval --save-calibration writes one)')
        if self.workspace_mib < 1:
            raise EngineError(f'workspace_mib must be >= 1, got {self.workspace_mib}')


@dataclass(frozen=True)
class EngineKey:
    """Everything an engine is built for; equal keys mean an engine can be reused."""

    onnx_sha256: str
    tensorrt_version: str
    gpu_name: str
    compute_capability: str
    precision: str
    min_batch: int
    opt_batch: int
    max_batch: int

    @property
    def digest(self) -> str:
        """Short stable hash of all fields."""
        blob = json.dumps(dataclasses.asdict(self), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:12]

    def file_name(self, stem: str) -> str:
        """Readable cache file name: model, precision, GPU architecture, TensorRT, digest."""
        sm = self.compute_capability.replace('.', '')
        return (f'{stem}.{self.precision}.b{self.max_batch}.sm{sm}.trt{self.tensorrt_version}.{self.digest}'
                f'{ENGINE_SUFFIX}')


# Fields an engine built elsewhere may not differ in (precision and profile are the engine's own).
PORTABILITY_FIELDS = ('tensorrt_version', 'gpu_name', 'compute_capability')


def file_sha256(path) -> str:
    """SHA-256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, 'rb') as stream:
        for chunk in iter(lambda: stream.read(1 << 20), b''):
            digest.update(chunk)
    return digest.hexdigest()


def engine_key(onnx_sha256: str, env: BuildEnvironment, options: BuildOptions) -> EngineKey:
    """The cache key of building the ONNX file with `options` in `env`."""
    return EngineKey(onnx_sha256, env.tensorrt_version, env.gpu_name, env.compute_capability, options.precision,
                     options.profile.min, options.profile.opt, options.profile.max)


def sidecar_path(engine_path) -> Path:
    """The JSON metadata file next to an engine (`model.engine` -> `model.engine.json`)."""
    return Path(f'{engine_path}{SIDECAR_SUFFIX}')


def _atomic_write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=path.name, suffix='.tmp', dir=path.parent)
    try:
        with os.fdopen(handle, 'wb') as stream:
            stream.write(data)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def write_engine(engine_path, engine_bytes: bytes, key: EngineKey, metadata: dict[str, str],
                 buffers: list[BufferSpec] | None = None) -> Path:
    """Write the engine and its sidecar atomically (a crash never leaves a half file behind)."""
    engine_path = Path(engine_path)
    _atomic_write(engine_path, bytes(engine_bytes))
    sidecar = {**dataclasses.asdict(key), 'engine_sha256': hashlib.sha256(bytes(engine_bytes)).hexdigest(),
               'model_metadata': metadata, 'built_at': time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime()),
               'io': [{'name': b.name, 'dtype': b.dtype.name, 'max_shape': list(b.max_shape), 'input': b.is_input}
                      for b in buffers or []]}
    _atomic_write(sidecar_path(engine_path), json.dumps(sidecar, indent=2).encode())
    return engine_path


def read_sidecar(engine_path) -> dict:
    """Read an engine's sidecar, raising EngineError if it is missing or not JSON."""
    path = sidecar_path(engine_path)
    if not path.is_file():
        raise EngineError(f'{engine_path}: no metadata sidecar {path.name}; cannot tell what it was built for')
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise EngineError(f'{path}: unreadable engine metadata ({error})') from error
    if not isinstance(data, dict):
        raise EngineError(f'{path}: engine metadata must be a JSON object')
    return data


def engine_problems(engine_path, expected: dict) -> list[str]:
    """Why the engine at `engine_path` cannot be used for `expected` fields (empty: usable).

    Checks that the file exists, its sidecar is readable, the file hash matches the sidecar
    (truncated or overwritten files) and every expected field (model hash, TensorRT, GPU, ...).
    """
    path = Path(engine_path)
    if not path.is_file():
        return [f'{path} does not exist']
    try:
        sidecar = read_sidecar(path)
    except EngineError as error:
        return [str(error)]
    problems = []
    if sidecar.get('engine_sha256') != file_sha256(path):
        problems.append(f'{path}: file content does not match its metadata (truncated or replaced)')
    for field, value in expected.items():
        found = sidecar.get(field)
        if found != value:
            problems.append(f'{field}: engine has {found!r}, here {value!r}')
    return problems


@dataclass(frozen=True)
class EngineChoice:
    """What `load_or_build_engine` will do: `load` or `build` the engine at `path`, and why."""

    action: str
    path: Path
    reason: str
    from_cache: bool


def choose_engine(onnx_path, engine_path, cache_dir, env: BuildEnvironment, options: BuildOptions,
                  force_rebuild: bool = False, onnx_sha256: str | None = None) -> EngineChoice:
    """Decide between loading an engine and building one; raise when neither is allowed.

    * `engine_path` given: that file is the engine. It is loaded if its sidecar says it was built
      here (same TensorRT, GPU, compute capability, and the same ONNX when one is given); an
      engine built elsewhere raises EngineMismatchError unless `force_rebuild`, which rebuilds it
      from `onnx_path` into the same path. A missing file is built from `onnx_path`.
    * otherwise the engine lives in `cache_dir` under a name keyed by ONNX hash, TensorRT,
      GPU, compute capability, precision and profile: a valid entry is loaded, a missing or
      damaged one (re)built. `force_rebuild` always rebuilds.
    """
    if onnx_path is None and engine_path is None:
        raise EngineError('neither an ONNX model nor an engine file was given')
    if onnx_path is not None and onnx_sha256 is None:
        if not Path(onnx_path).is_file():
            raise EngineError(f'ONNX model not found: {onnx_path}')
        onnx_sha256 = file_sha256(onnx_path)
    if engine_path is not None:
        path = Path(engine_path)
        expected = {field: getattr(env, field) for field in PORTABILITY_FIELDS}
        if onnx_sha256 is not None:
            expected['onnx_sha256'] = onnx_sha256
        if force_rebuild:
            _require_onnx(onnx_path, path, 'force_engine_rebuild is set')
            return EngineChoice('build', path, 'force_engine_rebuild is set', from_cache=False)
        if not path.exists():
            _require_onnx(onnx_path, path, 'the engine file does not exist')
            return EngineChoice('build', path, 'engine file does not exist yet', from_cache=False)
        problems = engine_problems(path, expected)
        if problems:
            hint = (f'set force_engine_rebuild to rebuild it from {onnx_path}' if onnx_path is not None
                    else 'give the ONNX model and set force_engine_rebuild to rebuild it here')
            raise EngineMismatchError(f'{path} cannot be used on this machine:\n  ' + '\n  '.join(problems)
                                      + f'\n{hint}.')
        return EngineChoice('load', path, 'engine metadata matches this machine', from_cache=False)
    key = engine_key(onnx_sha256, env, options)
    path = Path(cache_dir) / key.file_name(Path(onnx_path).stem)
    if force_rebuild:
        return EngineChoice('build', path, 'force_engine_rebuild is set', from_cache=True)
    if not path.exists():
        return EngineChoice('build', path, 'no cached engine for this model, GPU, TensorRT and precision', True)
    problems = engine_problems(path, dataclasses.asdict(key))
    if problems:
        return EngineChoice('build', path, 'cached engine is damaged: ' + '; '.join(problems), from_cache=True)
    return EngineChoice('load', path, 'cached engine matches', from_cache=True)


def _require_onnx(onnx_path, engine_path, why: str) -> None:
    if onnx_path is None:
        raise EngineError(f'{engine_path}: {why} but no ONNX model was given to build from')


def after_failed_load(choice: EngineChoice, onnx_path, force_rebuild: bool, reason: str) -> EngineChoice:
    """What to do when TensorRT could not deserialize the chosen engine.

    A cache entry is ours to rebuild; a user-given engine is only overwritten with
    `force_rebuild`. Without an ONNX model there is nothing to rebuild from: EngineError.
    """
    message = f'{choice.path}: TensorRT could not deserialize the engine ({reason})'
    if onnx_path is None:
        raise EngineError(f'{message}; no ONNX model was given to rebuild from')
    if choice.from_cache or force_rebuild:
        return EngineChoice('build', choice.path, message, choice.from_cache)
    raise EngineError(f'{message}; set force_engine_rebuild to rebuild it from {onnx_path}')


def trtexec_command(onnx_path, engine_path, input_spec: TensorSpec, options: BuildOptions,
                    fp32_layers: list[str] = (), timing_cache=None, calibration_cache=None) -> list[str]:
    """The trtexec command line that builds the same engine as `build_serialized_engine`."""
    def dims(shape):
        return 'x'.join(str(s) for s in shape)
    shapes = profile_shapes(input_spec, options.profile)
    command = ['trtexec', f'--onnx={onnx_path}', f'--saveEngine={engine_path}',
               *(f'--{which}Shapes={input_spec.name}:{dims(shape)}'
                 for which, shape in zip(('min', 'opt', 'max'), shapes, strict=True)),
               f'--memPoolSize=workspace:{options.workspace_mib}']
    if options.precision in ('fp16', 'int8'):
        command.append('--fp16')
    if options.precision == 'int8':
        command.append('--int8')
        if calibration_cache:
            command.append(f'--calib={calibration_cache}')
    if options.precision != 'fp32' and fp32_layers:
        command += ['--precisionConstraints=obey', '--layerPrecisions=' + ','.join(f'{n}:fp32' for n in fp32_layers),
                    '--layerOutputTypes=' + ','.join(f'{n}:fp32' for n in fp32_layers)]
    if timing_cache:
        command.append(f'--timingCacheFile={timing_cache}')
    return command


def timing_cache_path(cache_dir, env: BuildEnvironment) -> Path:
    """One timing cache per TensorRT version and GPU, shared by all models built there."""
    sm = env.compute_capability.replace('.', '')
    return Path(cache_dir) / f'timing.sm{sm}.trt{env.tensorrt_version}.cache'


def load_calibration_windows(path, model_info: ModelInfo, batch: int = 1) -> np.ndarray:
    """Load INT8 calibration LR windows (uint8 (N, T, h, w, 3)), at least one `batch` of them."""
    path = Path(path)
    if not path.is_file():
        raise EngineError(f'calibration data not found: {path}')
    try:
        windows = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as error:
        raise EngineError(f'{path}: not a .npy array of LR windows ({error})') from error
    if windows.dtype != np.uint8 or windows.ndim != 5 or windows.shape[1:] != model_info.input_shape:
        raise EngineError(f'{path}: calibration windows are {windows.dtype} {windows.shape}, expected uint8 '
                          f'(N, {", ".join(str(s) for s in model_info.input_shape)})')
    if len(windows) < batch:
        raise EngineError(f'{path}: {len(windows)} calibration windows, fewer than one batch of {batch} '
                          '(TensorRT calibrates at the profile\'s opt batch)')
    return windows


# ---------------------------------------------------------------------------------------------
# TensorRT / pycuda (only these need the GPU stack)
# ---------------------------------------------------------------------------------------------

def import_tensorrt():
    """Import tensorrt (>= 10), raising EngineError with a set-up hint when it is absent."""
    try:
        import tensorrt as trt
    except ImportError as error:
        raise EngineError('the TensorRT backend needs the tensorrt Python package (TensorRT 10; on Jetson it '
                          'comes with JetPack 6): see docs/tensorrt.md') from error
    if int(trt.__version__.split('.')[0]) < 10:
        raise EngineError(f'TensorRT {trt.__version__} is too old: the engine code uses the TensorRT 10 API')
    return trt


def import_pycuda():
    """Import pycuda.driver and initialise the driver, with a set-up hint when absent."""
    try:
        import pycuda.driver as cuda
    except ImportError as error:
        raise EngineError('the TensorRT backend needs pycuda (pip install pycuda): see docs/tensorrt.md') from error
    cuda.init()
    return cuda


def probe_environment(device_index: int = 0) -> BuildEnvironment:
    """TensorRT version, GPU name and compute capability of `device_index` on this machine."""
    trt = import_tensorrt()
    cuda = import_pycuda()
    if device_index >= cuda.Device.count():
        raise EngineError(f'CUDA device {device_index} does not exist ({cuda.Device.count()} found)')
    device = cuda.Device(device_index)
    major, minor = device.compute_capability()
    return BuildEnvironment(trt.__version__, device.name(), f'{major}.{minor}')


def _trt_logger(trt, verbose: bool):
    return trt.Logger(trt.Logger.VERBOSE if verbose else trt.Logger.WARNING)


def _pin_layers_fp32(trt, network, onnx_nodes: set[str]) -> list[str]:
    """Set FP32 precision and output types on the layers built from `onnx_nodes`; return them."""
    float_types = (trt.float32, trt.float16)
    pinned = []
    for index in range(network.num_layers):
        layer = network.get_layer(index)
        if layer.type.name not in FP32_TRT_LAYER_TYPES:
            continue
        if onnx_node_of_layer(layer.name, getattr(layer, 'metadata', ''), onnx_nodes) is None:
            continue
        if not all(layer.get_output(i).dtype in float_types for i in range(layer.num_outputs)):
            continue  # comparisons and shape arithmetic keep their types
        layer.precision = trt.float32
        for i in range(layer.num_outputs):
            layer.set_output_type(i, trt.float32)
        pinned.append(layer.name)
    return pinned


def _make_calibrator(trt, cuda, windows: np.ndarray, batch: int, cache_file: Path):
    """An entropy calibrator feeding real LR windows (TensorRT uses the profile's opt batch)."""
    class WindowCalibrator(trt.IInt8EntropyCalibrator2):
        def __init__(self):
            super().__init__()
            self._next = 0
            self._device = cuda.mem_alloc(batch * windows[0].nbytes)

        def get_batch_size(self):
            return batch

        def get_batch(self, names):
            if self._next + batch > len(windows):
                return None
            chunk = np.ascontiguousarray(windows[self._next:self._next + batch])
            cuda.memcpy_htod(self._device, chunk)
            self._next += batch
            return [int(self._device)]

        def read_calibration_cache(self):
            return cache_file.read_bytes() if cache_file.is_file() else None

        def write_calibration_cache(self, cache):
            _atomic_write(cache_file, bytes(cache))

    return WindowCalibrator()


def build_serialized_engine(onnx_path, options: BuildOptions, cache_dir, env: BuildEnvironment,
                            verbose: bool = False) -> tuple[bytes, ModelInfo, list[BufferSpec], dict[str, str]]:
    """Parse the ONNX file and build a serialized engine with TensorRT 10.

    Returns the plan bytes, the model info and the buffer plan (for the sidecar) and the
    model metadata. Reuses and updates the timing cache in `cache_dir`.
    """
    trt = import_tensorrt()
    logger = _trt_logger(trt, verbose)
    builder = trt.Builder(logger)
    network = builder.create_network(0)  # TensorRT 10: explicit batch is the only mode
    parser = trt.OnnxParser(network, logger)
    model = check_onnx_for_tensorrt(onnx_path, supports_operator=parser.supports_operator)
    metadata = model_metadata(model)
    info = model_info_from_metadata(metadata, str(onnx_path))
    specs = onnx_io_specs(model)
    if not parser.parse_from_file(str(onnx_path)):
        errors = '\n  '.join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise UnsupportedOnnxError(f'{onnx_path}: the TensorRT ONNX parser failed:\n  {errors}')

    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, options.workspace_mib << 20)
    profile = builder.create_optimization_profile()
    for spec in specs:
        if spec.is_input:
            minimum, optimum, maximum = profile_shapes(spec, options.profile)
            profile.set_shape(spec.name, minimum, optimum, maximum)
    config.add_optimization_profile(profile)

    if options.precision in ('fp16', 'int8'):
        if not builder.platform_has_fast_fp16:
            LOG.warning('this GPU has no fast FP16; the engine will be slow')
        config.set_flag(trt.BuilderFlag.FP16)
        config.set_flag(trt.BuilderFlag.OBEY_PRECISION_CONSTRAINTS)
        fp32_nodes = set(fp32_onnx_nodes(model, options.fp32_scope_pattern))
        pinned = _pin_layers_fp32(trt, network, fp32_nodes)
        if not pinned:
            raise EngineError(f'{onnx_path}: no layer comes from a module matching {options.fp32_scope_pattern!r}; '
                              'the linear attention would run in reduced precision. Pass --fp32-scope with a '
                              'pattern matching the attention module path.')
        LOG.info('kept %d attention layers in FP32', len(pinned))
    calibrator = None
    if options.precision == 'int8':
        cuda = import_pycuda()
        windows = load_calibration_windows(options.calibration_data, info, options.profile.opt)
        cache_file = Path(cache_dir) / f'{Path(onnx_path).stem}.{file_sha256(onnx_path)[:12]}.calib'
        calibrator = _make_calibrator(trt, cuda, windows, options.profile.opt, cache_file)
        config.set_flag(trt.BuilderFlag.INT8)
        config.int8_calibrator = calibrator  # calibrates with the profile's opt shape

    timing_file = timing_cache_path(cache_dir, env)
    timing_cache = config.create_timing_cache(timing_file.read_bytes() if timing_file.is_file() else b'')
    config.set_timing_cache(timing_cache, ignore_mismatch=False)

    started = time.perf_counter()
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise EngineError(f'{onnx_path}: TensorRT failed to build the engine (see the log above; '
                          'a larger --workspace-mib or --verbose may help)')
    LOG.info('built %s engine in %.0f s', options.precision, time.perf_counter() - started)
    _atomic_write(timing_file, bytes(config.get_timing_cache().serialize()))
    return bytes(serialized), info, plan_buffers(specs, options.profile.max), metadata


def load_or_build_engine(runtime, onnx_path, engine_path, cache_dir, options: BuildOptions,
                         force_rebuild: bool = False, env: BuildEnvironment | None = None, verbose: bool = False):
    """Return `(engine, engine_file, sidecar)`, building and caching the engine when needed.

    Never lets a bad engine file crash the caller: failures raise EngineError with the reason.
    """
    env = env or probe_environment()
    onnx_sha = file_sha256(onnx_path) if onnx_path is not None else None
    choice = choose_engine(onnx_path, engine_path, cache_dir, env, options, force_rebuild, onnx_sha)
    LOG.info('TensorRT engine %s: %s (%s)', choice.path, choice.action, choice.reason)
    if choice.action == 'load':
        engine = _deserialize(runtime, choice.path)
        if engine is not None:
            return engine, choice.path, read_sidecar(choice.path)
        choice = after_failed_load(choice, onnx_path, force_rebuild,
                                   'built by another TensorRT version, or the file is corrupt')
        LOG.warning('%s; rebuilding', choice.reason)
    serialized, _info, buffers, metadata = build_serialized_engine(onnx_path, options, cache_dir, env, verbose)
    write_engine(choice.path, serialized, engine_key(onnx_sha, env, options), metadata, buffers)
    engine = runtime.deserialize_cuda_engine(serialized)
    if engine is None:
        raise EngineError(f'{choice.path}: TensorRT could not load the engine it just built')
    return engine, choice.path, read_sidecar(choice.path)


def _deserialize(runtime, path: Path):
    try:
        return runtime.deserialize_cuda_engine(path.read_bytes())
    except (OSError, RuntimeError) as error:  # some releases raise instead of returning None
        LOG.warning('%s: %s', path, error)
        return None


# ---------------------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------------------

def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog='starpose-build-engine',
        description='Build (or reuse from the cache) a TensorRT 10 engine of an exported StarPose ONNX model.')
    parser.add_argument('--onnx', required=True, help='exported model (starpose-export)')
    parser.add_argument('--engine', help='engine file to write/check (default: keyed name in --cache-dir)')
    parser.add_argument('--cache-dir', default=str(DEFAULT_CACHE_DIR), help='engine and timing cache folder')
    parser.add_argument('--precision', choices=PRECISIONS, default='fp16')
    parser.add_argument('--min-batch', type=int, default=1)
    parser.add_argument('--opt-batch', type=int, default=4)
    parser.add_argument('--max-batch', type=int, default=16, help='most tracks per frame (node max_tracks)')
    parser.add_argument('--workspace-mib', type=int, default=1024)
    parser.add_argument('--fp32-scope', default=DEFAULT_FP32_SCOPE_PATTERN,
                        help='regex of PyTorch module paths whose arithmetic stays FP32 under fp16/int8')
    parser.add_argument('--calibration-data', help='INT8: .npy uint8 (N, T, h, w, 3) real LR windows')
    parser.add_argument('--force', action='store_true', help='rebuild even if a matching engine exists')
    parser.add_argument('--check-only', action='store_true',
                        help='check the ONNX graph and print the plan and trtexec command; needs no TensorRT')
    parser.add_argument('--verbose', action='store_true')
    return parser


def main(argv=None) -> int:
    """Entry point of `starpose-build-engine`."""
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format='%(levelname)s %(message)s')
    try:
        options = BuildOptions(args.precision, BatchProfile(args.min_batch, args.opt_batch, args.max_batch),
                               args.workspace_mib, args.fp32_scope, args.calibration_data)
        if args.check_only:
            model = check_onnx_for_tensorrt(args.onnx)
            info = model_info_from_metadata(model_metadata(model), args.onnx)
            specs = onnx_io_specs(model)
            fp32_layers = fp32_onnx_nodes(model, options.fp32_scope_pattern)
            print(f'{args.onnx}: every operator is supported by TensorRT 10; model {info}')
            for buffer in plan_buffers(specs, options.profile.max):
                kind = 'input ' if buffer.is_input else 'output'
                print(f'  {kind} {buffer.name}: {buffer.dtype.name} {buffer.max_shape} = {buffer.nbytes} bytes')
            print(f'  {len(fp32_layers)} attention layers kept in FP32 under {options.precision}')
            engine = args.engine or f'{Path(args.onnx).with_suffix("")}.{options.precision}{ENGINE_SUFFIX}'
            command = trtexec_command(args.onnx, engine, next(s for s in specs if s.is_input), options, fp32_layers)
            print('trtexec equivalent:\n  ' + ' \\\n    '.join(command))
            return 0
        trt = import_tensorrt()
        runtime = trt.Runtime(_trt_logger(trt, args.verbose))
        _engine, path, sidecar = load_or_build_engine(runtime, args.onnx, args.engine, args.cache_dir, options,
                                                      args.force, verbose=args.verbose)
        print(f'engine: {path}\nmetadata: {sidecar_path(path)}\n'
              f'  {sidecar["precision"]}, batch {sidecar["min_batch"]}..{sidecar["max_batch"]}, '
              f'{sidecar["gpu_name"]} (sm {sidecar["compute_capability"]}), TensorRT {sidecar["tensorrt_version"]}')
        return 0
    except EngineError as error:
        print(f'starpose-build-engine: error: {error}', file=sys.stderr)
        return 1


if __name__ == '__main__':
    sys.exit(main())
