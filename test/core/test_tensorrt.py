"""TensorRT engine tooling: everything up to TensorRT runs here; the GPU parts skip without it.

The version policy, ONNX checks, profile shapes, buffer sizes, cache keys, precision graphs,
sidecar checks and load/build decisions run on a real exported tiny model and on small
hand-made graphs. Building and running an engine needs `tensorrt` and `pycuda` (a CUDA
machine) and is skipped with the reason otherwise.
"""
from __future__ import annotations

import importlib.util

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from starpose_model.contract import onnx_metadata
from starpose_model.precision import graph_precision
from starpose_ros.core.backends.base import ModelInfo
from starpose_ros.core.backends.tensorrt_cli import main, trtexec_command
from starpose_ros.core.backends.tensorrt_engine import (
    BuildOptions,
    load_calibration_windows,
    precision_graph,
    read_sidecar,
)
from starpose_ros.core.backends.tensorrt_onnx import (
    BatchProfile,
    EngineError,
    TensorSpec,
    UnsupportedOnnxError,
    check_onnx_for_tensorrt,
    check_tensorrt_version,
    find_tensorrt_issues,
    model_info_from_metadata,
    onnx_io_specs,
    plan_buffers,
    profile_shapes,
)
from starpose_testing.tensorrt_models import contract_like_model, graph_model


@pytest.fixture(scope='module')
def tiny_onnx(tiny_model_files):
    """The core tests' real exported tiny StarPose model (random weights; test/conftest.py)."""
    return tiny_model_files[0]


@pytest.fixture(scope='module')
def tiny_model(tiny_onnx):
    return onnx.load(str(tiny_onnx))


# ---- ONNX operator check --------------------------------------------------------------------

def test_exported_model_passes_the_tensorrt_check(tiny_model):
    assert find_tensorrt_issues(tiny_model) == []


def test_unsupported_operator_and_custom_domain_are_named():
    x = helper.make_tensor_value_info('x', TensorProto.FLOAT, [4])
    y = helper.make_tensor_value_info('y', TensorProto.FLOAT, None)
    z = helper.make_tensor_value_info('z', TensorProto.FLOAT, None)
    nodes = [helper.make_node('Unique', ['x'], ['y'], name='dedupe'),
             helper.make_node('FancyOp', ['x'], ['z'], domain='com.example', name='fancy')]
    model = graph_model(nodes, [x], [y, z])
    model.opset_import.append(helper.make_opsetid('com.example', 1))
    issues = {issue.node: issue for issue in find_tensorrt_issues(model)}
    assert issues['dedupe'].op_type == 'Unique' and 'not supported' in issues['dedupe'].reason
    assert 'com.example' in issues['fancy'].reason and 'plugin' in issues['fancy'].reason


def test_installed_parser_support_query_overrides_the_matrix():
    x = helper.make_tensor_value_info('x', TensorProto.FLOAT, [4])
    y = helper.make_tensor_value_info('y', TensorProto.FLOAT, [4])
    model = graph_model([helper.make_node('Relu', ['x'], ['y'], name='act')], [x], [y])
    assert find_tensorrt_issues(model) == []
    assert [i.node for i in find_tensorrt_issues(model, supports_operator=lambda op: op != 'Relu')] == ['act']


def test_uint8_is_allowed_only_through_cast():
    lr = helper.make_tensor_value_info('lr', TensorProto.UINT8, [1, 4, 3])
    out = helper.make_tensor_value_info('out', TensorProto.FLOAT, None)
    cast_first = graph_model([helper.make_node('Cast', ['lr'], ['f'], to=TensorProto.FLOAT, name='cast'),
                               helper.make_node('Transpose', ['f'], ['out'], perm=[0, 2, 1], name='perm')],
                              [lr], [out])
    assert find_tensorrt_issues(cast_first) == []
    transpose_first = graph_model([helper.make_node('Transpose', ['lr'], ['t'], perm=[0, 2, 1], name='perm'),
                                    helper.make_node('Cast', ['t'], ['out'], to=TensorProto.FLOAT, name='cast')],
                                   [lr], [out])
    (issue,) = find_tensorrt_issues(transpose_first)
    assert issue.node == 'perm' and "'lr'" in issue.reason


