"""Crop geometry: MMPose's affine, round trips, flips, and the random box/half-body rules."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from pose_core.geometry import (
    RandomBBoxTransform,
    bbox_to_center_scale,
    compose_flip,
    fix_aspect_ratio,
    flip_heatmaps,
    flip_keypoints,
    get_affine,
    random_half_body,
    transform_points,
    truncated_normal,
)
from pose_core.skeletons import ANIMALPOSE


def _three_point_affine(center, scale, rotation, size):
    """MMPose's construction: centre, a rotated half-width direction, and its perpendicular."""

    def third(a, b):
        d = a - b
        return b + np.array([-d[1], d[0]])

    theta = np.deg2rad(rotation)
    src_dir = np.array([0.5 * scale[0] * np.sin(theta), -0.5 * scale[0] * np.cos(theta)])
    dst_dir = np.array([0.0, -0.5 * size[0]])
    dst_c = np.array([size[0] * 0.5, size[1] * 0.5])
    src = np.stack([center, center + src_dir, third(center, center + src_dir)])
    dst = np.stack([dst_c, dst_c + dst_dir, third(dst_c, dst_c + dst_dir)])
    return cv2.getAffineTransform(src.astype(np.float32), dst.astype(np.float32))


@pytest.mark.parametrize("rotation", [0.0, 30.0, -75.0, 180.0])
def test_get_affine_matches_mmpose_three_point_construction(rotation):
    center, scale = np.array([320.5, 211.0]), np.array([150.0, 150.0])
    ours = get_affine(center, scale, rotation, (256, 256))
    reference = _three_point_affine(center, scale, rotation, (256, 256))
    np.testing.assert_allclose(ours, reference, atol=2e-3)
    # the box centre lands on the crop centre and the box width spans the crop
    np.testing.assert_allclose(transform_points(center[None], ours), [[128.0, 128.0]], atol=1e-9)


def test_affine_then_inverse_returns_points():
    rng = np.random.default_rng(0)
    points = rng.uniform(-50, 700, size=(100, 2))
    for _ in range(20):
        center = rng.uniform(0, 640, size=2)
        scale = np.full(2, rng.uniform(20, 900))
        rotation = rng.uniform(-180, 180)
        forward = get_affine(center, scale, rotation, (256, 256))
        inverse = get_affine(center, scale, rotation, (256, 256), inverse=True)
        back = transform_points(transform_points(points, forward), inverse)
        assert np.abs(back - points).max() < 1e-4


def test_bbox_to_center_scale_pads_and_fixes_aspect():
    center, scale = bbox_to_center_scale((10, 20, 100, 40))
    np.testing.assert_allclose(center, [60.0, 40.0])
    np.testing.assert_allclose(scale, [125.0, 50.0])
    _, square = bbox_to_center_scale((10, 20, 100, 40), aspect_ratio=1.0)
    np.testing.assert_allclose(square, [125.0, 125.0])
    np.testing.assert_allclose(fix_aspect_ratio(np.array([30.0, 80.0]), 0.75), [60.0, 80.0])
    np.testing.assert_allclose(fix_aspect_ratio(np.array([90.0, 80.0]), 0.75), [90.0, 120.0])


def test_flip_keypoints_swaps_pairs_and_twice_is_identity():
    rng = np.random.default_rng(1)
    k = ANIMALPOSE.num_keypoints
    keypoints = np.concatenate([rng.uniform(0, 300, (k, 2)), rng.integers(0, 3, (k, 1))], axis=1)
    once = flip_keypoints(keypoints, 320, ANIMALPOSE.flip_index)
    for a, b in ANIMALPOSE.flip_pairs:
        np.testing.assert_allclose(
            once[a], [319 - keypoints[b, 0], keypoints[b, 1], keypoints[b, 2]]
        )
    np.testing.assert_allclose(
        flip_keypoints(once, 320, ANIMALPOSE.flip_index), keypoints, atol=1e-9
    )


