"""Ctrl-C and SIGTERM end every command with one line, exit 130, and outputs that can still be read.

The long-running tools get a real signal in their own process (a background CI shell starts
children with SIGINT ignored, so each child gets the default handler back); the short ones,
whose only long step is one call, have that call interrupted in-process.
(`starpose-bag-eval`, `starpose-train` and the node: test_bag_eval.py, test_train_loop.py,
test/ros/test_node_signals.py.)
"""
from __future__ import annotations

import signal
import subprocess
import sys
import time

import cv2
import numpy as np
import pytest

from starpose_ros.bag_tools import bagio
from starpose_testing.paths import REPO_ROOT


def _start(module: str, *args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, '-m', module, *args], cwd=REPO_ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


def _signal_when(process: subprocess.Popen, ready, signum: int) -> str:
    deadline = time.monotonic() + 120
    while not ready():
        assert process.poll() is None, f'exited before the signal: {process.communicate()[1][-2000:]}'
        assert time.monotonic() < deadline, 'no progress'
        time.sleep(0.02)
    process.send_signal(signum)
    _, err = process.communicate(timeout=60)
    return err


@pytest.mark.parametrize('signum', [signal.SIGINT, signal.SIGTERM], ids=['SIGINT', 'SIGTERM'])
def test_video2bag_keeps_a_readable_bag_of_the_frames_so_far(tmp_path, signum):
    video = tmp_path / 'long.avi'
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*'MJPG'), 25.0, (640, 480))
    frame = np.random.default_rng(0).integers(0, 256, (480, 640, 3), dtype=np.uint8)
    for _ in range(1500):
        writer.write(frame)
    writer.release()
    bag = tmp_path / 'bag'
    process = _start('starpose_ros.bag_tools.video2bag', str(video), str(bag), '--storage', 'mcap')
    err = _signal_when(process, lambda: any(bag.glob('*.mcap')) and next(bag.glob('*.mcap')).stat().st_size > 2e7,
                       signum)
    assert process.returncode == 130 and 'Traceback' not in err, err
    assert err.strip().endswith('holds the frames converted so far') and err.count('\n') == 1, err
    frames = list(bagio.read_messages(bag, ['/image']))  # closed on the way out: metadata.yaml and summary
    assert 0 < len(frames) < 1500


def test_synth_stops_with_one_line_and_leaves_no_manifest(tmp_path):
    out = tmp_path / 'data'
    process = _start('starpose_training.synthetic.cli', 'generate', str(out), '--preset', 'small', '--frames', '400',
                     '--quiet')
    err = _signal_when(process, lambda: len(list(out.glob('images/*/*/*.jpg'))) >= 3, signal.SIGINT)
    assert process.returncode == 130 and 'Traceback' not in err and 'delete it to start again' in err, err
    assert not (out / 'synth_manifest.json').exists()


def test_eval_and_fetch_footage_say_interrupted_in_one_line(tmp_path, monkeypatch, capsys):
    from starpose_training import evaluate, real_footage

    def interrupted(*_args, **_kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(evaluate, 'run_oks', interrupted)
    assert evaluate.main(['oks', '-g', str(tmp_path), '-p', str(tmp_path)]) == 130
    monkeypatch.setattr(real_footage, 'fetch_vtest', interrupted)
    assert real_footage.main([]) == 130
    err = capsys.readouterr().err
    assert err.splitlines() == ['starpose-eval: interrupted; nothing written',
                                'starpose-fetch-footage: interrupted; the cache is unchanged']
