"""TensorRT engine tooling: everything up to TensorRT runs here; the GPU parts skip without it.

The ONNX checks, profile shapes, buffer sizes, cache keys, sidecar checks and load/build
decisions run on a real exported tiny model and on small hand-made graphs. Building and running
an engine needs `tensorrt` and `pycuda` (a CUDA machine) and is skipped with the reason otherwise.
"""
from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from starpose_ros.core.backends.base import ModelInfo
from starpose_ros.core.backends.tensorrt_engine import (
    BatchProfile,
    BuildEnvironment,
    BuildOptions,
    EngineError,
    EngineMismatchError,
    TensorSpec,
    UnsupportedOnnxError,
    after_failed_load,
    check_onnx_for_tensorrt,
    choose_engine,
    engine_key,
    file_sha256,
    find_tensorrt_issues,
    fp32_onnx_nodes,
    load_calibration_windows,
    main,
    model_info_from_metadata,
    model_metadata,
    module_scope,
    onnx_io_specs,
    onnx_node_of_layer,
    plan_buffers,
    profile_shapes,
    read_sidecar,
    sidecar_path,
    trtexec_command,
    write_engine,
)

JETSON = BuildEnvironment('10.3.0', 'Orin', '8.7')
DESKTOP = BuildEnvironment('10.3.0', 'NVIDIA GeForce RTX 3090', '8.6')


@pytest.fixture(scope='module')
def tiny_onnx(tiny_model_files):
    """The core tests' real exported tiny StarPose model (random weights; test/core/conftest.py)."""
    return tiny_model_files[0]


@pytest.fixture(scope='module')
def tiny_model(tiny_onnx):
    return onnx.load(str(tiny_onnx))


def _graph_model(nodes, inputs, outputs, opset=18, initializers=()):
    graph = helper.make_graph(nodes, 'g', inputs, outputs, initializer=list(initializers))
    return helper.make_model(graph, opset_imports=[helper.make_opsetid('', opset)])


def _contract_like_model(path):
    """A small graph with the inference contract's I/O that TensorRT can build (Cast at both ends)."""
    lr = helper.make_tensor_value_info('lr_frames', TensorProto.UINT8, ['batch', 5, 8, 6, 3])
    sr = helper.make_tensor_value_info('sr_image', TensorProto.UINT8, ['batch', 8, 6, 3])
    keypoints = helper.make_tensor_value_info('keypoints', TensorProto.FLOAT, ['batch', 8, 6, 3])
    axes = helper.make_tensor('axes', TensorProto.INT64, [1], [1])
    nodes = [helper.make_node('Cast', ['lr_frames'], ['f'], to=TensorProto.FLOAT, name='cast_in'),
             helper.make_node('ReduceMean', ['f', 'axes'], ['keypoints'], keepdims=0, name='mean'),
             helper.make_node('Cast', ['keypoints'], ['sr_image'], to=TensorProto.UINT8, name='cast_out')]
    model = _graph_model(nodes, [lr], [sr, keypoints], initializers=[axes])
    for key, value in {'starpose.window': '5', 'starpose.lr_height': '8', 'starpose.lr_width': '6'}.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save(model, str(path))
    return path


# ---- ONNX operator check --------------------------------------------------------------------

def test_exported_model_passes_the_tensorrt_check(tiny_model):
    assert find_tensorrt_issues(tiny_model) == []


def test_unsupported_operator_and_custom_domain_are_named():
    x = helper.make_tensor_value_info('x', TensorProto.FLOAT, [4])
    y = helper.make_tensor_value_info('y', TensorProto.FLOAT, None)
    z = helper.make_tensor_value_info('z', TensorProto.FLOAT, None)
    nodes = [helper.make_node('Unique', ['x'], ['y'], name='dedupe'),
             helper.make_node('FancyOp', ['x'], ['z'], domain='com.example', name='fancy')]
    model = _graph_model(nodes, [x], [y, z])
    model.opset_import.append(helper.make_opsetid('com.example', 1))
    issues = {issue.node: issue for issue in find_tensorrt_issues(model)}
    assert issues['dedupe'].op_type == 'Unique' and 'not supported' in issues['dedupe'].reason
    assert 'com.example' in issues['fancy'].reason and 'plugin' in issues['fancy'].reason


