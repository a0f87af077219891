"""The mini-reproduction's evaluation step on a tiny PoseTrack-format dataset (real models, real metrics)."""
from __future__ import annotations

from starpose_ros.core.models import BUNDLED_MODEL as DEMO
from starpose_testing.posetrack_fixtures import make_video, write_dataset
from starpose_training.mini_repro import evaluate_checkpoints, results_table


def test_evaluation_rows_baselines_and_table(tmp_path):
    write_dataset(tmp_path / 'data', [make_video(nframes=6, labeled=(0, 1, 2, 3))])
    job = {'checkpoint': str(DEMO), 'resolution': '64x48', 'variant': 'full', 'seed': 0, 'train_seconds': 1.0}
    rows = evaluate_checkpoints([{**job, 'method': 'demo'}, {**job, 'method': 'baselines', 'baselines': True}],
                                tmp_path / 'data', val_every=2, output_dir=tmp_path / 'eval')
    assert [r['method'] for r in rows] == ['demo', 'Pose net on LR (resize)', 'Bicubic + pose net']
    assert all(r['samples'] == 2 for r in rows)  # every 2nd of the 4 labeled frames, one person each
    assert all(0 <= r['mAP'] <= 100 and r['PSNR'] > 0 for r in rows)
    assert rows[0]['GFLOPs (SR)'] > 0 == rows[1]['GFLOPs (SR)']
    table = results_table(rows)
    assert '### 64x48 input (seed 0)' in table and '| Bicubic + pose net |' in table
    assert (tmp_path / 'eval' / 'demo' / 'predictions').is_dir()
