"""starpose-eval: poseval-compatible CLI, OKS CLI, and model evaluation with the baselines."""
import copy
import json

import numpy as np
import pytest
import torch

from starpose_model.checkpoint import save_checkpoint
from starpose_model.config import get_config
from starpose_model.hrnet import build_pose_net
from starpose_model.inference import StarPoseInference
from starpose_model.star_pose import StarPoseSR
from starpose_testing.posetrack_fixtures import make_video, write_dataset
from starpose_training.dataset import PoseTrackWindows
from starpose_training.evaluate import TABLE_COLUMNS, evaluate_model, main

torch.set_num_threads(2)


@pytest.fixture
def gt_and_predictions(tmp_path):
    videos = [make_video(people_per_frame=2), make_video('000002_other', vid_id='000002', labeled=(0, 3))]
    gt_dir = write_dataset(tmp_path / 'gt', videos, write_frames=False)
    predictions = copy.deepcopy(videos)
    for video in predictions:
        for ann in video['annotations']:
            ann['scores'] = [0.9] * 17
    del predictions[0]['annotations'][1]  # one missed person (track 1 of frame 1)
    pred_dir = write_dataset(tmp_path / 'pred', predictions, write_frames=False)
    return gt_dir, pred_dir, tmp_path / 'out'


def test_posetrack_flags_print_table_and_write_json(gt_and_predictions, capsys):
    gt_dir, pred_dir, out = gt_and_predictions
    assert main(['posetrack', '--groundTruth', str(gt_dir), '--predictions', str(pred_dir),
                 '--evalPoseEstimation', '--outputDir', str(out), '--saveEvalPerSequence']) == 0
    printed = capsys.readouterr().out
    assert 'Average Precision (AP) metric:' in printed
    assert '& Head & Shou & Elb  & Wri  & Hip  & Knee & Ankl & Total\\\\' in printed
    total = json.loads((out / 'total_AP_metrics.json').read_text())
    # 8 GT people, 7 predicted exactly: recall 7/8 at precision 1 on every joint.
    assert total['ap'][15] == pytest.approx(87.5) and total['parts']['Head'] == pytest.approx(87.5)
    assert f"{87.5:>5.1f}" in printed
    assert json.loads((out / '000002_other_AP_metrics.json').read_text())['ap'][15] == pytest.approx(100)


def test_short_flags_and_oks(gt_and_predictions, capsys):
    gt_dir, pred_dir, out = gt_and_predictions
    assert main(['posetrack', '-g', str(gt_dir), '-p', str(pred_dir), '-e', '-o', str(out)]) == 0
    assert main(['oks', '-g', str(gt_dir), '-p', str(pred_dir), '-o', str(out)]) == 0
    oks = json.loads((out / 'oks_metrics.json').read_text())
    assert oks['AP@0.5'] == pytest.approx(100 * 7 / 8, abs=1.5) and oks['AR'] == pytest.approx(87.5)
    assert 'mAP' in capsys.readouterr().out


@pytest.mark.parametrize('breakage, message', [
    (lambda pred: (pred / '000002_other.json').unlink(), '000002_other.json does not exist'),
    (lambda pred: (pred / '000002_other.json').write_text(json.dumps(make_video('000002_other', nframes=5))),
     '# prediction frames 5 <> # GT frames 6'),
    (lambda pred: (pred / '000002_other.json').write_text('{'), 'not valid JSON'),
])
def test_bad_prediction_directories_exit_2_naming_the_file(gt_and_predictions, capsys, breakage, message):
    gt_dir, pred_dir, out = gt_and_predictions
    breakage(pred_dir)
    assert main(['posetrack', '-g', str(gt_dir), '-p', str(pred_dir), '-e', '-o', str(out)]) == 2
    assert message in capsys.readouterr().err


def test_tracking_flag_is_refused(gt_and_predictions, capsys):
    gt_dir, pred_dir, out = gt_and_predictions
    assert main(['posetrack', '-g', str(gt_dir), '-p', str(pred_dir), '-t', '-o', str(out)]) == 2
    assert 'evalPoseTracking' in capsys.readouterr().err