def test_flip_heatmaps_mirrors_swaps_and_twice_is_identity():
    k = ANIMALPOSE.num_keypoints
    heatmaps = np.zeros((k, 8, 10), np.float32)
    for i in range(k):
        heatmaps[i, i % 8, i % 10] = 1.0
    once = flip_heatmaps(heatmaps, ANIMALPOSE.flip_index)
    for i in range(k):
        j = ANIMALPOSE.flip_index[i]
        assert once[i, j % 8, 9 - j % 10] == 1.0
    np.testing.assert_array_equal(flip_heatmaps(once, ANIMALPOSE.flip_index), heatmaps)


def test_compose_flip_equals_cropping_the_flipped_image():
    rng = np.random.default_rng(2)
    image = cv2.GaussianBlur(rng.integers(0, 256, (120, 160, 3), dtype=np.uint8), (7, 7), 2)
    matrix = get_affine(np.array([70.0, 60.0]), np.array([90.0, 90.0]), 25.0, (64, 64))
    direct = cv2.warpAffine(cv2.flip(image, 1), matrix, (64, 64), flags=cv2.INTER_LINEAR)
    folded = cv2.warpAffine(image, compose_flip(matrix, 160), (64, 64), flags=cv2.INTER_LINEAR)
    # cv2 quantises sample positions to 1/32 px, so mirrored positions may round apart by one step
    assert np.abs(direct.astype(int) - folded.astype(int)).max() <= 3


def test_truncated_normal_is_bounded_with_the_truncated_std():
    draws = truncated_normal(np.random.default_rng(3), 20000)
    assert draws.shape == (20000,) and np.abs(draws).max() <= 1.0
    assert abs(draws.std() - 0.5396) < 0.01  # std of N(0, 1) truncated to [-1, 1]


def test_random_bbox_transform_follows_mmpose_defaults():
    transform = RandomBBoxTransform()
    rng = np.random.default_rng(4)
    draws = [transform.sample(rng) for _ in range(4000)]
    shifts = np.array([d[0] for d in draws])
    scales = np.array([d[1] for d in draws])
    rotations = np.array([d[2] for d in draws])
    assert np.abs(shifts).max() <= 0.16 and abs((shifts[:, 0] != 0).mean() - 0.3) < 0.03
    assert scales.min() >= 0.5 and scales.max() <= 1.5 and scales.std() > 0.2
    assert np.abs(rotations).max() <= 80 and abs((rotations != 0).mean() - 0.6) < 0.03
    again = transform.sample(np.random.default_rng(4))
    np.testing.assert_array_equal(again[0], draws[0][0])
    assert again[1:] == draws[0][1:]
    center, scale, rotation = RandomBBoxTransform(shift_prob=1.0).apply(
        np.array([100.0, 100.0]), np.array([50.0, 80.0]), np.random.default_rng(5)
    )
    assert np.all(np.abs(center - 100.0) <= 0.16 * np.array([50.0, 80.0]))


def _keypoints(visible_ids, k=20):
    keypoints = np.zeros((k, 3))
    keypoints[:, 0] = np.arange(k) * 10.0
    keypoints[:, 1] = np.arange(k) * 5.0
    keypoints[visible_ids, 2] = 2
    return keypoints


def test_half_body_rules():
    upper, lower = ANIMALPOSE.upper_body, ANIMALPOSE.lower_body
    rng = np.random.default_rng(6)
    few = _keypoints(list(range(8)))
    assert all(random_half_body(few, upper, lower, rng, prob=1.0) is None for _ in range(50))

    everything = _keypoints(list(range(20)))
    center, scale = random_half_body(everything, upper, lower, rng, prob=1.0, upper_prob=1.0)
    points = everything[list(upper), :2]
    np.testing.assert_allclose(center, points.mean(axis=0))
    np.testing.assert_allclose(scale, (points.max(axis=0) - points.min(axis=0)) * 1.5)

    # too few lower keypoints: the upper half is used even though lower is preferred
    few_lower = _keypoints(list(upper) + list(lower[:2]))
    center, _ = random_half_body(few_lower, upper, lower, rng, prob=1.0, upper_prob=0.0)
    np.testing.assert_allclose(center, points.mean(axis=0))
    center, _ = random_half_body(everything, upper, lower, rng, prob=1.0, upper_prob=0.0)
    np.testing.assert_allclose(center, everything[list(lower), :2].mean(axis=0))

    fired = [random_half_body(everything, upper, lower, rng) is not None for _ in range(3000)]
    assert abs(np.mean(fired) - 0.3) < 0.03