def test_installed_parser_support_query_overrides_the_matrix():
    x = helper.make_tensor_value_info('x', TensorProto.FLOAT, [4])
    y = helper.make_tensor_value_info('y', TensorProto.FLOAT, [4])
    model = _graph_model([helper.make_node('Relu', ['x'], ['y'], name='act')], [x], [y])
    assert find_tensorrt_issues(model) == []
    assert [i.node for i in find_tensorrt_issues(model, supports_operator=lambda op: op != 'Relu')] == ['act']


def test_uint8_is_allowed_only_through_cast():
    lr = helper.make_tensor_value_info('lr', TensorProto.UINT8, [1, 4, 3])
    out = helper.make_tensor_value_info('out', TensorProto.FLOAT, None)
    cast_first = _graph_model([helper.make_node('Cast', ['lr'], ['f'], to=TensorProto.FLOAT, name='cast'),
                               helper.make_node('Transpose', ['f'], ['out'], perm=[0, 2, 1], name='perm')],
                              [lr], [out])
    assert find_tensorrt_issues(cast_first) == []
    transpose_first = _graph_model([helper.make_node('Transpose', ['lr'], ['t'], perm=[0, 2, 1], name='perm'),
                                    helper.make_node('Cast', ['t'], ['out'], to=TensorProto.FLOAT, name='cast')],
                                   [lr], [out])
    (issue,) = find_tensorrt_issues(transpose_first)
    assert issue.node == 'perm' and "'lr'" in issue.reason


def test_resize_restrictions_and_old_opset_are_reported():
    x = helper.make_tensor_value_info('x', TensorProto.FLOAT, [1, 1, 4, 4])
    y = helper.make_tensor_value_info('y', TensorProto.FLOAT, None)
    scales = helper.make_tensor('scales', TensorProto.FLOAT, [4], [1, 1, 2, 2])
    cubic = helper.make_node('Resize', ['x', '', 'scales'], ['y'], mode='cubic', name='up')
    assert find_tensorrt_issues(_graph_model([cubic], [x], [y], initializers=[scales])) == []
    antialiased = helper.make_node('Resize', ['x', '', 'scales'], ['y'], mode='linear', antialias=1, name='up')
    (issue,) = find_tensorrt_issues(_graph_model([antialiased], [x], [y], initializers=[scales]))
    assert 'antialias' in issue.reason
    relu = helper.make_node('Relu', ['x'], ['y'], name='act')
    assert [i.op_type for i in find_tensorrt_issues(_graph_model([relu], [x], [y], opset=7))] == ['opset']


def test_check_raises_with_file_and_nodes(tmp_path):
    x = helper.make_tensor_value_info('x', TensorProto.FLOAT, [4])
    y = helper.make_tensor_value_info('y', TensorProto.FLOAT, None)
    path = tmp_path / 'bad.onnx'
    onnx.save(_graph_model([helper.make_node('Unique', ['x'], ['y'], name='dedupe')], [x], [y]), str(path))
    with pytest.raises(UnsupportedOnnxError, match=r"(?s)bad\.onnx: 1 node.*Unique 'dedupe'"):
        check_onnx_for_tensorrt(path)


@pytest.mark.parametrize('content', [None, b'not an onnx file at all'])
def test_missing_or_corrupt_onnx_is_a_clear_error(tmp_path, content):
    path = tmp_path / 'model.onnx'
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(EngineError, match='model.onnx'):
        check_onnx_for_tensorrt(path)


# ---- FP32 attention layers ------------------------------------------------------------------