class OracleModel(StarPoseInference):
    """Returns the ground-truth HR-crop keypoints of the dataset's samples, in order (score 1)."""

    def __init__(self, windows: PoseTrackWindows):
        config = get_config('tiny', window=windows.window, target_frame=windows.target_frame)
        super().__init__(None, torch.nn.Conv2d(3, 17, 1), config, pose_only=True)
        self.queue = [windows.crops(i).keypoints for i in range(len(windows))]

    def forward(self, lr_frames):
        batch = len(lr_frames)
        keypoints = torch.zeros(batch, 17, 3)
        for k in range(min(batch, len(self.queue))):
            keypoints[k, :, :2] = torch.from_numpy(self.queue.pop(0)[:, :2])
            keypoints[k, :, 2] = 1.0
        sr = torch.round(self.super_resolve(lr_frames) * 255).to(torch.uint8).permute(0, 2, 3, 1)
        return sr, keypoints, torch.zeros(batch, 17, 64, 48)


def test_perfect_model_maps_back_to_image_pixels(tmp_path):
    write_dataset(tmp_path, [make_video(people_per_frame=2, labeled=(0, 2, 5))])
    windows = PoseTrackWindows(tmp_path / 'annotations/val', tmp_path, window=5, target_frame='last', scale=4)
    row = evaluate_model(OracleModel(windows), tmp_path / 'annotations/val', tmp_path, method='oracle',
                         output_dir=tmp_path / 'out', batch_size=4)
    assert row['Total'] == pytest.approx(100) and row['mAP'] == pytest.approx(100)
    assert row['samples'] == 6 and 20 < row['PSNR'] < 60
    written = json.loads((tmp_path / 'out/oracle/predictions/000001_fixture.json').read_text())
    assert len(written['annotations']) == 6 and len(written['images']) == 6
    assert written['annotations'][0]['keypoints'][9:15] == [0, 0, 0, 0, 0, 0]  # ears unannotated


def test_model_subcommand_checkpoint_and_baselines(tmp_path, capsys):
    write_dataset(tmp_path / 'data', [make_video(labeled=(2, 3))])
    config = get_config('tiny')
    torch.manual_seed(0)
    save_checkpoint(tmp_path / 'tiny.pt', StarPoseSR(config), build_pose_net(config.pose_arch), config)
    out = tmp_path / 'out'
    assert main(['model', '--annotations', str(tmp_path / 'data/annotations/val'), '--image-root',
                 str(tmp_path / 'data'), '--checkpoint', str(tmp_path / 'tiny.pt'), '--names', 'STAR-Pose tiny',
                 '--baselines', '--output-dir', str(out), '--batch-size', '2']) == 0
    rows = json.loads((out / 'results.json').read_text())['rows']
    assert [r['method'] for r in rows] == ['STAR-Pose tiny', 'Pose net on LR (resize)', 'Bicubic + pose net']
    for row in rows:
        assert set(TABLE_COLUMNS) <= set(row) and row['samples'] == 2 and row['lr_size'] == [64, 48]
        assert all(np.isfinite(row[c]) for c in ('Total', 'mAP', 'PSNR', 'SSIM', 'GFLOPs', 'ms/frame'))
    assert rows[0]['Params (M)'] > rows[1]['Params (M)'] == rows[2]['Params (M)']
    assert rows[0]['GFLOPs (SR)'] > rows[2]['GFLOPs (SR)'] >= rows[1]['GFLOPs (SR)'] == 0
    table = (out / 'results.md').read_text()
    assert '| Method | Head | Shou' in table and table.count('\n| ') == 5
    # The prediction files it wrote evaluate to the same Total with the poseval-compatible CLI.
    assert main(['posetrack', '-g', str(tmp_path / 'data/annotations/val'), '-p',
                 str(out / 'bicubic_pose_net/predictions'), '-e', '-o', str(tmp_path / 'pt')]) == 0
    total = json.loads((tmp_path / 'pt/total_AP_metrics.json').read_text())['parts']['Total']
    assert total == pytest.approx(rows[2]['Total'])


def test_model_subcommand_bad_checkpoint(tmp_path, capsys):
    write_dataset(tmp_path / 'data', [make_video(labeled=(2,))], write_frames=False)
    (tmp_path / 'bad.pt').write_bytes(b'nope')
    assert main(['model', '--annotations', str(tmp_path / 'data/annotations/val'), '--image-root',
                 str(tmp_path / 'data'), '--checkpoint', str(tmp_path / 'bad.pt'), '--output-dir', str(tmp_path)]) == 2
    assert 'bad.pt' in capsys.readouterr().err
