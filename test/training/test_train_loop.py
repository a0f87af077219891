"""The training loop on a tiny PoseTrack-format dataset: the loss falls, and a killed run resumes exactly.

CPU, fixed seed, the `tiny` configuration; each test takes seconds to tens of seconds here.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from starpose_model.checkpoint import load_inference_model
from starpose_model.hrnet import build_pose_net
from starpose_testing.posetrack_fixtures import make_video, write_dataset
from starpose_training import state, tasks, train, train_config
from starpose_training.dataset import build_dataset
from starpose_training.runtime import setup_runtime
from starpose_training.train_pose import save_pose_weights

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope='module')
def tiny_data(tmp_path_factory) -> Path:
    """Two 8-frame videos with two people per frame: 32 training windows."""
    root = tmp_path_factory.mktemp('posetrack')
    videos = [make_video(f'00000{i}_fixture', nframes=8, labeled=tuple(range(8)), vid_id=f'00000{i}',
                         people_per_frame=2) for i in (1, 2)]
    write_dataset(root, videos)
    return root


@pytest.fixture(scope='module')
def random_pose_weights(tmp_path_factory) -> Path:
    """A frozen pose net of the tiny architecture (random but fixed weights are enough to train against)."""
    torch.manual_seed(0)
    return save_pose_weights(build_pose_net('hrnet_tiny'), tmp_path_factory.mktemp('pose') / 'pose_net.pth')


def write_config(path: Path, data_root: Path, pose_weights: Path, out_dir: Path, **schedule) -> Path:
    config = {
        'out_dir': str(out_dir),
        'model': {'name': 'tiny', 'overrides': {'target_frame': 'last'}},
        'pose': {'checkpoint': str(pose_weights)},
        'data': {'root': str(data_root), 'train': 'annotations/val', 'augment': True},
        'schedule': {'epochs': 1, 'batch_size': 2, 'num_workers': 0, 'log_every': 1, 'checkpoint_every': 2,
                     'image_every': 0, 'threads': 1, 'seed': 3, **schedule},
    }
    path.write_text(yaml.safe_dump(config))
    return path


def read_losses(out_dir: Path) -> dict[int, float]:
    records = [json.loads(line) for line in (out_dir / train.METRICS_FILE).read_text().splitlines()]
    steps = [r['step'] for r in records]
    assert steps == sorted(set(steps)), f'each step must be logged once, got {steps}'
    return {r['step']: r['loss'] for r in records}


def logged_steps(out_dir: Path) -> int:
    path = out_dir / train.METRICS_FILE
    return path.read_text().count('\n') if path.exists() else 0


def test_smoke_run_loss_falls_and_writes_a_loadable_checkpoint(tmp_path, tiny_data, random_pose_weights):
    # Overfit setting: the same 2 windows every step, no augmentation, constant learning rate.
    config = write_config(tmp_path / 'smoke.yaml', tiny_data, random_pose_weights, tmp_path / 'run',
                          epochs=15, lr=3e-3, milestones=[], image_every=6)
    overrides = ['data.augment=false']
    cfg = train_config.load_config(config, overrides)
    mcfg = cfg.model.star_pose_config()
    two_windows = torch.utils.data.Subset(build_dataset(cfg.data, 'train', mcfg, mcfg.window, augment=False), [0, 1])
    pose_net = tasks.load_pose_net(cfg.pose_weights, mcfg.pose_arch)
    from starpose_model.loss import CompoundLoss
    from starpose_model.star_pose import StarPoseSR

    torch.manual_seed(0)
    task = tasks.SRTask(StarPoseSR(mcfg), CompoundLoss(pose_net, mcfg.loss_lambda), target=mcfg.target_frame)
    summary = train.fit(task, two_windows, cfg.schedule, tmp_path / 'run', setup_runtime('cpu'), resume=None)
    losses = list(read_losses(tmp_path / 'run').values())
    assert summary['steps'] == len(losses) == 15
    first, last = sum(losses[:3]) / 3, sum(losses[-3:]) / 3
    assert last < 0.9 * first, f'loss did not fall: first steps {losses[:3]}, last steps {losses[-3:]}'
    assert list((tmp_path / 'run' / 'tensorboard').iterdir()), 'no TensorBoard event file written'

    # The command-line path writes the inference checkpoint the node and bag replay load.
    train.main([str(config), '--out', str(tmp_path / 'cli'), '--max-steps', '2'])
    model = load_inference_model(tmp_path / 'cli' / train.FINAL_CHECKPOINT)
    sr_image, keypoints, heatmaps = model(torch.zeros(1, mcfg.window, *mcfg.lr_size, 3, dtype=torch.uint8))
    assert sr_image.shape == (1, 256, 192, 3) and keypoints.shape == (1, 17, 3)


def test_stopped_run_resumes_with_the_same_losses(tmp_path, tiny_data, random_pose_weights):
    # 16 samples / batch 2 = 8 steps per epoch; 10 steps cross an epoch boundary and an LR milestone.
    schedule = {'epochs': 2, 'milestones': [1.0]}
    reference = write_config(tmp_path / 'a.yaml', tiny_data, random_pose_weights, tmp_path / 'a', **schedule)
    train.main([str(reference), '--max-steps', '10', '--set', 'data.train=annotations/val/000001_fixture.json'])
    expected = read_losses(tmp_path / 'a')
    assert len(expected) == 10 and len(set(expected.values())) == 10

    resumed = write_config(tmp_path / 'b.yaml', tiny_data, random_pose_weights, tmp_path / 'b', **schedule)
    args = [str(resumed), '--set', 'data.train=annotations/val/000001_fixture.json']
    train.main([*args, '--max-steps', '5'])           # stops mid-epoch (state saved at step 5)
    assert len(read_losses(tmp_path / 'b')) == 5
    train.main([*args, '--max-steps', '10', '--set', 'schedule.num_workers=1'])  # worker count is irrelevant
    assert read_losses(tmp_path / 'b') == expected


def test_killed_process_resumes_from_its_last_checkpoint(tmp_path, tiny_data, random_pose_weights):
    schedule = {'epochs': 1, 'checkpoint_every': 3}
    reference = write_config(tmp_path / 'a.yaml', tiny_data, random_pose_weights, tmp_path / 'a', **schedule)
    train.main([str(reference), '--max-steps', '8'])
    expected = read_losses(tmp_path / 'a')

    config = write_config(tmp_path / 'b.yaml', tiny_data, random_pose_weights, tmp_path / 'b', **schedule)
    state = tmp_path / 'b' / train.STATE_FILE
    process = subprocess.Popen([sys.executable, '-m', 'starpose_training.train', str(config), '--max-steps', '8'],
                               cwd=REPO_ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        while not (state.exists() and logged_steps(tmp_path / 'b') >= 4):
            assert process.poll() is None, f'training exited early: {process.stderr.read().decode()[-2000:]}'
            assert time.monotonic() < deadline, 'training made no progress'
            time.sleep(0.05)
    finally:
        os.kill(process.pid, signal.SIGKILL)
        process.wait()
    assert process.returncode == -signal.SIGKILL
    killed_at = len(read_losses(tmp_path / 'b'))
    assert 4 <= killed_at < 8

    train.main([str(config), '--max-steps', '8'])
    assert read_losses(tmp_path / 'b') == expected


@pytest.mark.parametrize('signum', [signal.SIGINT, signal.SIGTERM], ids=['SIGINT', 'SIGTERM'])
def test_a_signalled_run_saves_its_state_at_that_step_and_resumes_exactly(tmp_path, tiny_data, random_pose_weights,
                                                                          signum):
    # checkpoints every 100 steps: only the stop itself can have saved the state; a DataLoader worker
    # runs, and gets the signal too (as Ctrl-C reaches the whole process group)
    schedule = {'epochs': 2, 'checkpoint_every': 100, 'num_workers': 1}
    reference = write_config(tmp_path / 'a.yaml', tiny_data, random_pose_weights, tmp_path / 'a', **schedule)
    train.main([str(reference), '--max-steps', '24'])
    expected = read_losses(tmp_path / 'a')

    config = write_config(tmp_path / 'b.yaml', tiny_data, random_pose_weights, tmp_path / 'b', **schedule)
    process = subprocess.Popen([sys.executable, '-m', 'starpose_training.train', str(config), '--max-steps', '24'],
                               cwd=REPO_ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                               start_new_session=True, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + 120
    while logged_steps(tmp_path / 'b') < 3:
        assert process.poll() is None, f'training exited early: {process.stderr.read().decode()[-2000:]}'
        assert time.monotonic() < deadline, 'training made no progress'
        time.sleep(0.02)
    os.killpg(process.pid, signum)  # the whole group, as a terminal's Ctrl-C
    _, err = process.communicate(timeout=60)
    err = err.decode()
    assert process.returncode == 130, err
    assert 'Traceback' not in err and f'{signal.Signals(signum).name} at step' in err, err
    stopped_at = torch.load(tmp_path / 'b' / train.STATE_FILE, weights_only=False)['step']
    assert 3 <= stopped_at < 24 and len(read_losses(tmp_path / 'b')) == stopped_at

    train.main([str(config), '--max-steps', '24'])
    assert read_losses(tmp_path / 'b') == expected


def test_two_process_ddp_run_on_cpu(tmp_path, tiny_data, random_pose_weights):
    # torchrun with the gloo backend: rank 0 alone logs and writes the checkpoint.
    config = write_config(tmp_path / 'ddp.yaml', tiny_data, random_pose_weights, tmp_path / 'ddp', batch_size=4)
    result = subprocess.run([sys.executable, '-m', 'torch.distributed.run', '--standalone', '--nproc_per_node', '2',
                             '-m', 'starpose_training.train', str(config), '--max-steps', '2'],
                            cwd=REPO_ROOT, capture_output=True, text=True, timeout=300,
                            env=dict(os.environ, OMP_NUM_THREADS='1'))
    assert result.returncode == 0, result.stderr[-3000:]
    assert sorted(read_losses(tmp_path / 'ddp')) == [1, 2]
    state = torch.load(tmp_path / 'ddp' / train.STATE_FILE, weights_only=False)
    assert state['samples_done'] == 2 * 2 and len(state['rng']) == 2  # 2 samples per rank and step
    load_inference_model(tmp_path / 'ddp' / train.FINAL_CHECKPOINT)


def test_resuming_with_other_settings_is_refused_by_name(tmp_path, tiny_data, random_pose_weights, capsys):
    config = write_config(tmp_path / 'a.yaml', tiny_data, random_pose_weights, tmp_path / 'a', epochs=1)
    train.main([str(config), '--max-steps', '3'])
    with pytest.raises(SystemExit, match=r'other settings \(schedule.lr\).*--resume none'):
        train.main([str(config), '--max-steps', '6', '--set', 'schedule.lr=0.01'])
    with pytest.raises(SystemExit, match=r'other settings \(model.ablation\)'):
        train.main([str(config), '--max-steps', '6', '--set', 'model.ablation=pixel_loss_only'])
    assert len(read_losses(tmp_path / 'a')) == 3  # nothing was overwritten
    train.main([str(config), '--max-steps', '6', '--set', 'schedule.lr=0.01', '--resume', 'none'])
    assert len(read_losses(tmp_path / 'a')) == 6
    with pytest.raises(SystemExit, match='--stage pose or --stage sr'):
        train.main([str(config), '--resume', str(tmp_path / 'a' / train.STATE_FILE)])


def test_a_state_of_the_other_stage_is_refused(tmp_path):
    saved = {'task': 'pose', 'config': {}}
    with pytest.raises(ValueError, match='state of the pose stage, not sr'):
        state.check_resumable(saved, tmp_path / 'train_state.pt', 'sr', {})
    assert state.config_differences({'a': {'b': 1, 'max_steps': 3}}, {'a': {'b': 2, 'max_steps': 9}}) == ['a.b']


@pytest.mark.parametrize('override', ['schedule.amp=fp8', 'data.train=annotations/missing'])
def test_user_errors_of_the_command_line_are_one_line(tmp_path, tiny_data, random_pose_weights, override):
    config = write_config(tmp_path / 'a.yaml', tiny_data, random_pose_weights, tmp_path / 'a')
    with pytest.raises(SystemExit, match='starpose-train: error: '):
        train.main([str(config), '--max-steps', '1', '--set', override])


def test_a_corrupt_training_state_is_one_line(tmp_path, tiny_data, random_pose_weights):
    config = write_config(tmp_path / 'a.yaml', tiny_data, random_pose_weights, tmp_path / 'a')
    (tmp_path / 'a').mkdir()
    (tmp_path / 'a' / train.STATE_FILE).write_bytes(b'\x80\x04garbage')
    with pytest.raises(SystemExit, match='not a readable training state.*--resume none'):
        train.main([str(config), '--max-steps', '1'])
    assert (tmp_path / 'a' / train.STATE_FILE).read_bytes() == b'\x80\x04garbage'  # left for the user


def test_a_diverged_loss_is_one_line_naming_the_last_good_state(tmp_path, tiny_data, random_pose_weights,
                                                               monkeypatch):
    config = write_config(tmp_path / 'a.yaml', tiny_data, random_pose_weights, tmp_path / 'a', epochs=1)
    real_loss, calls = tasks.SRTask.loss, []

    def diverging(self, model, batch):
        loss, parts = real_loss(self, model, batch)
        calls.append(1)
        return (loss * float('nan') if len(calls) == 3 else loss), parts

    monkeypatch.setattr(tasks.SRTask, 'loss', diverging)
    with pytest.raises(SystemExit, match=r'starpose-train: error: \[sr\] loss is nan at step 2; last good state: '):
        train.main([str(config), '--max-steps', '6'])
