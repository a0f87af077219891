"""StarPoseSR: shapes, target frame, fusion at init, gradients, half precision, ablations, size."""
import json

import pytest
import torch
import torch.nn.functional as F

from starpose_model.attention import SCLeakyReLU
from starpose_model.blocks import BicubicUpsample
from starpose_model.config import ABLATIONS, HR_SIZE, StarPoseConfig, get_config
from starpose_model.hrnet import build_pose_net
from starpose_model.loss import CompoundLoss
from starpose_model.star_pose import StarPoseSR

torch.set_num_threads(2)


def random_windows(cfg, batch=2, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return torch.rand(batch, cfg.window, 3, *cfg.lr_size, generator=gen)


@pytest.mark.parametrize('name,scale', [('tiny', 4), ('tiny', 2), ('paper', 4)])
def test_output_is_the_hr_crop(name, scale):
    cfg = get_config(name, scale=scale)
    model = StarPoseSR(cfg).eval()
    with torch.no_grad():
        out = model(random_windows(cfg, batch=1))
    assert out.shape == (1, 3, *HR_SIZE)
    assert torch.isfinite(out).all()


def test_wrong_input_shape_names_the_expected_one():
    model = StarPoseSR(get_config('tiny'))
    with pytest.raises(ValueError, match=r'\[B, 5, 3, 64, 48\].*got \[1, 5, 3, 128, 96\]'):
        model(torch.rand(1, 5, 3, 128, 96))


@pytest.mark.parametrize('target_frame,index,patch_size', [('last', 4, (1, 8, 8)), ('center', 2, (1, 8, 8)),
                                                            ('center', 2, (5, 4, 4))])
def test_target_frame_selects_the_super_resolved_frame(target_frame, index, patch_size):
    cfg = get_config('tiny', target_frame=target_frame, patch_size=patch_size)
    assert cfg.target_index == index
    model = StarPoseSR(cfg).eval()
    final_conv = model.reconstruct[2]
    with torch.no_grad():
        final_conv.weight.zero_()
        final_conv.bias.zero_()
        frames = random_windows(cfg)
        # With the learned residual silenced, only the bicubic skip of the target frame remains.
        expected = F.interpolate(frames[:, index], size=HR_SIZE, mode='bicubic', align_corners=False)
        torch.testing.assert_close(model(frames), expected)


@pytest.mark.parametrize('scale', [2, 4])
def test_bicubic_skip_equals_torch_bicubic(scale):
    images = torch.rand(2, 3, 64 // scale * 2, 48 // scale * 2, generator=torch.Generator().manual_seed(1))
    expected = F.interpolate(images, scale_factor=scale, mode='bicubic', align_corners=False)
    torch.testing.assert_close(BicubicUpsample(scale)(images), expected, rtol=1e-5, atol=1e-5)


def test_fusion_adds_nothing_at_initialisation():
    cfg = get_config('tiny')
    fused = StarPoseSR(cfg).eval()
    assert all(fusion.beta.item() == 0.0 for fusion in fused.fusions) and len(fused.fusions) == 3
    plain = StarPoseSR(cfg.replace(use_cnn_branch=False)).eval()
    result = plain.load_state_dict(fused.state_dict(), strict=False)
    assert not result.missing_keys
    assert result.unexpected_keys and all(k.startswith(('cnn_branch.', 'fusions.')) for k in result.unexpected_keys)
    frames = random_windows(cfg)
    with torch.no_grad():
        torch.testing.assert_close(fused(frames), plain(frames), rtol=0, atol=0)
        for fusion in fused.fusions:
            fusion.beta.fill_(0.5)
        assert not torch.allclose(fused(frames), plain(frames))


def test_gradients_reach_every_parameter_through_the_compound_loss():
    cfg = get_config('tiny')
    model = StarPoseSR(cfg).train()
    pose_net = build_pose_net(cfg.pose_arch)
    loss_fn = CompoundLoss(pose_net, cfg.loss_lambda).train()
    frames = random_windows(cfg, batch=2)
    hr = torch.rand(2, 3, *HR_SIZE)
    heatmaps = torch.rand(2, 17, 64, 48)
    weight = torch.ones(2, 17)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)

    def backward():
        optimizer.zero_grad()
        loss_fn(model(frames), hr, heatmaps, weight)['total'].backward()

    backward()
    kernels = [m for m in model.modules() if isinstance(m, SCLeakyReLU)]
    assert len(kernels) == cfg.depth
    assert all(k.alpha.grad is not None and k.alpha.grad.abs() > 0 for k in kernels)
    assert all(f.beta.grad.abs() > 0 for f in model.fusions)
    # beta = 0 blocks the fusion path at init; one step makes beta non-zero and opens it.
    optimizer.step()
    backward()
    no_grad = [name for name, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not no_grad, f'parameters without gradient: {no_grad}'
    assert all(p.grad is None for p in pose_net.parameters()), 'the pose net must stay frozen'


# CPU half-precision convolutions are slow (a naive kernel): the paper-size cases take ~20 s each.
@pytest.mark.parametrize('dtype', [torch.bfloat16, torch.float16])
@pytest.mark.parametrize('name,scale', [('tiny', 4), pytest.param('paper', 4, marks=pytest.mark.slow),
                                        pytest.param('paper', 2, marks=pytest.mark.slow)])
def test_half_precision_autocast_is_finite(name, scale, dtype):
    torch.manual_seed(0)  # random weights: the bf16 error depends on them, so fix them
    cfg = get_config(name, scale=scale)
    model = StarPoseSR(cfg).eval()
    frames = random_windows(cfg, batch=1)
    with torch.no_grad():
        reference = model(frames)
        with torch.autocast('cpu', dtype=dtype):
            out = model(frames)
    assert torch.isfinite(out).all()
    assert (out.float() - reference).abs().mean() < 0.05


@pytest.mark.parametrize('ablation', sorted(ABLATIONS))
def test_ablation_switches_build_and_run(ablation):
    cfg = get_config('tiny', ablation)
    model = StarPoseSR(cfg).eval()
    with torch.no_grad():
        assert model(random_windows(cfg, batch=1)).shape == (1, 3, *HR_SIZE)
    kernels = {type(layer.attention.kernel).__name__ for layer in model.layers}
    assert kernels == ({'ReLU'} if ablation == 'relu_kernel' else {'SCLeakyReLU'})
    assert (model.cnn_branch is None) == (ablation == 'no_cnn_branch')
    assert cfg.window == (1 if ablation == 'no_temporal' else 5)
    assert cfg.loss_lambda == (0.0 if ablation == 'pixel_loss_only' else 10.0)


def test_ablation_presets_match_overrides():
    configs = {ablation: get_config('paper', ablation) for ablation in ABLATIONS}
    assert set(configs) == {'no_temporal', 'relu_kernel', 'no_cnn_branch', 'pixel_loss_only'}
    assert configs['no_temporal'] == get_config('paper', window=1)
    assert configs['relu_kernel'].attention_kernel == 'relu'


def test_paper_sr_size_is_the_papers_7_9_million_within_15_percent():
    for scale in (2, 4):
        params = sum(p.numel() for p in StarPoseSR(get_config('paper', scale=scale)).parameters())
        assert abs(params / 7.9e6 - 1) < 0.15, params


def test_config_validation_and_round_trip():
    cfg = get_config('paper', scale=4, target_frame='center')
    assert StarPoseConfig.from_dict(cfg.to_dict()) == cfg
    assert cfg.lr_size == (64, 48) and cfg.token_grid == (5, 8, 6)
    with pytest.raises(ValueError, match='scale must be 2 or 4'):
        get_config('paper', scale=3)
    with pytest.raises(ValueError, match='patch_size'):
        get_config('paper', patch_size=(2, 8, 8))
    with pytest.raises(ValueError, match='must be square'):
        get_config('paper', patch_size=(1, 8, 4))
    with pytest.raises(ValueError, match="unknown config 'huge'"):
        get_config('huge')
    with pytest.raises(ValueError, match=r"unknown field\(s\) \['depht'\]"):
        StarPoseConfig.from_dict({'depht': 3})


def test_report_components_add_up_and_json_is_written(tmp_path, capsys):
    from starpose_model import report

    out = tmp_path / 'report.json'
    assert report.main(['--configs', 'tiny', '--json', str(out)]) == 0
    data = json.loads(out.read_text())
    assert 'FlopCounterMode' in data['flop_counter'] and 'FlopCounterMode' in capsys.readouterr().out
    tiny = data['configs']['tiny']
    for scale, size in ((2, (128, 96)), (4, (64, 48))):
        entry = tiny[f'scale{scale}']
        model = StarPoseSR(get_config('tiny', scale=scale))
        assert entry['params_m'] == pytest.approx(sum(p.numel() for p in model.parameters()) / 1e6)
        parts = entry['components'].values()
        assert sum(c['params_m'] for c in parts) == pytest.approx(entry['params_m'])
        assert sum(c['gmacs'] for c in parts) == pytest.approx(entry['gmacs'])
        assert entry['input'] == f'{size[0]}x{size[1]}'
    # 8x8 patch tokens: 4x the pixels is 4x the token work.
    transformer = [tiny[f'scale{s}']['components']['transformer layers']['gmacs'] for s in (2, 4)]
    assert transformer[0] == pytest.approx(4 * transformer[1], rel=0.01)
    pose = tiny['pose_net']
    assert tiny['scale4']['sr_plus_pose']['gmacs'] == pytest.approx(tiny['scale4']['gmacs'] + pose['gmacs']['256x192'])