def test_resize_restrictions_and_old_opset_are_reported():
    x = helper.make_tensor_value_info('x', TensorProto.FLOAT, [1, 1, 4, 4])
    y = helper.make_tensor_value_info('y', TensorProto.FLOAT, None)
    scales = helper.make_tensor('scales', TensorProto.FLOAT, [4], [1, 1, 2, 2])
    cubic = helper.make_node('Resize', ['x', '', 'scales'], ['y'], mode='cubic', name='up')
    assert find_tensorrt_issues(graph_model([cubic], [x], [y], initializers=[scales])) == []
    antialiased = helper.make_node('Resize', ['x', '', 'scales'], ['y'], mode='linear', antialias=1, name='up')
    (issue,) = find_tensorrt_issues(graph_model([antialiased], [x], [y], initializers=[scales]))
    assert 'antialias' in issue.reason
    relu = helper.make_node('Relu', ['x'], ['y'], name='act')
    assert [i.op_type for i in find_tensorrt_issues(graph_model([relu], [x], [y], opset=7))] == ['opset']


def test_check_raises_with_file_and_nodes(tmp_path):
    x = helper.make_tensor_value_info('x', TensorProto.FLOAT, [4])
    y = helper.make_tensor_value_info('y', TensorProto.FLOAT, None)
    path = tmp_path / 'bad.onnx'
    onnx.save(graph_model([helper.make_node('Unique', ['x'], ['y'], name='dedupe')], [x], [y]), str(path))
    with pytest.raises(UnsupportedOnnxError, match=r"(?s)bad\.onnx: 1 node.*Unique 'dedupe'"):
        check_onnx_for_tensorrt(path)


@pytest.mark.parametrize('content', [None, b'not an onnx file at all'])
def test_missing_or_corrupt_onnx_is_a_clear_error(tmp_path, content):
    path = tmp_path / 'model.onnx'
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(EngineError, match='model.onnx'):
        check_onnx_for_tensorrt(path)


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
    info = model_info_from_metadata(onnx_metadata(tiny_model), 'tiny.onnx')
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


@pytest.fixture
def onnx_file(tmp_path):
    return contract_like_model(tmp_path / 'model.onnx')


# ---- trtexec, calibration data, command line ------------------------------------------------

def test_trtexec_equivalent_builds_the_precision_graph_strongly_typed(tiny_model):
    spec = next(s for s in onnx_io_specs(tiny_model) if s.is_input)
    command = trtexec_command('m.fp16.onnx', 'm.engine', spec, BuildOptions('fp16', BatchProfile(1, 4, 16), 512),
                              timing_cache='t.cache')
    assert command[:4] == ['trtexec', '--onnx=m.fp16.onnx', '--stronglyTyped', '--saveEngine=m.engine']
    assert {'--minShapes=lr_frames:1x5x64x48x3', '--optShapes=lr_frames:4x5x64x48x3',
            '--maxShapes=lr_frames:16x5x64x48x3', '--memPoolSize=workspace:512M', '--timingCacheFile=t.cache'} \
        == set(command[4:])
    # weak-typing flags are gone from TensorRT 11 and would contradict the graph's own types
    assert not {c for c in command if c.startswith(('--fp16', '--int8', '--precisionConstraints', '--layerPrec'))}


@pytest.mark.parametrize('version, supported', [('10.3.0.30', True), ('10.16.0', True), ('11.4.0.11', True),
                                                ('10.2.0', False), ('8.6.2', False), ('12.0.0', False),
                                                ('garbage', False), ('', False)])
def test_tensorrt_version_range_is_enforced_in_one_line(version, supported):
    if supported:
        check_tensorrt_version(version)
        return
    with pytest.raises(EngineError) as error:
        check_tensorrt_version(version)
    message = str(error.value)
    assert '\n' not in message and '>=10.3,<12' in message
    assert (f'TensorRT {version} is not supported' if version else 'only type stubs are installed') in message


