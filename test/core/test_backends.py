"""Backends on real runtimes: ONNX Runtime on the exported tiny model, PyTorch on its checkpoint."""
import numpy as np
import pytest

from starpose_ros.core.backends import BackendError, ModelInfo, create_backend


def _windows(info: ModelInfo, batch: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (batch, *info.input_shape), dtype=np.uint8)


def test_onnxruntime_reads_metadata_and_runs_a_batch(ort_backend):
    info = ort_backend.model_info
    assert (info.window, info.lr_height, info.lr_width, info.target_frame) == (5, 64, 48, 'last')
    assert info.keypoint_layout in ('coco', 'posetrack')
    assert ort_backend.providers == ['CPUExecutionProvider']
    out = ort_backend.infer(_windows(info, 3))
    assert out.sr_images.shape == (3, 256, 192, 3) and out.sr_images.dtype == np.uint8
    assert out.keypoints.shape == (3, 17, 3) and out.keypoints.dtype == np.float32
    assert np.isfinite(out.keypoints).all()
    # HR-crop pixels: inside the 192x256 crop up to one heatmap pixel (4 px) of sub-pixel refinement
    assert (out.keypoints[..., 0] >= -4).all() and (out.keypoints[..., 0] <= 196).all()
    assert (out.keypoints[..., 1] >= -4).all() and (out.keypoints[..., 1] <= 260).all()


def test_torch_backend_matches_onnxruntime_on_the_same_model(tiny_model_files, ort_backend):
    import torch

    torch.set_num_threads(2)
    with create_backend('torch', tiny_model_files[1]) as torch_backend:
        assert torch_backend.model_info == ort_backend.model_info
        lr = _windows(ort_backend.model_info, 2, seed=5)
        expected, actual = ort_backend.infer(lr), torch_backend.infer(lr)
    assert np.abs(actual.sr_images.astype(int) - expected.sr_images.astype(int)).max() <= 1
    np.testing.assert_allclose(actual.keypoints, expected.keypoints, atol=0.3)


@pytest.mark.parametrize('shape,dtype,reason', [
    ((2, 4, 64, 48, 3), np.uint8, r'shape \(2, 4, 64, 48, 3\)'),
    ((2, 5, 48, 64, 3), np.uint8, 'expected'),
    ((0, 5, 64, 48, 3), np.uint8, 'B>=1'),
    ((2, 5, 64, 48, 3), np.float32, 'uint8'),
])
def test_wrong_input_is_refused_before_running(ort_backend, shape, dtype, reason):
    with pytest.raises(BackendError, match=reason):
        ort_backend.infer(np.zeros(shape, dtype=dtype))


@pytest.mark.parametrize('backend', ['onnxruntime', 'torch'])
def test_missing_and_corrupt_model_files_give_clear_errors(tmp_path, backend):
    missing = tmp_path / 'nowhere' / 'model.bin'
    with pytest.raises(BackendError, match=f'not found: {missing}'):
        create_backend(backend, missing)
    corrupt = tmp_path / 'corrupt.bin'
    corrupt.write_bytes(b'\x08\x01garbage' * 100)
    with pytest.raises(BackendError, match=f'cannot load model {corrupt}'):
        create_backend(backend, corrupt)


def test_onnx_without_the_starpose_interface_is_rejected(tmp_path):
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph([helper.make_node('Identity', ['x'], ['y'])], 'g',
                              [helper.make_tensor_value_info('x', TensorProto.FLOAT, [1])],
                              [helper.make_tensor_value_info('y', TensorProto.FLOAT, [1])])
    path = tmp_path / 'identity.onnx'
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid('', 17)]), str(path))
    with pytest.raises(BackendError, match="no input named lr_frames"):
        create_backend('onnxruntime', path)


def test_factory_rejects_unknown_names_and_unavailable_runtimes(tmp_path):
    with pytest.raises(BackendError, match='unknown backend'):
        create_backend('openvino', tmp_path / 'm.onnx')
    with pytest.raises(BackendError, match='device cuda requested'):
        create_backend('torch', tmp_path / 'm.pt', device='cuda')
    with pytest.raises(BackendError, match='device must be one of'):
        create_backend('onnxruntime', tmp_path / 'm.onnx', device='gpu')


def test_model_info_validates_fields():
    with pytest.raises(BackendError, match='target_frame'):
        ModelInfo(5, 64, 48, 'coco', 'middle')
    with pytest.raises(BackendError, match='aspect'):
        ModelInfo(5, 64, 64)
    assert ModelInfo(5, 64, 48, 'coco', 'center').target_index == 2
    assert ModelInfo(5, 64, 48).target_index == 4
