"""Tracker: stable ids, crossings, given ids pass through, eviction and bounded memory."""
import numpy as np

from starpose_ros.core.tracker import IoUTracker, iou_matrix
from starpose_ros.core.types import Detection

FRAME_NS = 33_000_000


def test_iou_matrix_known_values():
    iou = iou_matrix([[0, 0, 10, 10]], [[0, 0, 10, 10], [5, 0, 10, 10], [20, 20, 5, 5]])
    np.testing.assert_allclose(iou, [[1.0, 50 / 150, 0.0]])


def test_ids_stay_stable_for_moving_people():
    tracker = IoUTracker()
    ids = []
    for frame in range(10):
        out = tracker.update(frame * FRAME_NS, [Detection((10 + 3 * frame, 10, 30, 80)),
                                                Detection((200 - 3 * frame, 50, 30, 80))])
        ids.append([d.track_id for d in out])
    assert all(frame_ids == ids[0] for frame_ids in ids) and len(set(ids[0])) == 2


def test_ids_survive_a_crossing():
    """Two people walk through each other; constant-velocity prediction keeps their ids."""
    tracker = IoUTracker(track_iou_threshold=0.2)
    first = {}
    for frame in range(40):
        a = Detection((20 + 6 * frame, 100, 30, 80))   # walks right
        b = Detection((254 - 6 * frame, 104, 30, 80))  # walks left; they overlap mid-way
        detections = [a, b] if frame % 2 == 0 else [b, a]  # input order must not matter
        out = {d.box_xywh: d.track_id for d in tracker.update(frame * FRAME_NS, detections)}
        if frame == 0:
            first = {'a': out[a.box_xywh], 'b': out[b.box_xywh]}
        assert out[a.box_xywh] == first['a'] and out[b.box_xywh] == first['b'], f'id switch at frame {frame}'


def test_given_ids_pass_through_and_are_not_matched_to_own_tracks():
    tracker = IoUTracker()
    out = tracker.update(0, [Detection((0, 0, 10, 20), track_id='ext-7'), Detection((100, 0, 10, 20))])
    assert out[0].track_id == 'ext-7' and out[1].track_id not in ('ext-7', '', None)
    out2 = tracker.update(FRAME_NS, [Detection((0, 0, 10, 20))])  # same place, no id: a new track
    assert out2[0].track_id not in ('ext-7', out[1].track_id)
    assert tracker.tracks['ext-7'].external


def test_generated_ids_are_prefixed_and_numbered_in_order():
    out = IoUTracker().update(0, [Detection((0, 0, 10, 20)), Detection((100, 0, 10, 20))])
    assert [d.track_id for d in out] == ['t1', 't2']


def test_upstream_id_1_and_an_internal_track_coexist_without_merging():
    """A person tracked here first, then an upstream tracker's '1' elsewhere: two tracks, two ids."""
    tracker = IoUTracker()
    internal = tracker.update(0, [Detection((0, 0, 10, 20))])[0].track_id
    for frame in range(1, 4):
        out = tracker.update(frame * FRAME_NS, [Detection((0, 0, 10, 20)),
                                                Detection((200, 100, 10, 20), track_id='1')])
        assert [d.track_id for d in out] == [internal, '1'], f'frame {frame}'
    assert internal != '1' and set(tracker.tracks) == {internal, '1'}
    assert not tracker.tracks[internal].external and tracker.tracks['1'].external
    np.testing.assert_array_equal(tracker.tracks[internal].box_xywh, [0, 0, 10, 20])  # never moved to '1's box
    np.testing.assert_array_equal(tracker.tracks[internal].velocity, [0, 0])


def test_generated_ids_skip_an_upstream_id_of_the_same_form():
    tracker = IoUTracker()
    out = tracker.update(0, [Detection((0, 0, 10, 20), track_id='t1'), Detection((100, 0, 10, 20))])
    assert [d.track_id for d in out] == ['t1', 't2']


def test_vanished_tracks_are_evicted_after_max_age_in_stamp_time():
    tracker = IoUTracker(track_max_age_s=100e-9)
    tid = tracker.update(0, [Detection((0, 0, 10, 10))])[0].track_id
    tracker.update(100, [])
    assert tid in tracker.tracks
    tracker.update(101, [])
    assert tid not in tracker.tracks and tracker.evicted_ids == [tid]
    again = tracker.update(102, [Detection((0, 0, 10, 10))])[0].track_id
    assert again != tid  # ids are never reused


def test_memory_bounded_when_1000_ids_churn():
    tracker = IoUTracker(max_tracks=16, track_max_age_s=10 * FRAME_NS / 1e9)
    seen = set()
    for i in range(1000):
        # a new person every frame, far from all others, each seen once
        out = tracker.update(i * FRAME_NS, [Detection((float(i % 50) * 40, float(i // 50) * 100, 20, 40),
                                                      track_id=f'p{i}' if i % 2 else None)])
        seen.add(out[0].track_id)
        assert len(tracker.tracks) <= 11
    assert len(seen) == 1000
    crowded = IoUTracker(max_tracks=5)
    out = crowded.update(0, [Detection((i * 50.0, 0, 20, 40), score=i / 10) for i in range(8)])
    assert len(out) == 5 and crowded.dropped_over_capacity == 3 and len(crowded.tracks) == 5
    assert [d.score for d in out] == [0.3, 0.4, 0.5, 0.6, 0.7]
    for frame in range(1, 20):  # a different crowd each frame: the oldest tracks make way
        crowded.update(frame, [Detection((i * 50.0, frame * 100.0, 20, 40)) for i in range(3)])
        assert len(crowded.tracks) <= 5


def test_stamps_going_backwards_reset_the_tracker():
    tracker = IoUTracker()
    old = tracker.update(10 * FRAME_NS, [Detection((0, 0, 10, 10))])[0].track_id
    new = tracker.update(0, [Detection((0, 0, 10, 10))])[0].track_id
    assert new != old and list(tracker.tracks) == [new] and old in tracker.evicted_ids
