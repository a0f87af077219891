"""Inference graph, one-file checkpoints and ONNX export checked with real ONNX Runtime sessions."""
import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
import torch.nn.functional as F

from starpose_model.checkpoint import CHECKPOINT_VERSION, CheckpointError, load_inference_model, save_checkpoint
from starpose_model.config import get_config
from starpose_model.export import (
    ExportCheckError,
    check_onnx,
    example_input,
    main,
    random_model,
    read_metadata,
    write_precision_graph,
)
from starpose_model.heatmaps import decode_argmax
from starpose_model.hrnet import build_pose_net, imagenet_normalize
from starpose_model.inference import StarPoseInference
from starpose_model.precision import PRECISION_KEY, PrecisionError
from starpose_model.star_pose import StarPoseSR

torch.set_num_threads(2)


def _outputs(model, lr_frames):
    with torch.no_grad():
        return model(lr_frames)


@pytest.fixture(scope='module')
def tiny_model():
    return random_model('tiny', seed=3)


@pytest.fixture(scope='module')
def checkpoint_path(tmp_path_factory, tiny_model):
    path = tmp_path_factory.mktemp('ckpt') / 'tiny.pt'
    save_checkpoint(path, tiny_model.sr_net, tiny_model.pose_net, tiny_model.config, extra={'epoch': 3, 'psnr': 21.5})
    return path


@pytest.fixture(scope='module')
def exported(tmp_path_factory, checkpoint_path):
    """The console script's path: checkpoint -> ONNX -> ONNX Runtime check (batch 1 and 7)."""
    output = tmp_path_factory.mktemp('onnx') / 'tiny.onnx'
    assert main(['--checkpoint', str(checkpoint_path), '--output', str(output), '--check']) == 0
    return output


# --- the inference graph -------------------------------------------------------------------------

