"""HRNet pose nets: official parameter counts, names and shapes, strict/mmpose loading, official forward.

The reference here is written from the official deep-high-resolution-net.pytorch construction
rules and forward (stem, Bottleneck layer1, transitions, exchange units, 1x1 head), independently
of `starpose_model.hrnet`: `official_spec` lists the state-dict names and shapes the official
code creates for a YAML configuration, and `official_forward` runs a state dict with
`torch.nn.functional` ops, finding the layers from the key structure alone.
"""
import re

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from starpose_model.checkpoint import CheckpointError
from starpose_model.hrnet import IMAGENET_MEAN, IMAGENET_STD, build_pose_net, imagenet_normalize, load_pose_checkpoint

torch.set_num_threads(2)


def _bn_spec(prefix, channels):
    return {f'{prefix}.weight': (channels,), f'{prefix}.bias': (channels,), f'{prefix}.running_mean': (channels,),
            f'{prefix}.running_var': (channels,), f'{prefix}.num_batches_tracked': ()}


def official_spec(width, joints=17):
    """Names and shapes of the official PoseHighResolutionNet for the W{width} YAML (STAGE2-4, 4 blocks)."""
    spec = {'conv1.weight': (64, 3, 3, 3), **_bn_spec('bn1', 64), 'conv2.weight': (64, 64, 3, 3), **_bn_spec('bn2', 64)}
    inplanes = 64
    for b in range(4):  # layer1: 4 Bottlenecks, planes 64, expansion 4
        p = f'layer1.{b}'
        spec.update({f'{p}.conv1.weight': (64, inplanes, 1, 1), **_bn_spec(f'{p}.bn1', 64),
                     f'{p}.conv2.weight': (64, 64, 3, 3), **_bn_spec(f'{p}.bn2', 64),
                     f'{p}.conv3.weight': (256, 64, 1, 1), **_bn_spec(f'{p}.bn3', 256)})
        if b == 0:
            spec.update({f'{p}.downsample.0.weight': (256, 64, 1, 1), **_bn_spec(f'{p}.downsample.1', 256)})
        inplanes = 256
    previous = [256]
    stages = [(2, 1, 2), (3, 4, 3), (4, 3, 4)]  # (stage number, modules, branches)
    for number, modules, branches in stages:
        channels = [width * 2 ** i for i in range(branches)]
        t = f'transition{number - 1}'
        for i, c in enumerate(channels):
            if i < len(previous):
                if previous[i] != c:
                    spec.update({f'{t}.{i}.0.weight': (c, previous[i], 3, 3), **_bn_spec(f'{t}.{i}.1', c)})
            else:
                for j in range(i + 1 - len(previous)):
                    out = c if j == i - len(previous) else previous[-1]
                    spec.update({f'{t}.{i}.{j}.0.weight': (out, previous[-1], 3, 3), **_bn_spec(f'{t}.{i}.{j}.1', out)})
        for m in range(modules):
            p = f'stage{number}.{m}'
            for b, c in enumerate(channels):
                for k in range(4):
                    q = f'{p}.branches.{b}.{k}'
                    spec.update({f'{q}.conv1.weight': (c, c, 3, 3), **_bn_spec(f'{q}.bn1', c),
                                 f'{q}.conv2.weight': (c, c, 3, 3), **_bn_spec(f'{q}.bn2', c)})
            outputs = 1 if (number == 4 and m == modules - 1) else branches
            for i in range(outputs):
                for j in range(branches):
                    f = f'{p}.fuse_layers.{i}.{j}'
                    if j > i:
                        spec.update({f'{f}.0.weight': (channels[i], channels[j], 1, 1),
                                     **_bn_spec(f'{f}.1', channels[i])})
                    elif j < i:
                        for k in range(i - j):
                            out = channels[i] if k == i - j - 1 else channels[j]
                            spec.update({f'{f}.{k}.0.weight': (out, channels[j], 3, 3), **_bn_spec(f'{f}.{k}.1', out)})
        previous = channels
    spec.update({'final_layer.weight': (joints, width, 1, 1), 'final_layer.bias': (joints,)})
    return spec


def random_state_dict(spec, seed=0, dtype=torch.float64):
    """Random weights with sane activations: He-scaled convs, random BN affine and running statistics."""
    g = torch.Generator().manual_seed(seed)
    sd = {}
    for name, shape in spec.items():
        if name.endswith('num_batches_tracked'):
            sd[name] = torch.tensor(7)
        elif name.endswith('running_var'):
            sd[name] = torch.rand(shape, generator=g, dtype=dtype) + 0.5
        elif name.endswith('running_mean') or name.endswith('bias'):
            sd[name] = 0.1 * torch.randn(shape, generator=g, dtype=dtype)
        elif len(shape) == 1:  # BN weight
            sd[name] = 0.5 + 0.5 * torch.rand(shape, generator=g, dtype=dtype)
        else:
            fan_in = shape[1] * shape[2] * shape[3]
            sd[name] = torch.randn(shape, generator=g, dtype=dtype) * (2.0 / fan_in) ** 0.5 * 0.5
    return sd


