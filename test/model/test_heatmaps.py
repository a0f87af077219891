"""Heatmap targets, decoding (argmax, quarter pixel, DARK), flip test and mapping back to image pixels."""
import numpy as np
import pytest
import torch

from starpose_model import crops
from starpose_model.heatmaps import (
    crop_to_image,
    decode_argmax,
    flip_back,
    flip_test,
    generate_targets,
    heatmap_to_crop,
)
from starpose_model.keypoints import FLIP_PAIRS, NUM_KEYPOINTS


def _keypoints(points, visibility=1.0):
    """[K, 3] array in HR-crop pixels from a list of (x, y)."""
    points = np.asarray(points, dtype=np.float64)
    return np.concatenate([points, np.full((len(points), 1), visibility)], axis=1)


def test_official_target_is_unit_gaussian_at_rounded_position():
    heatmaps, weights = generate_targets(_keypoints([(100.0, 41.0)]))  # heatmap (25, 10.25) -> (25, 10)
    assert heatmaps.shape == (1, 64, 48) and heatmaps.dtype == np.float32
    assert weights.tolist() == [1.0]
    assert np.unravel_index(heatmaps[0].argmax(), (64, 48)) == (10, 25)
    assert heatmaps[0, 10, 25] == pytest.approx(1.0)
    assert heatmaps[0, 10, 26] == pytest.approx(np.exp(-1 / 8))  # sigma 2
    assert heatmaps[0, 10, 31] == pytest.approx(np.exp(-36 / 8))  # 3 sigma: still inside the window
    assert heatmaps[0, 10, 32] == 0.0  # truncated beyond 3 sigma, as the official target


def test_invisible_and_far_outside_joints_get_zero_weight_and_empty_maps():
    keypoints = _keypoints([(100, 100), (100, 100), (-60, 100), (100, 400), (-6, 100)])
    keypoints[1, 2] = 0  # unlabelled
    heatmaps, weights = generate_targets(keypoints)
    assert weights.tolist() == [1, 0, 0, 0, 1]  # the last is outside but its Gaussian reaches in
    assert heatmaps[1:4].max() == 0
    assert heatmaps[4, :, 0].max() > 0


def test_bad_keypoint_shape_is_rejected():
    with pytest.raises(ValueError, match=r'\[K, 3\]'):
        generate_targets(np.zeros((17, 2)))


def test_quarter_pixel_step_toward_higher_neighbour():
    heatmaps = torch.zeros(1, 2, 8, 6)
    heatmaps[0, 0, 3, 2] = 1.0
    heatmaps[0, 0, 3, 3] = 0.5  # right neighbour higher -> +0.25 x
    heatmaps[0, 0, 2, 2] = 0.4  # upper neighbour higher -> -0.25 y
    heatmaps[0, 1, 7, 5] = 2.0  # corner: a neighbour is missing on both axes -> no step
    heatmaps[0, 1, 6, 5] = 1.0
    heatmaps[0, 1, 7, 4] = 1.0
    decoded = decode_argmax(heatmaps)
    assert decoded.tolist() == [[[2.25, 2.75, 1.0], [5.0, 7.0, 2.0]]]
    assert decode_argmax(heatmaps, quarter_offset=False)[..., :2].tolist() == [[[2.0, 3.0], [5.0, 7.0]]]


def test_in_graph_decoding_agrees_with_official_loop_rule():
    rng = np.random.default_rng(0)
    heatmaps = rng.random((2, 17, 64, 48)).astype(np.float32)
    decoded = decode_argmax(torch.from_numpy(heatmaps)).numpy()
    for n in range(2):
        for k in range(17):
            hm = heatmaps[n, k]
            y, x = np.unravel_index(hm.argmax(), hm.shape)
            expected = np.array([x, y], dtype=float)
            if 0 < x < 47:
                expected[0] += 0.25 * np.sign(hm[y, x + 1] - hm[y, x - 1])
            if 0 < y < 63:
                expected[1] += 0.25 * np.sign(hm[y + 1, x] - hm[y - 1, x])
            assert decoded[n, k, :2].tolist() == expected.tolist()
            assert decoded[n, k, 2] == hm.max()


