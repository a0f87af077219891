"""Model resolution: empty = the bundled model, `auto` follows the file, a .pt is exported once."""
from __future__ import annotations

from pathlib import Path

import pytest

from starpose_ros.core.backends import BackendError
from starpose_ros.core.models import (
    BUNDLED_MODEL,
    BUNDLED_MODELS,
    DEFAULT_MODEL,
    backend_for,
    exported_onnx,
    model_file,
    resolve_model,
)


def test_auto_follows_the_suffix(tmp_path):
    assert backend_for(tmp_path / 'm.onnx', 'auto') == 'onnxruntime'
    assert backend_for(tmp_path / 'm.pt', 'auto') == 'onnxruntime'
    assert backend_for(tmp_path / 'm.engine', 'auto') == 'tensorrt'
    assert backend_for(tmp_path / 'm.pt', 'torch') == 'torch'
    with pytest.raises(BackendError, match="suffix '.bin'"):
        backend_for(tmp_path / 'm.bin', 'auto')
    with pytest.raises(BackendError, match='unknown backend'):
        backend_for(tmp_path / 'm.onnx', 'openvino')


def test_a_checkpoint_is_exported_once_and_reused(tiny_model_files, tmp_path):
    checkpoint = tiny_model_files[1]
    path, name = resolve_model(checkpoint, 'auto', cache_dir=tmp_path)
    assert name == 'onnxruntime' and path.suffix == '.onnx' and path.parent == tmp_path
    stamp = path.stat().st_mtime_ns
    assert resolve_model(checkpoint, 'onnxruntime', cache_dir=tmp_path) == (path, 'onnxruntime')
    assert path.stat().st_mtime_ns == stamp and not list(tmp_path.glob('.*tmp*'))
    assert resolve_model(checkpoint, 'torch', cache_dir=tmp_path) == (checkpoint, 'torch')


def test_empty_means_the_bundled_model(tmp_path):
    assert resolve_model('', 'torch') == (BUNDLED_MODEL, 'torch')
    assert resolve_model(None, 'torch') == (BUNDLED_MODEL, 'torch')


def test_a_bundled_model_is_reached_by_its_name_and_any_other_name_is_a_path(tmp_path):
    assert set(BUNDLED_MODELS) == {DEFAULT_MODEL} and BUNDLED_MODELS[DEFAULT_MODEL] == BUNDLED_MODEL
    assert resolve_model('starpose_small_real', 'torch') == (BUNDLED_MODEL, 'torch')
    assert model_file('starpose_small_real') == BUNDLED_MODEL.resolve() and BUNDLED_MODEL.is_file()
    assert model_file(tmp_path / 'starpose_small_real') == tmp_path / 'starpose_small_real'
    assert model_file('elsewhere/m.onnx') == Path('elsewhere/m.onnx')


def test_a_missing_or_broken_checkpoint_is_one_error(tmp_path):
    with pytest.raises(BackendError, match='not found'):
        exported_onnx(tmp_path / 'missing.pt', tmp_path)
    broken = tmp_path / 'broken.pt'
    broken.write_bytes(b'not a checkpoint')
    with pytest.raises(BackendError, match='cannot export'):
        exported_onnx(broken, tmp_path)
    assert not list(tmp_path.glob('*.onnx'))


@pytest.mark.parametrize('name, backend, says', [
    ('m.onnx', 'torch', 'is an ONNX model, which backend torch cannot run; use backend auto or onnxruntime'),
    ('m.engine', 'onnxruntime', 'is a TensorRT engine, which backend onnxruntime cannot run'),
    ('README.md', 'onnxruntime', 'not a model file StarPose reads'),
])
def test_a_file_given_to_a_backend_that_cannot_read_it_says_what_it_is(tmp_path, name, backend, says):
    (tmp_path / name).write_bytes(b'x' * 64)
    with pytest.raises(BackendError, match=says):
        resolve_model(tmp_path / name, backend)


def test_an_onnx_file_read_as_a_checkpoint_does_not_suggest_an_option_no_command_has(tiny_model_files):
    from starpose_model.checkpoint import CheckpointError, load_inference_model

    with pytest.raises(CheckpointError) as refused:
        load_inference_model(tiny_model_files[0])  # the .onnx
    says = str(refused.value)
    assert ('not a file StarPose wrote' in says or 'not a readable PyTorch checkpoint' in says)
    assert 'load it with trusted=True' not in says
