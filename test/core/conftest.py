"""Real models for the core's tests: one randomly initialised `tiny` StarPose, exported once.

The ONNX export takes tens of seconds on a small CPU, so the files are cached under pytest's
temporary root, keyed by a hash of the model's source code and the torch/onnx versions: any
change to `starpose_model` gives a fresh export.
"""
import hashlib
import os
from pathlib import Path

import pytest

MODEL_SOURCES = Path(__file__).resolve().parents[2] / 'starpose_model'


def _cache_key() -> str:
    import onnx
    import torch

    digest = hashlib.sha256(f'{torch.__version__} {onnx.__version__}'.encode())
    for source in sorted(MODEL_SOURCES.glob('*.py')):
        digest.update(source.name.encode() + source.read_bytes())
    return digest.hexdigest()[:16]


@pytest.fixture(scope='session')
def tiny_model_files(tmp_path_factory):
    """(onnx path, .pt checkpoint path) of the same random `tiny` model ('last' target frame)."""
    import torch

    from starpose_model.checkpoint import save_checkpoint
    from starpose_model.export import export_onnx, random_model

    folder = tmp_path_factory.getbasetemp().parent / 'starpose-core-models' / _cache_key()
    onnx_path, checkpoint = folder / 'tiny.onnx', folder / 'tiny.pt'
    if not (onnx_path.is_file() and checkpoint.is_file()):
        torch.set_num_threads(2)
        staging = tmp_path_factory.mktemp('tiny_model')
        model = random_model('tiny', seed=0)
        export_onnx(model, staging / 'tiny.onnx')
        save_checkpoint(staging / 'tiny.pt', model.sr_net, model.pose_net, model.config)
        folder.mkdir(parents=True, exist_ok=True)
        for name in ('tiny.pt', 'tiny.onnx'):  # atomic renames: a parallel session never sees half a file
            os.replace(staging / name, folder / name)
    return onnx_path, checkpoint


@pytest.fixture(scope='session')
def tiny_center_checkpoint(tmp_path_factory):
    """A random `tiny` checkpoint whose target frame is the window's centre."""
    import torch

    from starpose_model.checkpoint import save_checkpoint
    from starpose_model.config import get_config
    from starpose_model.hrnet import build_pose_net
    from starpose_model.star_pose import StarPoseSR

    torch.manual_seed(1)
    config = get_config('tiny', target_frame='center')
    folder = tmp_path_factory.mktemp('tiny_center')
    return save_checkpoint(folder / 'tiny_center.pt', StarPoseSR(config), build_pose_net(config.pose_arch), config)


@pytest.fixture(scope='session')
def ort_backend(tiny_model_files):
    """An ONNX Runtime backend on the exported tiny model (CPU, 2 threads)."""
    from starpose_ros.core.backends import create_backend

    backend = create_backend('onnxruntime', tiny_model_files[0], intra_op_threads=2)
    yield backend
    backend.close()