def test_calibration_windows_are_checked(tmp_path):
    info = ModelInfo(window=5, lr_height=8, lr_width=6)
    good = tmp_path / 'good.npy'
    np.save(good, np.zeros((6, 5, 8, 6, 3), np.uint8))
    assert load_calibration_windows(good, info).shape == (6, 5, 8, 6, 3)
    wrong = tmp_path / 'wrong.npy'
    np.save(wrong, np.zeros((6, 5, 16, 12, 3), np.float32))
    with pytest.raises(EngineError, match=r'wrong\.npy: calibration windows are float32'):
        load_calibration_windows(wrong, info)
    with pytest.raises(EngineError, match='calibration data not found'):
        load_calibration_windows(tmp_path / 'absent.npy', info)


def test_precision_graph_is_derived_once_and_keyed(tiny_onnx, tiny_model, tmp_path):
    info = model_info_from_metadata(onnx_metadata(tiny_model), 'tiny')
    assert precision_graph(tiny_onnx, BuildOptions('fp32'), tmp_path, info) == tiny_onnx
    fp16 = precision_graph(tiny_onnx, BuildOptions('fp16'), tmp_path, info)
    assert fp16.parent == tmp_path and graph_precision(onnx.load(str(fp16))) == 'fp16'
    assert find_tensorrt_issues(onnx.load(str(fp16))) == []
    modified = fp16.stat().st_mtime_ns
    assert precision_graph(tiny_onnx, BuildOptions('fp16'), tmp_path, info) == fp16 and \
        fp16.stat().st_mtime_ns == modified  # reused, not converted again
    other_scope = precision_graph(tiny_onnx, BuildOptions('fp16', fp32_scope_pattern=r'\.attention$'), tmp_path, info)
    assert other_scope != fp16
    with pytest.raises(EngineError, match='is an fp16 graph but precision fp32'):
        precision_graph(fp16, BuildOptions('fp32'), tmp_path, info)
    with pytest.raises(EngineError, match='no node comes from a module matching'):
        precision_graph(tiny_onnx, BuildOptions('fp16', fp32_scope_pattern='no_such_module'), tmp_path, info)


def test_int8_graph_follows_its_calibration_data(tiny_onnx, tiny_model, tmp_path):
    info = model_info_from_metadata(onnx_metadata(tiny_model), 'tiny')
    rng = np.random.default_rng(0)
    graphs = []
    for name in ('a.npy', 'b.npy'):
        np.save(tmp_path / name, rng.integers(0, 256, (2, 5, 64, 48, 3), dtype=np.uint8))
        graphs.append(precision_graph(tiny_onnx, BuildOptions('int8', calibration_data=str(tmp_path / name)),
                                      tmp_path, info))
    assert graphs[0] != graphs[1]
    model = onnx.load(str(graphs[0]))
    assert graph_precision(model) == 'int8' and find_tensorrt_issues(model) == []
    assert 'QuantizeLinear' in {n.op_type for n in model.graph.node}
    np.save(tmp_path / 'wrong.npy', np.zeros((2, 5, 8, 6, 3), np.uint8))
    with pytest.raises(EngineError, match=r'wrong\.npy: calibration windows are uint8 \(2, 5, 8, 6, 3\)'):
        precision_graph(tiny_onnx, BuildOptions('int8', calibration_data=str(tmp_path / 'wrong.npy')), tmp_path, info)