def test_attention_arithmetic_is_pinned_and_projections_are_not(tiny_model):
    pinned = set(fp32_onnx_nodes(tiny_model))
    nodes = {node.name: node for node in tiny_model.graph.node}
    scopes = {module_scope(nodes[name]) for name in pinned}
    assert scopes and all(s.endswith('.attention') or s.endswith('.attention.kernel') for s in scopes)
    ops = {nodes[name].op_type for name in pinned}
    assert {'MatMul', 'Div'} <= ops and 'Conv' not in ops
    depth = len({s.split('.attention')[0] for s in scopes})
    assert depth == 4  # the tiny config's transformer depth: every layer's attention is covered
    # per layer: K^T V and Q (K^T V) products, one normaliser division
    assert sum(nodes[n].op_type == 'MatMul' for n in pinned) == 2 * depth
    assert sum(nodes[n].op_type == 'Div' for n in pinned) == depth
    projections = [n for n, node in nodes.items() if module_scope(node).endswith(('.qkv', '.proj'))]
    assert projections and not pinned & set(projections)


def test_module_scope_reads_both_exporters_conventions():
    legacy = helper.make_node('MatMul', ['a', 'b'], ['c'], name='/sr_net/layers.0/attention/MatMul_1')
    assert module_scope(legacy) == 'sr_net.layers.0.attention'
    dynamo = helper.make_node('Div', ['a', 'b'], ['c'], name='node_div_1')
    entry = dynamo.metadata_props.add()
    entry.key = 'namespace'
    entry.value = (': m.StarPoseInference/sr_net: m.StarPoseSR/sr_net.layers.0.attention: '
                   'm.MultiScaleLinearAttention/div_1: aten.div.Tensor')
    assert module_scope(dynamo) == 'sr_net.layers.0.attention'


def test_tensorrt_layers_map_back_to_onnx_nodes():
    nodes = {'node_matmul', 'node_div_1'}
    assert onnx_node_of_layer('node_matmul', '', nodes) == 'node_matmul'
    assert onnx_node_of_layer('node_div_1_aux', '[ONNX Layer: node_div_1]', nodes) == 'node_div_1'
    assert onnx_node_of_layer('node_matmul_2', '[ONNX Layer: node_matmul_2]', nodes) is None


# ---- shapes and buffers ---------------------------------------------------------------------

def test_profile_and_buffers_from_the_exported_model(tiny_model):
    specs = {s.name: s for s in onnx_io_specs(tiny_model)}
    assert specs['lr_frames'] == TensorSpec('lr_frames', np.dtype(np.uint8), (-1, 5, 64, 48, 3), True)
    assert profile_shapes(specs['lr_frames'], BatchProfile(1, 4, 16)) == (
        (1, 5, 64, 48, 3), (4, 5, 64, 48, 3), (16, 5, 64, 48, 3))
    buffers = {b.name: b for b in plan_buffers(list(specs.values()), max_batch=8)}
    assert buffers['lr_frames'].nbytes == 8 * 5 * 64 * 48 * 3
    assert buffers['sr_image'].nbytes == 8 * 256 * 192 * 3 and buffers['sr_image'].dtype == np.uint8
    assert buffers['keypoints'].nbytes == 8 * 17 * 3 * 4 and not buffers['keypoints'].is_input
    assert buffers['keypoints'].batch_shape(3) == (3, 17, 3)
    info = model_info_from_metadata(model_metadata(tiny_model), 'tiny.onnx')
    assert info == ModelInfo(window=5, lr_height=64, lr_width=48, keypoint_layout=info.keypoint_layout,
                             target_frame='last')


@pytest.mark.parametrize('profile', [(0, 1, 4), (2, 1, 4), (1, 8, 4)])
def test_bad_batch_profiles_are_rejected(profile):
    with pytest.raises(EngineError, match='1 <= min <= opt <= max'):
        BatchProfile(*profile)


@pytest.mark.parametrize('shape, message', [((4, 5, 8, 6, 3), 'dynamic batch axis'),
                                            ((-1, 5, -1, 6, 3), r'axes \[2\]')])
def test_only_a_dynamic_batch_axis_is_accepted(shape, message):
    with pytest.raises(EngineError, match=message):
        profile_shapes(TensorSpec('lr_frames', np.dtype(np.uint8), shape, True), BatchProfile())


