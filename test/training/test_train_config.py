"""Training configs: shipped YAMLs select the paper setup and each ablation; schedule arithmetic; errors."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from starpose_training import state, train, train_config

ABLATION_FIELDS = {
    'no_temporal': ('window', 1),
    'relu_kernel': ('attention_kernel', 'relu'),
    'no_cnn_branch': ('use_cnn_branch', False),
    'pixel_loss_only': ('loss_lambda', 0.0),
}


@pytest.mark.parametrize('resolution, scale', [('128x96', 2), ('64x48', 4)])
def test_paper_configs_and_ablations(resolution, scale):
    full = train.model_config(train_config.load_config(f'paper_{resolution}'))
    assert (full.name, full.scale, full.window, full.loss_lambda) == ('paper', scale, 5, 10.0)
    assert full.attention_kernel == 'scleaky' and full.use_cnn_branch and full.pose_arch == 'hrnet_w48'
    schedule = train_config.Schedule.from_dict(train_config.load_config(f'paper_{resolution}')['schedule'])
    assert (schedule.epochs, schedule.batch_size, schedule.lr) == (300, 32, 1e-3)
    for ablation, (field, value) in ABLATION_FIELDS.items():
        config = train_config.load_config(f'paper_{resolution}_{ablation}')
        ablated = train.model_config(config)
        assert getattr(ablated, field) == value and getattr(full, field) != value
        assert ablated.scale == scale
        assert config['out_dir'].endswith(f'paper_{resolution}_{ablation}')


def test_tiny_synthetic_configs_are_causal_tiny_models():
    for resolution, scale in (('64x48', 4), ('128x96', 2)):
        config = train_config.load_config(f'tiny_synthetic_{resolution}')
        mcfg = train.model_config(config)
        assert (mcfg.name, mcfg.scale, mcfg.target_frame, mcfg.pose_arch) == ('tiny', scale, 'last', 'hrnet_tiny')
        assert config['pose']['train']['steps'] > 0


def test_paper_schedule_scales_with_the_run_length():
    # 300 epochs: x0.1 at epochs 170 and 260; 30 epochs: at 17 and 26; step-based runs keep the shape.
    assert train_config.Schedule().milestone_steps(steps_per_epoch=10) == [1700, 2600]
    assert train_config.Schedule(epochs=30).milestone_steps(steps_per_epoch=10) == [170, 260]
    assert train_config.Schedule(steps=600).milestone_steps(steps_per_epoch=7) == [340, 520]
    assert train_config.Schedule(epochs=30, milestones=[2.5]).milestone_steps(steps_per_epoch=4) == [10]


def test_overrides_and_extends(tmp_path):
    base = tmp_path / 'base.yaml'
    base.write_text('model: {name: tiny, overrides: {scale: 4}}\nschedule: {epochs: 3}\n')
    child = tmp_path / 'child.yaml'
    child.write_text('extends: base.yaml\nmodel: {ablation: relu_kernel}\n')
    config = train_config.load_config(child, ['schedule.lr=0.01', 'model.overrides.window=3'])
    assert config['schedule'] == {'epochs': 3, 'lr': 0.01}
    mcfg = train.model_config(config)
    assert (mcfg.scale, mcfg.window, mcfg.attention_kernel) == (4, 3, 'relu')


def test_bad_configs_name_the_problem(tmp_path):
    with pytest.raises(FileNotFoundError, match='no_such_config'):
        train_config.load_config('no_such_config')
    broken = tmp_path / 'broken.yaml'
    broken.write_text('model: [unclosed\n')
    with pytest.raises(ValueError, match='broken.yaml'):
        train_config.load_config(broken)
    with pytest.raises(ValueError, match='section.key=value'):
        train_config.load_config('paper_64x48', ['schedule.epochs'])
    with pytest.raises(ValueError, match='unknown schedule keys.*epoch_count'):
        train_config.Schedule.from_dict({'epoch_count': 3})
    with pytest.raises(ValueError, match='model.name'):
        train.model_config({'model': {}})


def test_atomic_save_replaces_without_leftovers(tmp_path):
    path = tmp_path / 'state.pt'
    state.atomic_save({'step': 1}, path)
    state.atomic_save({'step': 2}, path)
    assert torch.load(path)['step'] == 2
    assert [p.name for p in tmp_path.iterdir()] == ['state.pt']


def test_missing_pose_weights_are_a_clear_error(tmp_path):
    config = train_config.load_config('tiny_synthetic_64x48', [f'pose.checkpoint={tmp_path / "absent.pth"}'])
    with pytest.raises(FileNotFoundError, match='absent.pth'):
        train.load_frozen_pose_net(config, 'hrnet_tiny')


def test_hrnet_init_starts_from_near_zero_heatmaps():
    from starpose_model.hrnet import build_pose_net
    from starpose_training.train_pose import hrnet_init

    torch.manual_seed(0)
    images = torch.randn(2, 3, 256, 192)
    default = build_pose_net('hrnet_tiny').eval()(images).abs().mean()
    official = hrnet_init(build_pose_net('hrnet_tiny')).eval()(images).abs().mean()
    assert official < 0.01 < default


def test_every_shipped_config_has_only_known_keys():
    for path in sorted(train_config.CONFIG_DIR.glob('*.yaml')):
        train_config.check_config(train_config.load_config(path))


@pytest.mark.parametrize('override, named', [
    ('schedul.steps=2', 'schedul'), ('data.roott=/x', 'data.roott'), ('model.overrides.scal=4', 'model.overrides.scal'),
    ('pose.train.stpes=3', 'pose.train.stpes'), ('data.augment.shift=0.1', 'data.augment.shift'),
])
def test_unknown_keys_are_refused_by_name(override, named):
    config = train_config.load_config('small_real_64x48', [override])
    with pytest.raises(ValueError, match=f'unknown key.*{named}'):
        train_config.check_config(config)


def test_the_command_line_refuses_a_typo_in_one_line(tmp_path, capsys):
    with pytest.raises(SystemExit, match='unknown key.*schedul'):
        train.main(['tiny_synthetic_64x48', '--out', str(tmp_path), '--set', 'schedul.steps=2'])
    assert not any(tmp_path.iterdir())


def test_a_failed_save_removes_its_temporary_and_keeps_the_previous_state(tmp_path, monkeypatch):
    path = tmp_path / 'state.pt'
    state.atomic_save({'step': 1}, path)

    def full_disk(obj, target):
        Path(target).write_bytes(b'partial')
        raise RuntimeError('[enforce fail at inline_container.cc:672] . PytorchStreamWriter failed writing file '
                           'data/0: file write failed')
    monkeypatch.setattr(torch, 'save', full_disk)
    with pytest.raises(OSError, match=r'writing .*state.pt failed.*previous state.pt is unchanged'):
        state.atomic_save({'step': 2}, path)
    monkeypatch.undo()
    assert sorted(p.name for p in tmp_path.iterdir()) == ['state.pt'] and torch.load(path)['step'] == 1