def test_inference_outputs_follow_the_contract(tiny_model):
    lr_frames = example_input(tiny_model, batch=2)
    sr_image, keypoints, heatmaps = _outputs(tiny_model, lr_frames)
    assert sr_image.dtype == torch.uint8 and sr_image.shape == (2, 256, 192, 3)
    assert keypoints.dtype == torch.float32 and keypoints.shape == (2, 17, 3)
    assert heatmaps.dtype == torch.float32 and heatmaps.shape == (2, 17, 64, 48)
    decoded = decode_argmax(heatmaps)
    torch.testing.assert_close(keypoints[..., :2], decoded[..., :2] * 4)
    torch.testing.assert_close(keypoints[..., 2], heatmaps.flatten(-2).max(-1).values)
    # The SR image is the SR net's output on frames scaled to [0, 1], channels first.
    frames = lr_frames.permute(0, 1, 4, 2, 3).float() / 255
    with torch.no_grad():
        sr = tiny_model.sr_net(frames).clamp(0, 1)
        expected_heatmaps = tiny_model.pose_net(imagenet_normalize(sr))
    assert (sr_image.permute(0, 3, 1, 2).int() - torch.round(sr * 255).int()).abs().max() <= 1
    torch.testing.assert_close(heatmaps, expected_heatmaps, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize(('target_frame', 'index'), [('last', 4), ('center', 2)])
def test_pose_only_baseline_is_bicubic_of_the_target_frame(target_frame, index):
    config = get_config('tiny', target_frame=target_frame)
    pose_net = build_pose_net(config.pose_arch).eval()
    model = StarPoseInference(None, pose_net, config, pose_only=True).eval()
    lr_frames = torch.zeros(1, 5, 64, 48, 3, dtype=torch.uint8)
    lr_frames[0, index, 10:40, 5:30] = 200  # only the target frame has content
    sr_image, _, heatmaps = _outputs(model, lr_frames)
    target = lr_frames[:, index].permute(0, 3, 1, 2).float() / 255
    upsampled = F.interpolate(target, size=(256, 192), mode='bicubic', align_corners=False).clamp(0, 1)
    assert sr_image.permute(0, 3, 1, 2).float().sub(torch.round(upsampled * 255)).abs().max() == 0
    with torch.no_grad():
        torch.testing.assert_close(heatmaps, pose_net(imagenet_normalize(upsampled)))


def test_wrong_input_is_rejected_naming_the_shape(tiny_model):
    with pytest.raises(ValueError, match=r'uint8 \[B, 5, 64, 48, 3\].*\[1, 5, 128, 96, 3\]'):
        tiny_model(torch.zeros(1, 5, 128, 96, 3, dtype=torch.uint8))
    with pytest.raises(ValueError, match='torch.float32'):
        tiny_model(torch.zeros(1, 5, 64, 48, 3))


def test_sr_net_required_unless_pose_only():
    config = get_config('tiny')
    with pytest.raises(ValueError, match='pose_only'):
        StarPoseInference(None, build_pose_net(config.pose_arch), config)


def test_flip_test_option_changes_heatmaps_only_by_averaging(tiny_model):
    lr_frames = example_input(tiny_model, batch=1)
    plain = _outputs(tiny_model, lr_frames)
    flipped_model = StarPoseInference(tiny_model.sr_net, tiny_model.pose_net, tiny_model.config, flip_test=True).eval()
    flipped = _outputs(flipped_model, lr_frames)
    assert torch.equal(plain[0], flipped[0])
    assert not torch.allclose(plain[2], flipped[2])


# --- checkpoints ---------------------------------------------------------------------------------

def test_checkpoint_round_trip_gives_identical_outputs(checkpoint_path, tiny_model):
    loaded = load_inference_model(checkpoint_path, 'cpu')
    assert loaded.config == tiny_model.config and not loaded.training
    payload = torch.load(checkpoint_path, weights_only=True)
    assert payload['format_version'] == CHECKPOINT_VERSION and payload['extra'] == {'epoch': 3, 'psnr': 21.5}
    assert payload['keypoint_layout'] == tiny_model.config.keypoint_layout
    lr_frames = example_input(tiny_model, batch=3)
    for ours, theirs in zip(_outputs(tiny_model, lr_frames), _outputs(loaded, lr_frames), strict=True):
        assert torch.equal(ours, theirs)


def test_pose_only_checkpoint_round_trip(tmp_path):
    model = random_model('tiny', pose_only=True, seed=1)
    save_checkpoint(tmp_path / 'baseline.pt', None, model.pose_net, model.config, pose_only=True)
    loaded = load_inference_model(tmp_path / 'baseline.pt')
    assert loaded.pose_only and loaded.sr_net is None
    lr_frames = example_input(model, batch=1)
    assert torch.equal(_outputs(model, lr_frames)[2], _outputs(loaded, lr_frames)[2])


def test_bad_checkpoint_files_give_clear_errors(tmp_path, tiny_model):
    with pytest.raises(CheckpointError, match='no such checkpoint file'):
        load_inference_model(tmp_path / 'absent.pt')
    (tmp_path / 'corrupt.pt').write_bytes(b'PK\x03\x04 truncated zip')
    with pytest.raises(CheckpointError, match='corrupt.pt: not a readable PyTorch checkpoint'):
        load_inference_model(tmp_path / 'corrupt.pt')
    torch.save(tiny_model.pose_net.state_dict(), tmp_path / 'pose_only_weights.pth')
    with pytest.raises(CheckpointError, match='not a StarPose inference checkpoint'):
        load_inference_model(tmp_path / 'pose_only_weights.pth')
    path = save_checkpoint(tmp_path / 'future.pt', tiny_model.sr_net, tiny_model.pose_net, tiny_model.config)
    payload = torch.load(path, weights_only=True)
    torch.save({**payload, 'format_version': CHECKPOINT_VERSION + 1}, path)
    with pytest.raises(CheckpointError, match='format version'):
        load_inference_model(path)


def test_weights_not_matching_the_config_are_named(tmp_path, tiny_model):
    path = save_checkpoint(tmp_path / 'wide.pt', StarPoseSR(get_config('tiny', embed_dim=32, heads=2)),
                           tiny_model.pose_net, tiny_model.config)
    expected = r'(?s)wide.pt \(SR net\) does not match.*shape mismatches.*embed.proj.weight'
    with pytest.raises(CheckpointError, match=expected):
        load_inference_model(path)


def test_extra_must_be_plain_data(tmp_path, tiny_model):
    with pytest.raises(TypeError, match=r'extra.opt'):
        save_checkpoint(tmp_path / 'x.pt', tiny_model.sr_net, tiny_model.pose_net, tiny_model.config,
                        extra={'opt': np.zeros(3)})
    assert not (tmp_path / 'x.pt').exists()


# --- ONNX export -----------------------------------------------------------------------------------

def test_export_is_one_self_contained_file_with_metadata(exported, tiny_model):
    assert [p.name for p in exported.parent.iterdir()] == ['tiny.onnx']  # no external-data side file
    proto = onnx.load(str(exported), load_external_data=False)
    assert not any(onnx.external_data_helper.uses_external_data(t) for t in proto.graph.initializer)
    assert {o.domain: o.version for o in proto.opset_import}[''] == 18
    metadata = read_metadata(exported)
    assert metadata['starpose.window'] == '5'
    assert (metadata['starpose.lr_height'], metadata['starpose.lr_width']) == ('64', '48')
    assert metadata['starpose.keypoint_layout'] == tiny_model.config.keypoint_layout
    assert metadata['starpose.target_frame'] == 'last'
    assert json.loads(metadata['starpose.config']) == json.loads(json.dumps(tiny_model.config.to_dict()))
    assert [i.name for i in proto.graph.input] == ['lr_frames']
    assert [o.name for o in proto.graph.output] == ['sr_image', 'keypoints', 'heatmaps']


def test_uint8_tensors_are_touched_only_by_casts(exported):
    graph = onnx.load(str(exported), load_external_data=False).graph
    readers = {n.op_type for n in graph.node if 'lr_frames' in n.input}
    assert 'Cast' in readers and readers <= {'Cast', 'Shape'}  # Shape reads only the dims
    assert [n.op_type for n in graph.node if 'sr_image' in n.output] == ['Cast']


def test_exported_batch_axis_is_dynamic(exported, tiny_model):
    session = ort.InferenceSession(str(exported), providers=['CPUExecutionProvider'])
    assert isinstance(session.get_inputs()[0].shape[0], str)
    lr_frames = example_input(tiny_model, batch=3)
    sr_image, keypoints, heatmaps = session.run(None, {'lr_frames': lr_frames.numpy()})
    assert (sr_image.dtype, sr_image.shape) == (np.uint8, (3, 256, 192, 3))
    assert (keypoints.shape, heatmaps.shape) == ((3, 17, 3), (3, 17, 64, 48))


def test_check_detects_a_model_that_differs(exported, checkpoint_path):
    model = load_inference_model(checkpoint_path)
    reports = check_onnx(model, exported, batch_sizes=(1,))
    assert reports[0]['heatmaps_rel_error'] < 1e-4
    with torch.no_grad():
        model.pose_net.final_layer.bias.add_(0.01)
    with pytest.raises(ExportCheckError, match='heatmaps_rel_error'):
        check_onnx(model, exported, batch_sizes=(1,))


def test_cli_reports_a_bad_checkpoint(tmp_path, capsys):
    assert main(['--checkpoint', str(tmp_path / 'absent.pt'), '--output', str(tmp_path / 'x.onnx')]) == 1
    assert 'absent.pt: no such checkpoint file' in capsys.readouterr().err
    assert not (tmp_path / 'x.onnx').exists()


def test_precision_graphs_are_written_with_their_plan(exported, tmp_path):
    fp16 = write_precision_graph(exported, tmp_path / 'sub' / 'tiny.fp16.onnx', 'fp16')
    assert read_metadata(fp16)[PRECISION_KEY] == 'fp16'
    windows = np.random.default_rng(0).integers(0, 256, (4, 5, 64, 48, 3), dtype=np.uint8)
    np.save(tmp_path / 'windows.npy', windows)
    int8 = write_precision_graph(exported, tmp_path / 'tiny.int8.onnx', 'int8', tmp_path / 'windows.npy')
    assert read_metadata(int8)[PRECISION_KEY] == 'int8'
    assert {n.op_type for n in onnx.load(str(int8)).graph.node} >= {'QuantizeLinear', 'DequantizeLinear'}
    session = ort.InferenceSession(str(int8), providers=['CPUExecutionProvider'])
    assert session.run(['keypoints'], {'lr_frames': windows})[0].shape == (4, 17, 3)
    with pytest.raises(PrecisionError, match='already fp16'):
        write_precision_graph(fp16, tmp_path / 'again.onnx', 'fp16')


def test_an_fp16_attention_is_refused(exported):
    from onnxruntime.transformers.float16 import convert_float_to_float16

    from starpose_model.precision import _require_fp32_attention
    everything_fp16 = convert_float_to_float16(onnx.load(str(exported)), keep_io_types=True)
    with pytest.raises(PrecisionError, match='attention node'):
        _require_fp32_attention(everything_fp16, r'\.attention(\.kernel)?$')


def test_cli_int8_without_calibration_data_is_refused_before_exporting(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(['--config', 'tiny', '--output', str(tmp_path / 'x.onnx'), '--precision', 'int8'])
    assert '--calibration-data' in capsys.readouterr().err and not (tmp_path / 'x.onnx').exists()


def test_cli_refuses_an_output_it_cannot_write_before_loading_anything(tmp_path, capsys, monkeypatch):
    import starpose_model.export as export

    monkeypatch.setattr(export, 'load_inference_model', lambda path: pytest.fail('loaded before the check'))
    (tmp_path / 'folder').mkdir()
    (tmp_path / 'notes.txt').write_text('mine')
    for output, says in [(tmp_path / 'folder', 'is a folder'), (tmp_path / 'notes.txt' / 'm.onnx', 'cannot write')]:
        assert main(['--checkpoint', str(tmp_path / 'any.pt'), '--output', str(output)]) == 1
        err = capsys.readouterr().err
        assert says in err and err.count('\n') == 1
    assert (tmp_path / 'notes.txt').read_text() == 'mine' and list((tmp_path / 'folder').iterdir()) == []


def test_cli_writes_through_a_temporary_and_leaves_none_behind(tmp_path, capsys):
    assert main(['--config', 'tiny', '--output', str(tmp_path / 'm.onnx')]) == 0
    assert [p.name for p in tmp_path.iterdir()] == ['m.onnx']
    assert main(['--checkpoint', str(tmp_path / 'absent.pt'), '--output', str(tmp_path / 'n.onnx')]) == 1
    assert [p.name for p in tmp_path.iterdir()] == ['m.onnx']
