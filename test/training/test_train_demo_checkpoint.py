"""The bundled model: a few MB, the causal `small` 64x48 model, loadable by the inference API."""
from __future__ import annotations

import torch

from starpose_model.checkpoint import load_inference_model, read_checkpoint
from starpose_ros.core.models import BUNDLED_MODEL as DEMO


def test_bundled_model_is_the_small_causal_64x48_model():
    assert DEMO.stat().st_size < 8 * 2**20
    payload = read_checkpoint(DEMO)
    config = payload['config']
    assert (config['name'], config['scale'], config['window'], config['target_frame']) == ('small', 4, 5, 'last')
    assert payload['keypoint_layout'] == 'posetrack' and not payload['pose_only']
    model = load_inference_model(DEMO)
    sr_image, keypoints, heatmaps = model(torch.full((2, 5, 64, 48, 3), 128, dtype=torch.uint8))
    assert sr_image.dtype == torch.uint8 and sr_image.shape == (2, 256, 192, 3)
    assert keypoints.shape == (2, 17, 3) and heatmaps.shape == (2, 17, 64, 48)
    assert torch.isfinite(keypoints).all()