def official_forward(sd, x):
    """The official forward, driven only by the state-dict keys (eval-mode BN)."""
    def conv(name, t, stride=1):
        w = sd[f'{name}.weight']
        return F.conv2d(t, w, sd.get(f'{name}.bias'), stride, w.shape[-1] // 2)

    def bn(name, t):
        return F.batch_norm(t, sd[f'{name}.running_mean'], sd[f'{name}.running_var'], sd[f'{name}.weight'],
                            sd[f'{name}.bias'], False, 0.1, 1e-5)

    def indices(pattern):
        return sorted({int(m.group(1)) for k in sd if (m := re.fullmatch(pattern, k))})

    def conv_bn(prefix, t, stride, relu):  # Sequential(conv, bn[, relu]) named prefix.0 / prefix.1
        t = bn(f'{prefix}.1', conv(f'{prefix}.0', t, stride))
        return F.relu(t) if relu else t

    x = F.relu(bn('bn1', conv('conv1', x, 2)))
    x = F.relu(bn('bn2', conv('conv2', x, 2)))
    for b in indices(r'layer1\.(\d+)\.conv1\.weight'):
        p = f'layer1.{b}'
        out = F.relu(bn(f'{p}.bn1', conv(f'{p}.conv1', x)))
        out = F.relu(bn(f'{p}.bn2', conv(f'{p}.conv2', out)))
        out = bn(f'{p}.bn3', conv(f'{p}.conv3', out))
        residual = conv_bn(f'{p}.downsample', x, 1, False) if f'{p}.downsample.0.weight' in sd else x
        x = F.relu(out + residual)
    features = [x]
    for number in (2, 3, 4):
        t = f'transition{number - 1}'
        num_branches = len(indices(rf'stage{number}\.0\.branches\.(\d+)\..*'))
        inputs = []
        for i in range(num_branches):
            if i < len(features):
                has_conv = f'{t}.{i}.0.weight' in sd
                inputs.append(conv_bn(f'{t}.{i}', features[i], 1, True) if has_conv else features[i])
            else:
                y = features[-1]
                for j in indices(rf'{t}\.{i}\.(\d+)\.0\.weight'):
                    y = conv_bn(f'{t}.{i}.{j}', y, 2, True)
                inputs.append(y)
        for m in indices(rf'stage{number}\.(\d+)\.branches\.0\..*'):
            p = f'stage{number}.{m}'
            for b in range(num_branches):
                y = inputs[b]
                for k in indices(rf'{p}\.branches\.{b}\.(\d+)\.conv1\.weight'):
                    q = f'{p}.branches.{b}.{k}'
                    out = F.relu(bn(f'{q}.bn1', conv(f'{q}.conv1', y)))
                    y = F.relu(bn(f'{q}.bn2', conv(f'{q}.conv2', out)) + y)
                inputs[b] = y
            fused = []
            for i in indices(rf'{p}\.fuse_layers\.(\d+)\..*') or [0]:
                total = 0
                for j in range(num_branches):
                    f = f'{p}.fuse_layers.{i}.{j}'
                    if j == i:
                        y = inputs[j]
                    elif j > i:
                        y = F.interpolate(conv_bn(f, inputs[j], 1, False), scale_factor=2 ** (j - i), mode='nearest')
                    else:
                        steps = indices(rf'{f}\.(\d+)\.0\.weight')
                        y = inputs[j]
                        for k in steps:
                            y = conv_bn(f'{f}.{k}', y, 2, relu=k != steps[-1])
                    total = total + y
                fused.append(F.relu(total))
            inputs = fused
        features = inputs
    return conv('final_layer', features[0])


@pytest.mark.parametrize(('arch', 'millions'), [('hrnet_w48', 63.6), ('hrnet_w32', 28.5)])
def test_official_parameter_counts(arch, millions):
    model = build_pose_net(arch)
    assert sum(p.numel() for p in model.parameters()) / 1e6 == pytest.approx(millions, abs=0.05)


@pytest.mark.parametrize(('arch', 'width'), [('hrnet_w48', 48), ('hrnet_w32', 32)])
def test_state_dict_names_and_shapes_equal_official(arch, width):
    model_shapes = {k: tuple(v.shape) for k, v in build_pose_net(arch).state_dict().items()}
    assert model_shapes == official_spec(width)


def test_official_state_dict_loads_strictly_and_forward_matches_official(tmp_path):
    sd = random_state_dict(official_spec(32))
    path = tmp_path / 'pose_hrnet_w32_256x192.pth'
    torch.save(sd, path)
    model = load_pose_checkpoint(build_pose_net('hrnet_w32').double().eval(), path)
    for name, value in model.state_dict().items():
        assert torch.equal(value, sd[name]), name
    x = torch.randn(1, 3, 128, 96, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    with torch.no_grad():
        ours = model(x)
        reference = official_forward(sd, x)
    assert ours.shape == (1, 17, 32, 24)
    assert reference.abs().max() > 1e-3  # the comparison is not between two near-zero maps
    torch.testing.assert_close(ours, reference, rtol=1e-9, atol=1e-9)


def _tiny_state_dict():
    return {k: torch.randn_like(v.float()).to(v.dtype) if v.is_floating_point() else v
            for k, v in build_pose_net('hrnet_tiny').state_dict().items()}


@pytest.mark.parametrize('head_prefix', ['head.', 'keypoint_head.'])
def test_mmpose_checkpoint_loads_through_same_function(tmp_path, head_prefix):
    sd = _tiny_state_dict()
    wrapped = {('' if k.startswith('final_layer') else 'backbone.') + k: v for k, v in sd.items()}
    wrapped = {(head_prefix + k if k.startswith('final_layer') else k): v for k, v in wrapped.items()}
    path = tmp_path / 'mmpose.pth'
    torch.save({'meta': {'epoch': 210, 'mmpose_version': '1.3.1'}, 'state_dict': wrapped}, path)
    model = load_pose_checkpoint(build_pose_net('hrnet_tiny'), path)
    for name, value in model.state_dict().items():
        assert torch.equal(value, sd[name]), name


def test_data_parallel_prefix_is_stripped(tmp_path):
    sd = _tiny_state_dict()
    torch.save({f'module.{k}': v for k, v in sd.items()}, tmp_path / 'dp.pth')
    model = load_pose_checkpoint(build_pose_net('hrnet_tiny'), tmp_path / 'dp.pth')
    assert torch.equal(model.final_layer.weight, sd['final_layer.weight'])


def test_mismatched_checkpoint_names_every_problem(tmp_path):
    sd = _tiny_state_dict()
    sd['stage2.0.branches.0.0.conv1.weights'] = sd.pop('stage2.0.branches.0.0.conv1.weight')
    sd['final_layer.weight'] = torch.zeros(15, 8, 1, 1)
    torch.save(sd, tmp_path / 'bad.pth')
    model = build_pose_net('hrnet_tiny')
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(CheckpointError) as error:
        load_pose_checkpoint(model, tmp_path / 'bad.pth')
    message = str(error.value)
    assert 'bad.pth' in message
    assert 'missing keys (1): stage2.0.branches.0.0.conv1.weight' in message
    assert 'unexpected keys (1): stage2.0.branches.0.0.conv1.weights' in message
    assert 'final_layer.weight: checkpoint (15, 8, 1, 1) vs model (17, 8, 1, 1)' in message
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())  # nothing half-loaded


def test_w48_checkpoint_into_w32_model_is_rejected(tmp_path):
    torch.save({k: torch.zeros(s) for k, s in official_spec(48).items()}, tmp_path / 'w48.pth')
    with pytest.raises(CheckpointError, match='shape mismatches'):
        load_pose_checkpoint(build_pose_net('hrnet_w32'), tmp_path / 'w48.pth')


@pytest.mark.parametrize('content', ['garbage', 'list', 'empty_dict', 'missing'])
def test_non_checkpoint_files_give_clear_errors(tmp_path, content):
    path = tmp_path / 'file.pth'
    if content == 'garbage':
        path.write_bytes(b'\x00not a checkpoint' * 10)
    elif content == 'list':
        torch.save([1, 2, 3], path)
    elif content == 'empty_dict':
        torch.save({}, path)
    with pytest.raises(CheckpointError, match='file.pth'):
        load_pose_checkpoint(build_pose_net('hrnet_tiny'), path)


def test_unknown_arch():
    with pytest.raises(ValueError, match='hrnet_w18'):
        build_pose_net('hrnet_w18')


def test_tiny_pose_net_maps_256x192_to_64x48_heatmaps():
    with torch.no_grad():
        assert build_pose_net('hrnet_tiny').eval()(torch.rand(2, 3, 256, 192)).shape == (2, 17, 64, 48)


def test_imagenet_normalize():
    images = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1).expand(2, 3, 4, 4)
    assert torch.allclose(imagenet_normalize(images), torch.zeros(2, 3, 4, 4), atol=1e-7)
    ones = imagenet_normalize(torch.ones(1, 3, 1, 1)).flatten()
    expected = torch.tensor([(1 - m) / s for m, s in zip(IMAGENET_MEAN, IMAGENET_STD, strict=True)])
    assert torch.allclose(ones, expected)


def test_checkpoint_with_python_objects_needs_explicit_trust(tmp_path):
    sd = _tiny_state_dict()
    torch.save({'meta': {'dataset_meta': {'sigmas': np.array([0.026, 0.025])}}, 'state_dict': sd}, tmp_path / 'mm.pth')
    with pytest.raises(CheckpointError, match=r'mm.pth: cannot be read without running code.*trusted=True'):
        load_pose_checkpoint(build_pose_net('hrnet_tiny'), tmp_path / 'mm.pth')
    model = load_pose_checkpoint(build_pose_net('hrnet_tiny'), tmp_path / 'mm.pth', trusted=True)
    assert torch.equal(model.final_layer.weight, sd['final_layer.weight'])
