"""The TensorRT engine cache without a GPU: keys, sidecars and the load/build/reject decisions.

Every input an engine depends on must change its key (`KEY_CHANGES`); sidecars and decisions
run on a small contract-shaped graph with stand-in engine bytes (TensorRT never reads them).
"""
from __future__ import annotations

import json

import numpy as np
import pytest

from starpose_ros.core.backends.tensorrt_engine import (
    BuildEnvironment,
    BuildOptions,
    after_failed_load,
    choose_engine,
    engine_key,
    file_sha256,
    read_sidecar,
    sidecar_path,
    timing_cache_path,
    write_engine,
)
from starpose_ros.core.backends.tensorrt_onnx import BatchProfile, EngineError, EngineMismatchError
from starpose_testing.tensorrt_models import DESKTOP, JETSON, ORIN_NX, contract_like_model

# ---- cache keys, sidecars, decisions --------------------------------------------------------

def _calibration_file(tmp_path, name='windows.npy', fill=0):
    path = tmp_path / name
    np.save(path, np.full((2, 5, 8, 6, 3), fill, np.uint8))
    return str(path)


def test_cache_name_is_readable():
    name = engine_key('ab' * 32, JETSON, BuildOptions('fp16', BatchProfile(1, 4, 8))).file_name('tiny')
    assert name.startswith('tiny.fp16.b8.sm87.trt10.3.0.') and name.endswith('.engine')


# Each case changes one thing an engine depends on; the key (digest and file name) must change.
KEY_CHANGES = {
    'onnx': lambda tmp: ('cd' * 32, JETSON, BuildOptions('fp16')),
    'fp32 scope': lambda tmp: ('ab' * 32, JETSON, BuildOptions('fp16', fp32_scope_pattern=r'\.attention$')),
    'calibration data': lambda tmp: ('ab' * 32, JETSON, BuildOptions('int8', calibration_data=_calibration_file(
        tmp, 'other.npy', fill=7))),
    'workspace': lambda tmp: ('ab' * 32, JETSON, BuildOptions('fp16', workspace_mib=2048)),
    'SM count': lambda tmp: ('ab' * 32, BuildEnvironment('10.3.0', 'Orin', '8.7', 8, 62841), BuildOptions('fp16')),
    'total memory': lambda tmp: ('ab' * 32, BuildEnvironment('10.3.0', 'Orin', '8.7', 16, 30536),
                                 BuildOptions('fp16')),
    'TensorRT version': lambda tmp: ('ab' * 32, BuildEnvironment('10.7.0', 'Orin', '8.7', 16, 62841),
                                     BuildOptions('fp16')),
    'GPU': lambda tmp: ('ab' * 32, DESKTOP, BuildOptions('fp16')),
    'precision': lambda tmp: ('ab' * 32, JETSON, BuildOptions('fp32')),
    'profile': lambda tmp: ('ab' * 32, JETSON, BuildOptions('fp16', BatchProfile(1, 4, 32))),
    'opt batch': lambda tmp: ('ab' * 32, JETSON, BuildOptions('fp16', BatchProfile(1, 8, 16))),
}


@pytest.mark.parametrize('change', sorted(KEY_CHANGES))
def test_every_build_input_changes_the_cache_key(change, tmp_path):
    base_options = (BuildOptions('int8', calibration_data=_calibration_file(tmp_path)) if change == 'calibration data'
                    else BuildOptions('fp16'))
    base = engine_key('ab' * 32, JETSON, base_options)
    changed = engine_key(*KEY_CHANGES[change](tmp_path))
    assert changed.digest != base.digest and changed.file_name('m') != base.file_name('m')


def test_fp32_engines_ignore_the_scope_and_timing_caches_follow_the_gpu(tmp_path):
    fp32 = engine_key('ab' * 32, JETSON, BuildOptions('fp32'))
    assert engine_key('ab' * 32, JETSON, BuildOptions('fp32', fp32_scope_pattern='x')) == fp32
    assert timing_cache_path(tmp_path, JETSON) != timing_cache_path(tmp_path, ORIN_NX)


def test_cached_engine_of_another_orin_module_is_not_loaded(onnx_file, tmp_path):
    options = BuildOptions('fp16')
    first = choose_engine(onnx_file, None, tmp_path, JETSON, options)
    write_engine(first.path, _fake_plan_bytes(), engine_key(file_sha256(onnx_file), JETSON, options), {})
    assert choose_engine(onnx_file, None, tmp_path, JETSON, options).action == 'load'
    assert choose_engine(onnx_file, None, tmp_path, ORIN_NX, options).action == 'build'
    with pytest.raises(EngineMismatchError, match='sm_count: engine has 16, here 8'):
        choose_engine(onnx_file, first.path, tmp_path, ORIN_NX, options)


def test_int8_without_calibration_data_is_refused():
    with pytest.raises(EngineError, match='calibration_data'):
        BuildOptions('int8')


@pytest.fixture
def onnx_file(tmp_path):
    return contract_like_model(tmp_path / 'model.onnx')


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