def test_metadata_without_window_names_the_source():
    with pytest.raises(EngineError, match=r"model\.engine: model metadata lacks 'starpose.window'"):
        model_info_from_metadata({'starpose.lr_height': '64'}, 'model.engine')


# ---- cache keys, sidecars, decisions --------------------------------------------------------

def test_cache_name_encodes_every_key_field():
    key = engine_key('ab' * 32, JETSON, BuildOptions('fp16', BatchProfile(1, 4, 8)))
    name = key.file_name('tiny')
    assert name.startswith('tiny.fp16.b8.sm87.trt10.3.0.') and name.endswith('.engine')
    variants = [engine_key('cd' * 32, JETSON, BuildOptions()), engine_key('ab' * 32, DESKTOP, BuildOptions()),
                engine_key('ab' * 32, BuildEnvironment('10.4.0', 'Orin', '8.7'), BuildOptions()),
                engine_key('ab' * 32, JETSON, BuildOptions('fp32')),
                engine_key('ab' * 32, JETSON, BuildOptions(profile=BatchProfile(1, 4, 32)))]
    assert len({v.digest for v in variants} | {engine_key('ab' * 32, JETSON, BuildOptions()).digest}) == 6


def test_int8_without_calibration_data_is_refused():
    with pytest.raises(EngineError, match='calibration_data'):
        BuildOptions('int8')


@pytest.fixture
def onnx_file(tmp_path):
    return _contract_like_model(tmp_path / 'model.onnx')


def _fake_plan_bytes():
    """Stand-in engine bytes: only the cache bookkeeping reads them here (TensorRT never does)."""
    return bytes(range(256)) * 8


def test_cache_miss_builds_then_hits_then_detects_damage(onnx_file, tmp_path):
    cache = tmp_path / 'cache'
    options = BuildOptions()
    first = choose_engine(onnx_file, None, cache, JETSON, options)
    assert first.action == 'build' and first.from_cache and first.path.parent == cache
    key = engine_key(file_sha256(onnx_file), JETSON, options)
    write_engine(first.path, _fake_plan_bytes(), key, {'starpose.window': '5'})
    assert json.loads(sidecar_path(first.path).read_text())['gpu_name'] == 'Orin'
    assert choose_engine(onnx_file, None, cache, JETSON, options).action == 'load'
    assert choose_engine(onnx_file, None, cache, JETSON, options, force_rebuild=True).action == 'build'
    other_gpu = choose_engine(onnx_file, None, cache, DESKTOP, options)
    assert other_gpu.action == 'build' and other_gpu.path != first.path
    first.path.write_bytes(_fake_plan_bytes()[:100])  # truncated
    damaged = choose_engine(onnx_file, None, cache, JETSON, options)
    assert damaged.action == 'build' and 'truncated' in damaged.reason


def test_engine_built_elsewhere_is_rejected_with_the_differences(onnx_file, tmp_path):
    engine = tmp_path / 'given.engine'
    write_engine(engine, _fake_plan_bytes(), engine_key(file_sha256(onnx_file), DESKTOP, BuildOptions()), {})
    with pytest.raises(EngineMismatchError) as error:
        choose_engine(onnx_file, engine, tmp_path, JETSON, BuildOptions())
    message = str(error.value)
    assert "gpu_name: engine has 'NVIDIA GeForce RTX 3090', here 'Orin'" in message
    assert "compute_capability: engine has '8.6', here '8.7'" in message
    assert 'force_engine_rebuild' in message
    rebuilt = choose_engine(onnx_file, engine, tmp_path, JETSON, BuildOptions(), force_rebuild=True)
    assert (rebuilt.action, rebuilt.path, rebuilt.from_cache) == ('build', engine, False)
    assert choose_engine(onnx_file, engine, tmp_path, DESKTOP, BuildOptions()).action == 'load'


