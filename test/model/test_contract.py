import pytest

from starpose_model.atomic import atomic_path, atomic_write_bytes
from starpose_model.config import get_config
from starpose_model.contract import METADATA_PREFIX, model_facts, model_metadata, target_index


@pytest.mark.parametrize(('window', 'target_frame', 'expected'), [(5, 'last', 4), (5, 'center', 2), (1, 'center', 0)])
def test_target_index_is_the_newest_frame_or_the_middle(window, target_frame, expected):
    assert target_index(window, target_frame) == expected
    assert get_config('tiny', window=window, target_frame=target_frame).target_index == expected


def test_unknown_target_frame_is_refused():
    with pytest.raises(ValueError, match='middle'):
        target_index(5, 'middle')


def test_the_reader_gives_back_what_the_writer_wrote():
    config = get_config('tiny', scale=4, target_frame='center')
    metadata = model_metadata(config, pose_only=False)
    assert all(key.startswith(METADATA_PREFIX) for key in metadata)
    assert model_facts(metadata) == {'window': config.window, 'lr_height': 64, 'lr_width': 48,
                                     'keypoint_layout': config.keypoint_layout, 'target_frame': 'center'}


def test_static_input_dims_stand_in_for_missing_size_keys_and_a_missing_one_is_named():
    assert model_facts({}, ['batch', 3, 128, 96, 3])['window'] == 3
    with pytest.raises(KeyError, match='starpose.window'):
        model_facts({}, ['batch', 'T', 128, 96, 3])
    with pytest.raises(ValueError, match='starpose.lr_height'):
        model_facts({'starpose.window': '5', 'starpose.lr_height': 'tall', 'starpose.lr_width': '48'})


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / 'model.onnx'
    atomic_write_bytes(target, b'old')
    with pytest.raises(RuntimeError), atomic_path(target) as partial:
        partial.write_bytes(b'half')
        raise RuntimeError('crash mid-write')
    assert target.read_bytes() == b'old'
    assert sorted(p.name for p in tmp_path.iterdir()) == ['model.onnx']
    atomic_write_bytes(target, b'new')
    assert target.read_bytes() == b'new'