def test_check_only_command_prints_plan_and_trtexec(onnx_file, tmp_path, capsys):
    assert main(['--onnx', str(onnx_file), '--check-only', '--max-batch', '8', '--precision', 'fp32',
                 '--cache-dir', str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert 'every operator is supported' in out
    assert f'input  lr_frames: uint8 (8, 5, 8, 6, 3) = {8 * 5 * 8 * 6 * 3} bytes' in out
    assert 'trtexec' in out and '--maxShapes=lr_frames:8x5x8x6x3' in out and '--stronglyTyped' in out


def test_command_reports_unsupported_graph(tmp_path, capsys):
    x = helper.make_tensor_value_info('x', TensorProto.FLOAT, [4])
    y = helper.make_tensor_value_info('y', TensorProto.FLOAT, None)
    path = tmp_path / 'bad.onnx'
    onnx.save(graph_model([helper.make_node('Unique', ['x'], ['y'], name='dedupe')], [x], [y]), str(path))
    assert main(['--onnx', str(path), '--check-only']) == 1
    (line,) = capsys.readouterr().err.splitlines()  # one line, with the node
    assert "Unique 'dedupe'" in line


def test_check_only_writes_the_fp16_graph_trtexec_builds(tiny_onnx, tmp_path, capsys):
    assert main(['--onnx', str(tiny_onnx), '--check-only', '--cache-dir', str(tmp_path)]) == 0
    out = capsys.readouterr().out
    (graph,) = tmp_path.glob('tiny.fp16.*.onnx')
    assert f'fp16 graph: {graph}' in out and f'--onnx={graph}' in out and 'nodes kept FP32' in out


def test_build_without_tensorrt_is_one_line(tiny_onnx, tmp_path, capsys):
    if not _gpu_stack_missing():
        pytest.skip('TensorRT and pycuda are installed here: the build would run')
    assert main(['--onnx', str(tiny_onnx), '--cache-dir', str(tmp_path)]) == 1
    (line,) = capsys.readouterr().err.splitlines()
    assert 'needs the tensorrt and pycuda Python packages' in line


# ---- on a CUDA machine with TensorRT --------------------------------------------------------

def _gpu_stack_missing() -> str:
    """Why TensorRT cannot run here ('' when it can); tensorrt-stubs alone imports as an empty package."""
    try:
        import tensorrt
    except ImportError:
        return 'TensorRT (tensorrt Python package) is not installed here'
    if not hasattr(tensorrt, 'Builder'):
        return 'only tensorrt-stubs is installed here, not TensorRT'
    return '' if importlib.util.find_spec('pycuda') else 'pycuda is not installed here'


@pytest.fixture
def trt_stack():
    missing = _gpu_stack_missing()
    if missing:
        pytest.skip(missing)


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
@pytest.mark.parametrize('precision', ['fp16', 'int8'])
def test_reduced_precision_engine_matches_its_graph_in_onnx_runtime(trt_stack, tiny_onnx, tiny_model, tmp_path,
                                                                     precision):
    import onnxruntime as ort

    from starpose_ros.core.backends.tensorrt_backend import TensorRTBackend
    frames = np.random.default_rng(1).integers(0, 256, (4, 5, 64, 48, 3), dtype=np.uint8)
    np.save(tmp_path / 'windows.npy', frames)
    calibration = str(tmp_path / 'windows.npy') if precision == 'int8' else None
    with TensorRTBackend(tiny_onnx, cache_dir=tmp_path, precision=precision, max_batch=4,
                         calibration_data=calibration) as backend:
        output = backend.infer(frames)
    info = model_info_from_metadata(onnx_metadata(tiny_model), 'tiny')
    graph = precision_graph(tiny_onnx, BuildOptions(precision, calibration_data=calibration), tmp_path, info)
    expected = ort.InferenceSession(str(graph), providers=['CPUExecutionProvider']).run(
        ['sr_image'], {'lr_frames': frames})[0]
    assert np.abs(output.sr_images.astype(int) - expected).max() <= 4


@pytest.mark.gpu
def test_corrupt_cached_engine_is_rebuilt(trt_stack, tiny_onnx, tmp_path):
    from starpose_ros.core.backends.tensorrt_backend import TensorRTBackend
    with TensorRTBackend(tiny_onnx, cache_dir=tmp_path, precision='fp16', max_batch=2) as backend:
        engine_path = backend.engine_path
    engine_path.write_bytes(b'garbage')
    with TensorRTBackend(tiny_onnx, cache_dir=tmp_path, precision='fp16', max_batch=2) as backend:
        assert backend.infer(np.zeros((2, 5, 64, 48, 3), np.uint8)).sr_images.shape == (2, 256, 192, 3)
