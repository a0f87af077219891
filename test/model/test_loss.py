"""Compound loss (eq. 7): value, frozen pose net, lambda = 0 ablation, target weights, errors."""
import pytest
import torch
from torch import nn

from starpose_model.hrnet import imagenet_normalize
from starpose_model.loss import CompoundLoss, joints_mse

torch.set_num_threads(2)


class TinyPoseNet(nn.Module):
    """Stride-4 conv net with BatchNorm: enough to check freezing and the heatmap path."""

    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, 8, 3, 2, 1), nn.BatchNorm2d(8), nn.ReLU(), nn.Conv2d(8, 17, 3, 2, 1))

    def forward(self, x):
        return self.body(x)


class MustNotRun(nn.Module):
    def forward(self, x):
        raise AssertionError('the pose net must not run when lambda is 0')


def batch(seed=0):
    gen = torch.Generator().manual_seed(seed)
    sr = torch.rand(2, 3, 256, 192, generator=gen, requires_grad=True)
    hr = torch.rand(2, 3, 256, 192, generator=gen)
    heatmaps = torch.rand(2, 17, 64, 48, generator=gen)
    weight = (torch.rand(2, 17, generator=gen) > 0.3).float()
    return sr, hr, heatmaps, weight


def test_value_is_l1_plus_lambda_times_weighted_heatmap_mse():
    pose_net = TinyPoseNet()
    loss_fn = CompoundLoss(pose_net, loss_lambda=10.0)
    sr, hr, heatmaps, weight = batch()
    out = loss_fn(sr, hr, heatmaps, weight)
    with torch.no_grad():
        predicted = pose_net(imagenet_normalize(sr))
    pixel = (sr - hr).abs().mean()
    pose = 0.5 * ((predicted - heatmaps) ** 2 * weight[:, :, None, None]).mean()
    torch.testing.assert_close(out['pixel'], pixel)
    torch.testing.assert_close(out['pose'], pose)
    torch.testing.assert_close(out['total'], pixel + 10.0 * pose)


def test_zero_weight_joints_do_not_count():
    sr, hr, heatmaps, weight = batch()
    predicted = heatmaps.clone()
    predicted[:, 3] += 5.0  # wrong only on the ears channel...
    weight[:, 3] = 0.0  # ...which PoseTrack never annotates
    assert joints_mse(predicted, heatmaps, weight).item() == 0.0
    assert joints_mse(predicted, heatmaps, weight[:, :, None]).item() == 0.0  # official [B, J, 1] shape
    assert joints_mse(predicted, heatmaps, torch.ones_like(weight)).item() > 0.0


def test_pose_net_is_frozen_but_passes_gradient_to_the_sr_image():
    pose_net = TinyPoseNet().train()
    loss_fn = CompoundLoss(pose_net).train()
    assert not pose_net.training, 'BatchNorm statistics of the pre-trained pose net must not change'
    running_mean = pose_net.body[1].running_mean.clone()
    sr, hr, heatmaps, weight = batch()
    loss_fn(sr, hr, heatmaps, weight)['total'].backward()
    assert all(p.grad is None and not p.requires_grad for p in pose_net.parameters())
    assert torch.equal(pose_net.body[1].running_mean, running_mean)
    pixel_only = CompoundLoss(None, loss_lambda=0.0)
    sr_pixel = sr.detach().clone().requires_grad_(True)
    pixel_only(sr_pixel, hr)['total'].backward()
    assert not torch.allclose(sr.grad, sr_pixel.grad), 'the pose term must add gradient to the SR image'


def test_lambda_zero_is_pixel_loss_only_and_skips_the_pose_net():
    loss_fn = CompoundLoss(MustNotRun(), loss_lambda=0.0)
    sr, hr, heatmaps, weight = batch()
    out = loss_fn(sr, hr, heatmaps, weight)
    torch.testing.assert_close(out['total'], (sr - hr).abs().mean())
    assert out['pose'].item() == 0.0


def test_bad_inputs_are_named():
    with pytest.raises(ValueError, match='needs a pose net'):
        CompoundLoss(None, loss_lambda=10.0)
    loss_fn = CompoundLoss(TinyPoseNet())
    sr, hr, heatmaps, weight = batch()
    with pytest.raises(ValueError, match=r'sr_image \[2, 3, 256, 192\] and hr_image \[2, 3, 128, 96\]'):
        loss_fn(sr, hr[:, :, :128, :96], heatmaps, weight)
    with pytest.raises(ValueError, match='heatmaps and target_weight are required'):
        loss_fn(sr, hr)
    with pytest.raises(ValueError, match=r'pose net heatmaps \[2, 17, 64, 48\] do not match.*\[2, 17, 32, 24\]'):
        loss_fn(sr, hr, heatmaps[:, :, :32, :24], weight)
