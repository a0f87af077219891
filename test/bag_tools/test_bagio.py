"""rosbag2 helpers without ROS: typestore, message builders, writer and readers on sqlite3 and mcap."""
import numpy as np
import pytest
from rosbags.typesys import Stores, get_typestore

from starpose_ros.bag_tools.bagio import (
    BagIOError,
    BagWriter,
    bag_topics,
    compressed_image_message,
    decode_image,
    detections_message,
    header_stamp_ns,
    image_message,
    read_messages,
    starpose_typestore,
)
from starpose_ros.core.messages import tracked_detections
from starpose_ros.core.person_filter import ANY_CLASS
from starpose_ros.core.types import Detection

STAMP = 1_700_000_000_123_456_789


@pytest.fixture(scope='module')
def typestore():
    return starpose_typestore()


def _rgb(seed: int, shape=(24, 32, 3)) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=shape, dtype=np.uint8)


def test_typestore_has_the_starpose_messages(typestore):
    detection = typestore.types['starpose_msgs/msg/TrackedDetection']
    fields = [f for f in detection.__dataclass_fields__ if f != '__msgtype__']
    assert fields == ['id', 'class_id', 'score', 'center_x', 'center_y', 'size_x', 'size_y']
    for name in ('PersonPoseArray', 'SuperResolvedCropArray', 'TrackedDetectionArray', 'Keypoint2D'):
        assert f'starpose_msgs/msg/{name}' in typestore.types
    with pytest.raises(BagIOError, match='unknown ROS 2 distro'):
        starpose_typestore('rolling-ridley')
    assert 'starpose_msgs/msg/PersonPose' in starpose_typestore('humble').types


def test_typestore_from_an_explicit_msg_dir(tmp_path):
    with pytest.raises(BagIOError, match='no .msg files'):
        starpose_typestore(msg_dir=tmp_path)
    (tmp_path / 'Broken.msg').write_text('float32[ x\n')
    with pytest.raises(BagIOError, match='Broken.msg'):
        starpose_typestore(msg_dir=tmp_path)


@pytest.mark.parametrize('storage', ['sqlite3', 'mcap'])
def test_round_trip_images_and_detections(tmp_path, typestore, storage):
    path = tmp_path / f'bag_{storage}'
    frames = [_rgb(k) for k in range(3)]
    boxes = [[Detection((1.5, 2.0, 10.0, 20.0), '7', 0.9), Detection((5.0, 6.0, 3.0, 4.0), None, 0.25)], [], [
        Detection((0.0, 0.0, 1.0, 2.0), 'a', 1.0)]]
    with BagWriter(path, storage=storage, typestore=typestore) as bag:
        for k, (rgb, dets) in enumerate(zip(frames, boxes, strict=True)):
            stamp = STAMP + k * 40_000_000
            bag.write('/detections', detections_message(typestore, dets, stamp, 'cam'))  # before the image
            bag.write('/image', image_message(typestore, rgb, stamp, 'cam', encoding='bgr8' if k else 'rgb8'))
            bag.write('/image/compressed', compressed_image_message(typestore, rgb, stamp, 'cam', 'png'))
        assert bag.message_count == 9
    assert bag_topics(path) == {'/image': 'sensor_msgs/msg/Image',
                                '/image/compressed': 'sensor_msgs/msg/CompressedImage',
                                '/detections': 'starpose_msgs/msg/TrackedDetectionArray'}
    items = list(read_messages(path, ['/image', '/detections']))
    assert [i.timestamp_ns for i in items] == sorted(i.timestamp_ns for i in items)
    images = [i.msg for i in items if i.topic == '/image']
    detections = [i.msg for i in items if i.topic == '/detections']
    assert [m.encoding for m in images] == ['rgb8', 'bgr8', 'bgr8']
    for rgb, image, dets_msg, dets in zip(frames, images, detections, boxes, strict=True):
        np.testing.assert_array_equal(decode_image(image), rgb)
        assert header_stamp_ns(image) == header_stamp_ns(dets_msg) and image.header.frame_id == 'cam'
        decoded = tracked_detections(dets_msg, ANY_CLASS)[0]
        assert [d.track_id for d in decoded] == [d.track_id for d in dets]
        for got, want in zip(decoded, dets, strict=True):
            np.testing.assert_allclose(got.box_xywh, want.box_xywh)
            assert got.score == pytest.approx(want.score)
    lossless = [decode_image(i.msg) for i in read_messages(path, ['/image/compressed'])]
    for rgb, decoded in zip(frames, lossless, strict=True):
        np.testing.assert_array_equal(decoded, rgb)


def test_bags_carry_their_own_definitions(tmp_path, typestore):
    path = tmp_path / 'bag'
    with BagWriter(path, storage='mcap', typestore=typestore) as bag:
        bag.write('/detections', detections_message(typestore, [Detection((1, 2, 3, 4), '5')], STAMP, 'cam'))
    empty = get_typestore(Stores.EMPTY)  # no sensor_msgs, no starpose_msgs: the bag alone must suffice
    item, = read_messages(path, typestore=empty)
    assert item.msgtype == 'starpose_msgs/msg/TrackedDetectionArray'
    assert tracked_detections(item.msg, ANY_CLASS)[0][0].track_id == '5'


def test_jpeg_compressed_images_decode_close_to_the_source(tmp_path, typestore):
    rgb = np.zeros((48, 64, 3), np.uint8)
    rgb[:, 32:] = (200, 40, 10)
    with BagWriter(tmp_path / 'bag', typestore=typestore) as bag:
        bag.write('/image/compressed', compressed_image_message(typestore, rgb, STAMP, 'cam', 'jpeg', 95))
    item, = read_messages(tmp_path / 'bag')
    assert item.msg.format == 'jpeg'
    assert np.abs(decode_image(item.msg).astype(int) - rgb).mean() < 3


def test_errors_name_what_is_wrong(tmp_path, typestore):
    with pytest.raises(BagIOError, match='unknown bag storage'):
        BagWriter(tmp_path / 'a', storage='rosbag1', typestore=typestore)
    (tmp_path / 'exists').mkdir()
    with pytest.raises(BagIOError, match='exists already'):
        BagWriter(tmp_path / 'exists', typestore=typestore)
    with pytest.raises(BagIOError, match='not a rosbag2 directory'):
        list(read_messages(tmp_path / 'exists'))
    with pytest.raises(BagIOError, match='compressed image format'):
        compressed_image_message(typestore, _rgb(0), STAMP, 'cam', 'bmp')
    with pytest.raises(BagIOError, match='stamp must be >= 0'):
        image_message(typestore, _rgb(0), -1, 'cam')
    with pytest.raises(ValueError, match='uint8'):
        image_message(typestore, _rgb(0).astype(np.float32), STAMP, 'cam')
    path = tmp_path / 'bag'
    with BagWriter(path, typestore=typestore) as bag:
        bag.write('/image', image_message(typestore, _rgb(1), STAMP, 'cam'))
        with pytest.raises(BagIOError, match='/image carries sensor_msgs/msg/Image'):
            bag.write('/image', detections_message(typestore, [], STAMP, 'cam'))
    with pytest.raises(BagIOError, match=r"no topic\(s\) \['/camera'\]; it has \['/image'\]"):
        list(read_messages(path, ['/camera']))