def test_heatmap_to_crop_to_image_inverts_the_crop_affine():
    center, size = crops.box_to_center_scale((300, 120, 40, 90))
    image_to_crop = crops.crop_affine(center, size, (256, 192))
    image_points = np.array([[310.0, 150.0], [335.5, 200.25]])
    crop_points = crops.transform_points(image_points, image_to_crop)
    # Heatmap coordinates are the crop coordinates of a 64x48 crop of the same region (stride 4).
    heatmap_points = crops.transform_points(image_points, crops.crop_affine(center, size, (64, 48)))
    np.testing.assert_allclose(heatmap_to_crop(heatmap_points), crop_points, atol=1e-9)
    with_scores = np.concatenate([heatmap_to_crop(heatmap_points), [[0.9], [0.4]]], axis=1)
    back = crop_to_image(with_scores, image_to_crop)
    np.testing.assert_allclose(back[:, :2], image_points, atol=1e-9)
    assert back[:, 2].tolist() == [0.9, 0.4]


def _mirrored(keypoints, layout):
    """The same person in the horizontally mirrored 256x192 crop, with left/right labels swapped."""
    mirrored = keypoints.copy()
    mirrored[:, 0] = 191 - mirrored[:, 0]
    for left, right in FLIP_PAIRS[layout]:
        mirrored[[left, right]] = mirrored[[right, left]]
    return mirrored


@pytest.mark.parametrize('layout', ['coco', 'posetrack'])
def test_flip_back_swaps_joints_and_official_shift_restores_positions(layout):
    rng = np.random.default_rng(1)
    keypoints = _keypoints(np.stack([4 * rng.integers(4, 44, 17), 4 * rng.integers(4, 60, 17)], axis=1))
    mirrored_maps, _ = generate_targets(_mirrored(keypoints, layout))
    restored = flip_back(torch.from_numpy(mirrored_maps)[None], layout)
    decoded = decode_argmax(restored, quarter_offset=False)[0, :, :2].numpy()
    np.testing.assert_array_equal(decoded * 4, keypoints[:, :2])
    unshifted = decode_argmax(flip_back(torch.from_numpy(mirrored_maps)[None], layout, shift=False),
                              quarter_offset=False)[0, :, :2].numpy()
    assert (unshifted[:, 0] * 4 == keypoints[:, 0] - 4).all()


def test_posetrack_flip_keeps_head_channels_coco_swaps_eyes():
    heatmaps = torch.zeros(1, NUM_KEYPOINTS, 8, 6)
    heatmaps[0, 1, 2, 1] = 1.0
    assert flip_back(heatmaps, 'posetrack', shift=False)[0, 1, 2, 4] == 1.0
    assert flip_back(heatmaps, 'coco', shift=False)[0, 2, 2, 4] == 1.0


def test_flip_test_averages_a_perfect_detector_back_to_the_truth():
    keypoints = _keypoints([(4 * (10 + k), 4 * (5 + 3 * k)) for k in range(NUM_KEYPOINTS)])

    def detector(images):
        """Perfect pose net: reads a marker pixel to tell the mirrored image from the original."""
        maps = []
        for image in images:
            mirrored = image[0, 0, -1] > 0
            maps.append(torch.from_numpy(generate_targets(_mirrored(keypoints, 'coco') if mirrored else keypoints)[0]))
        return torch.stack(maps)

    images = torch.zeros(2, 3, 256, 192)
    images[:, 0, 0, 0] = 1.0  # marker at the top-left; the mirror has it top-right
    averaged = flip_test(detector, images, 'coco')
    decoded = decode_argmax(averaged, quarter_offset=False)[..., :2] * 4
    np.testing.assert_array_equal(decoded.numpy(), np.broadcast_to(keypoints[:, :2], (2, 17, 2)))
    assert averaged.max() == pytest.approx(1.0)