def test_engine_for_another_model_or_without_sidecar_is_rejected(onnx_file, tmp_path):
    engine = tmp_path / 'given.engine'
    write_engine(engine, _fake_plan_bytes(), engine_key('0' * 64, JETSON, BuildOptions()), {})
    with pytest.raises(EngineMismatchError, match='onnx_sha256'):
        choose_engine(onnx_file, engine, tmp_path, JETSON, BuildOptions())
    assert choose_engine(None, engine, tmp_path, JETSON, BuildOptions()).action == 'load'  # engine alone
    sidecar_path(engine).unlink()
    with pytest.raises(EngineMismatchError, match='no metadata sidecar'):
        choose_engine(None, engine, tmp_path, JETSON, BuildOptions())
    with pytest.raises(EngineError, match='no ONNX model'):
        choose_engine(None, engine, tmp_path, JETSON, BuildOptions(), force_rebuild=True)


def test_missing_engine_is_built_from_onnx_or_refused(onnx_file, tmp_path):
    engine = tmp_path / 'new.engine'
    assert choose_engine(onnx_file, engine, tmp_path, JETSON, BuildOptions()).action == 'build'
    with pytest.raises(EngineError, match='does not exist but no ONNX model'):
        choose_engine(None, engine, tmp_path, JETSON, BuildOptions())
    with pytest.raises(EngineError, match='ONNX model not found'):
        choose_engine(tmp_path / 'absent.onnx', None, tmp_path, JETSON, BuildOptions())


def test_corrupt_sidecar_is_reported_not_raised(onnx_file, tmp_path):
    engine = tmp_path / 'given.engine'
    engine.write_bytes(_fake_plan_bytes())
    sidecar_path(engine).write_text('{not json')
    with pytest.raises(EngineError, match='unreadable engine metadata'):
        read_sidecar(engine)
    with pytest.raises(EngineMismatchError, match='unreadable engine metadata'):
        choose_engine(onnx_file, engine, tmp_path, JETSON, BuildOptions())


def test_failed_deserialisation_rebuilds_cache_entries_only(onnx_file, tmp_path):
    cached = choose_engine(onnx_file, None, tmp_path, JETSON, BuildOptions())
    assert after_failed_load(cached, onnx_file, False, 'corrupt').action == 'build'
    given = cached.__class__('load', tmp_path / 'given.engine', 'matches', from_cache=False)
    with pytest.raises(EngineError, match='could not deserialize.*force_engine_rebuild'):
        after_failed_load(given, onnx_file, False, 'corrupt')
    assert after_failed_load(given, onnx_file, True, 'corrupt').action == 'build'
    with pytest.raises(EngineError, match='no ONNX model'):
        after_failed_load(cached, None, True, 'corrupt')


# ---- trtexec, calibration data, command line ------------------------------------------------

def test_trtexec_equivalent(tiny_model):
    spec = next(s for s in onnx_io_specs(tiny_model) if s.is_input)
    layers = fp32_onnx_nodes(tiny_model)
    command = trtexec_command('m.onnx', 'm.engine', spec, BuildOptions('fp16', BatchProfile(1, 4, 16), 512), layers,
                              timing_cache='t.cache')
    assert '--minShapes=lr_frames:1x5x64x48x3' in command and '--maxShapes=lr_frames:16x5x64x48x3' in command
    assert {'--fp16', '--precisionConstraints=obey', '--memPoolSize=workspace:512', '--timingCacheFile=t.cache'} \
        <= set(command)
    assert next(c for c in command if c.startswith('--layerPrecisions=')).count(':fp32') == len(layers)
    fp32 = trtexec_command('m.onnx', 'm.engine', spec, BuildOptions('fp32'), layers)
    assert '--fp16' not in fp32 and not any(c.startswith('--layerPrecisions') for c in fp32)


def test_calibration_windows_are_checked(tmp_path):
    info = ModelInfo(window=5, lr_height=8, lr_width=6)
    good = tmp_path / 'good.npy'
    np.save(good, np.zeros((6, 5, 8, 6, 3), np.uint8))
    assert load_calibration_windows(good, info, batch=4).shape == (6, 5, 8, 6, 3)
    with pytest.raises(EngineError, match='fewer than one batch of 8'):
        load_calibration_windows(good, info, batch=8)
    wrong = tmp_path / 'wrong.npy'
    np.save(wrong, np.zeros((6, 5, 16, 12, 3), np.float32))
    with pytest.raises(EngineError, match=r'wrong\.npy: calibration windows are float32'):
        load_calibration_windows(wrong, info)


