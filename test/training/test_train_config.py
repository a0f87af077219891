"""Training configs: shipped YAMLs select the paper setup and each ablation; schedule arithmetic; errors."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch

from starpose_training import state, tasks, train, train_config
from starpose_training.augment import AugmentConfig

ABLATION_FIELDS = {
    'no_temporal': ('window', 1),
    'relu_kernel': ('attention_kernel', 'relu'),
    'no_cnn_branch': ('use_cnn_branch', False),
    'pixel_loss_only': ('loss_lambda', 0.0),
}


@pytest.mark.parametrize('resolution, scale', [('128x96', 2), ('64x48', 4)])
def test_paper_configs_and_ablations(resolution, scale):
    full = train_config.load_config(f'paper_{resolution}').model.star_pose_config()
    assert (full.name, full.scale, full.window, full.loss_lambda) == ('paper', scale, 5, 10.0)
    assert full.attention_kernel == 'scleaky' and full.use_cnn_branch and full.pose_arch == 'hrnet_w48'
    schedule = train_config.load_config(f'paper_{resolution}').schedule
    assert (schedule.epochs, schedule.batch_size, schedule.lr) == (300, 32, 1e-3)
    for ablation, (field, value) in ABLATION_FIELDS.items():
        config = train_config.load_config(f'paper_{resolution}_{ablation}')
        ablated = config.model.star_pose_config()
        assert getattr(ablated, field) == value and getattr(full, field) != value
        assert ablated.scale == scale
        assert config.out_dir.endswith(f'paper_{resolution}_{ablation}')


def test_tiny_synthetic_configs_are_causal_tiny_models():
    for resolution, scale in (('64x48', 4), ('128x96', 2)):
        config = train_config.load_config(f'tiny_synthetic_{resolution}')
        mcfg = config.model.star_pose_config()
        assert (mcfg.name, mcfg.scale, mcfg.target_frame, mcfg.pose_arch) == ('tiny', scale, 'last', 'hrnet_tiny')
        assert config.pose.train.steps > 0


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
    assert config.schedule == train_config.Schedule(epochs=3, lr=0.01)
    mcfg = config.model.star_pose_config()
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
    with pytest.raises(ValueError, match='unknown key schedule.epoch_count'):
        train_config.TrainConfig.from_dict({'model': {'name': 'tiny'}, 'schedule': {'epoch_count': 3}})
    with pytest.raises(ValueError, match='model.name is missing'):
        train_config.TrainConfig.from_dict({'model': {}})
    with pytest.raises(train_config.ConfigError, match='the preset is model.name'):
        train_config.TrainConfig.from_dict({'model': {'name': 'tiny', 'overrides': {'name': 'paper'}}})


def test_atomic_save_replaces_without_leftovers(tmp_path):
    path = tmp_path / 'state.pt'
    state.atomic_save({'step': 1}, path)
    state.atomic_save({'step': 2}, path)
    assert torch.load(path)['step'] == 2
    assert [p.name for p in tmp_path.iterdir()] == ['state.pt']


def test_missing_pose_weights_are_a_clear_error(tmp_path):
    config = train_config.load_config('tiny_synthetic_64x48', [f'pose.checkpoint={tmp_path / "absent.pth"}'])
    with pytest.raises(FileNotFoundError, match='absent.pth'):
        tasks.load_pose_net(config.pose_weights, 'hrnet_tiny')


def test_hrnet_init_starts_from_near_zero_heatmaps():
    from starpose_model.hrnet import build_pose_net
    from starpose_training.train_pose import hrnet_init

    torch.manual_seed(0)
    images = torch.randn(2, 3, 256, 192)
    default = build_pose_net('hrnet_tiny').eval()(images).abs().mean()
    official = hrnet_init(build_pose_net('hrnet_tiny')).eval()(images).abs().mean()
    assert official < 0.01 < default


def test_every_shipped_config_has_only_known_keys_and_reads_back_from_its_plain_form():
    for path in sorted(train_config.CONFIG_DIR.glob('*.yaml')):
        config = train_config.load_config(path)  # the loader refuses unknown keys and wrong types
        assert train_config.TrainConfig.from_dict(config.to_dict()) == config, path


@pytest.mark.parametrize('override, named', [
    ('schedul.steps=2', 'schedul'), ('data.roott=/x', 'data.roott'), ('model.overrides.scal=4', 'model.overrides.scal'),
    ('pose.train.stpes=3', 'pose.train.stpes'), ('data.augment.shift=0.1', 'data.augment.shift'),
])
def test_unknown_keys_are_refused_by_name(override, named):
    with pytest.raises(ValueError, match=f'unknown key {named}'):
        train_config.load_config('small_real_64x48', [override])


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


@pytest.mark.parametrize('override, named', [
    ('schedul.steps=2', 'schedule'), ('pose.train.stpes=3', 'pose.train.steps'),
    ('data.augment.shift=0.1', 'data.augment.shift_std'),
    ('data.sources=[{root: x, trian: y}]', r'data.sources\[0\].train'),
])
def test_an_unknown_key_names_the_closest_known_one(override, named):
    with pytest.raises(train_config.ConfigError, match=rf'\(did you mean {named}\?\); known in '):
        train_config.load_config('small_real_64x48', [override])


@pytest.mark.parametrize('override, message', [
    ('schedule.lr=fast', "schedule.lr must be float, got str 'fast'"),
    ('schedule.steps=true', 'schedule.steps must be int or null, got bool True'),
    ('schedule.batch_size=1.5', 'schedule.batch_size must be int, got float 1.5'),
    ('schedule.amp=fp8', "schedule.amp must be one of 'auto', 'bf16', 'fp16', 'off', got str 'fp8'"),
    ('schedule.milestones=[1, x]', "schedule.milestones[1] must be float, got str 'x'"),
    ('data.augment=3', 'data.augment must be bool or a mapping of AugmentConfig fields, got int 3'),
    ('data.augment.scale_range=[1]', 'data.augment.scale_range must be a list of 2 float, got list [1]'),
    ('data.sources=[{root: x, repeat: two}]', "data.sources[0].repeat must be int, got str 'two'"),
    ('model.overrides.window=five', "model.overrides.window must be int, got str 'five'"),
    ('pose.train=3', 'pose.train must be a mapping of Schedule fields or null, got int 3'),
])
def test_a_wrong_type_names_the_key_the_expected_and_the_given_type(override, message):
    with pytest.raises(train_config.ConfigError) as refused:
        train_config.load_config('small_real_64x48', [override])
    assert str(refused.value) == f'training config: {message}'


def test_values_take_the_declared_types_and_the_config_is_frozen():
    config = train_config.load_config('small_real_64x48', ['schedule.lr=1', 'schedule.milestones=[2]',
                                                            'data.augment.scale_range=[1, 2]'])
    assert isinstance(config.schedule.lr, float) and config.schedule.milestones == (2.0,)
    assert isinstance(config.data.augment, AugmentConfig) and config.data.augment.scale_range == (1.0, 2.0)
    assert config.data.sources[0] == train_config.DataSource('outputs/real/vtest', 'annotations/train', 2)
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.schedule.lr = 0.1


def test_the_command_line_refuses_a_wrong_type_in_one_line(tmp_path):
    with pytest.raises(SystemExit, match=r"^starpose-train: error: training config: schedule\.lr must be float, "
                                         r"got str 'fast'$"):
        train.main(['tiny_synthetic_64x48', '--out', str(tmp_path), '--set', 'schedule.lr=fast'])
    assert not any(tmp_path.iterdir())


def test_a_state_saved_with_the_raw_yaml_mapping_still_resumes(tmp_path):
    # states written before configs were typed hold the YAML mapping as read, without the defaults
    raw = train_config.read_yaml(train_config.resolve_config_path('tiny_synthetic_64x48'))
    config = train_config.load_config('tiny_synthetic_64x48')
    state_path = tmp_path / 'train_state.pt'
    spelt_out = {**raw, 'out_dir': 'moved', 'schedule': {**raw['schedule'], 'gamma': 0.1, 'max_steps': 7}}
    state.check_resumable({'task': 'sr', 'config': spelt_out}, state_path, 'sr', config)
    other_lr = {**raw, 'schedule': {**raw['schedule'], 'lr': 0.5}}
    with pytest.raises(ValueError, match=r'other settings \(schedule\.lr\)'):
        state.check_resumable({'task': 'sr', 'config': other_lr}, state_path, 'sr', config)
    with pytest.raises(ValueError, match=r'settings this version does not read .*schedule\.stpes'):
        state.check_resumable({'task': 'sr', 'config': {**raw, 'schedule': {'stpes': 1}}}, state_path, 'sr', config)


def test_the_training_docs_name_every_config_key():
    text = (Path(__file__).resolve().parents[2] / 'docs' / 'training.md').read_text()
    sections = (train_config.TrainConfig, train_config.ModelSection, train_config.PoseSection,
                train_config.DataSection, train_config.DataSource, train_config.Schedule)
    missing = [f'{section.__name__}.{f.name}' for section in sections for f in dataclasses.fields(section)
               if f'`{f.name}`' not in text]
    assert not missing, f'docs/training.md does not describe {missing}'
