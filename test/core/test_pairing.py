"""Stamp pairing: either arrival order, lagging detector, expiry, out-of-order, bounded buffers."""
from starpose_ros.core.pairing import StampPairer


def test_pairs_regardless_of_which_side_arrives_first():
    pairer = StampPairer()
    assert pairer.add_image(10, 'img10') is None
    pair = pairer.add_detections(10, 'det10')
    assert (pair.stamp_ns, pair.image, pair.detections) == (10, 'img10', 'det10')
    assert pairer.add_detections(20, 'det20') is None
    assert pairer.add_image(20, 'img20').detections == 'det20'
    assert pairer.counters.paired == 2 and pairer.pending == (0, 0)


def test_lagging_detector_pairs_every_frame_in_order():
    pairer = StampPairer()
    for stamp in range(1, 6):
        assert pairer.add_image(stamp, stamp) is None
    pairs = [pairer.add_detections(stamp, -stamp) for stamp in range(1, 6)]
    assert [(p.image, p.detections) for p in pairs] == [(s, -s) for s in range(1, 6)]
    assert pairer.counters.expired_images == 0


def test_a_newer_pair_expires_older_unmatched_items():
    pairer = StampPairer()
    pairer.add_image(1, 'a')
    pairer.add_detections(2, 'orphan')  # its image never comes
    pairer.add_image(3, 'c')
    assert pairer.add_detections(3, 'c').stamp_ns == 3
    assert pairer.pending == (0, 0)
    assert pairer.counters.expired_images == 1 and pairer.counters.expired_detections == 1


def test_detections_without_image_and_old_stamps_are_counted_and_dropped():
    pairer = StampPairer()
    pairer.add_image(5, 'five')
    pairer.add_detections(5, 'five')
    assert pairer.add_detections(3, 'late') is None
    assert pairer.add_image(4, 'late') is None
    assert pairer.add_image(5, 'again') is None
    counters = pairer.counters.as_dict()
    assert counters['out_of_order_detections'] == 1 and counters['out_of_order_images'] == 1
    assert counters['duplicate_images'] == 1 and pairer.pending == (0, 0)
    assert pairer.add_image(6, 'next') is None and pairer.add_detections(6, 'next').image == 'next'


def test_buffers_stay_bounded_and_count_overflow():
    pairer = StampPairer(max_pending=30)
    for stamp in range(1000):
        pairer.add_image(stamp, stamp)
    assert pairer.pending == (30, 0) and pairer.counters.expired_images == 970
    assert pairer.add_detections(999, 'x').image == 999


def test_a_restarted_stream_resets_pairing_after_a_run_of_old_stamps():
    pairer = StampPairer(restart_after=3)
    for stamp in (100, 101):
        pairer.add_image(stamp, stamp)
        pairer.add_detections(stamp, stamp)
    assert pairer.add_image(1, 1) is None and pairer.add_image(2, 2) is None  # dropped as out of order
    assert pairer.add_image(3, 3) is None  # third in a row: restart, then it waits
    assert pairer.counters.restarts == 1
    assert pairer.add_detections(3, 3).image == 3


def test_images_only_mode_returns_every_in_order_image():
    pairer = StampPairer(images_only=True)
    assert pairer.add_image(1, 'a').detections is None
    assert pairer.add_image(1, 'dup') is None
    assert pairer.add_detections(2, 'ignored') is None
    assert pairer.counters.duplicate_images == 1 and pairer.counters.expired_detections == 1