def test_check_only_command_prints_plan_and_trtexec(onnx_file, capsys):
    assert main(['--onnx', str(onnx_file), '--check-only', '--max-batch', '8', '--precision', 'fp32']) == 0
    out = capsys.readouterr().out
    assert 'every operator is supported' in out
    assert f'input  lr_frames: uint8 (8, 5, 8, 6, 3) = {8 * 5 * 8 * 6 * 3} bytes' in out
    assert 'trtexec' in out and '--maxShapes=lr_frames:8x5x8x6x3' in out


def test_command_reports_unsupported_graph(tmp_path, capsys):
    x = helper.make_tensor_value_info('x', TensorProto.FLOAT, [4])
    y = helper.make_tensor_value_info('y', TensorProto.FLOAT, None)
    path = tmp_path / 'bad.onnx'
    onnx.save(_graph_model([helper.make_node('Unique', ['x'], ['y'], name='dedupe')], [x], [y]), str(path))
    assert main(['--onnx', str(path), '--check-only']) == 1
    assert "Unique 'dedupe'" in capsys.readouterr().err


def test_check_only_on_the_exported_model(tiny_onnx, capsys):
    assert main(['--onnx', str(tiny_onnx), '--check-only']) == 0
    out = capsys.readouterr().out
    assert 'every operator is supported' in out and '--layerPrecisions=' in out


# ---- on a CUDA machine with TensorRT --------------------------------------------------------

@pytest.fixture
def trt_stack():
    trt = pytest.importorskip('tensorrt', reason='TensorRT (tensorrt Python package) is not installed here')
    pytest.importorskip('pycuda.driver', reason='pycuda is not installed here')
    return trt


@pytest.mark.gpu
def test_engine_builds_runs_and_is_reused(trt_stack, tiny_onnx, tmp_path):
    import onnxruntime as ort

    from starpose_ros.core.backends.tensorrt_backend import TensorRTBackend
    frames = np.random.default_rng(0).integers(0, 256, (3, 5, 64, 48, 3), dtype=np.uint8)
    expected = ort.InferenceSession(str(tiny_onnx), providers=['CPUExecutionProvider']).run(
        ['sr_image', 'keypoints'], {'lr_frames': frames})
    with TensorRTBackend(tiny_onnx, cache_dir=tmp_path, precision='fp32', max_batch=4) as backend:
        output = backend.infer(frames)
        engine_path = backend.engine_path
    assert np.abs(output.sr_images.astype(int) - expected[0]).max() <= 2
    np.testing.assert_allclose(output.keypoints[..., :2], expected[1][..., :2], atol=1.0)
    built_at = read_sidecar(engine_path)['built_at']
    with TensorRTBackend(tiny_onnx, cache_dir=tmp_path, precision='fp32', max_batch=4) as backend:
        assert backend.engine_path == engine_path and backend.infer(frames[:1]).keypoints.shape == (1, 17, 3)
    assert read_sidecar(engine_path)['built_at'] == built_at  # loaded, not rebuilt


@pytest.mark.gpu
def test_corrupt_cached_engine_is_rebuilt(trt_stack, tiny_onnx, tmp_path):
    from starpose_ros.core.backends.tensorrt_backend import TensorRTBackend
    with TensorRTBackend(tiny_onnx, cache_dir=tmp_path, precision='fp16', max_batch=2) as backend:
        engine_path = backend.engine_path
    engine_path.write_bytes(b'garbage')
    with TensorRTBackend(tiny_onnx, cache_dir=tmp_path, precision='fp16', max_batch=2) as backend:
        assert backend.infer(np.zeros((2, 5, 64, 48, 3), np.uint8)).sr_images.shape == (2, 256, 192, 3)
