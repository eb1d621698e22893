"""Heatmap codecs: golden 5x5 values, round trips, DARK against a plain loop, flip helpers."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from pose_core.codecs import (
    decode_heatmaps,
    encode_heatmaps,
    encode_heatmaps_torch,
    flip_back,
    merge_flip,
    modulate_heatmaps,
    target_weights_torch,
)

# exp(-r2 / 2) for sigma = 1, written out by hand.
E = {
    0: 1.0,
    1: 0.60653066,
    2: 0.36787944,
    4: 0.13533528,
    5: 0.08208500,
    8: 0.01831564,
    9: 0.01110900,
    10: 0.00673795,
    13: 0.00150344,
}


def _encode_one(x: float, y: float, unbiased: bool, sigma: float = 1.0) -> np.ndarray:
    maps, weights = encode_heatmaps(
        np.array([[x, y]]), np.array([True]), (5, 5), sigma=sigma, unbiased=unbiased
    )
    assert maps.shape == (1, 5, 5) and maps.dtype == np.float32
    assert weights.tolist() == [1.0]
    return maps[0]


def test_standard_golden_integer_point_cuts_patch_at_three_sigma() -> None:
    # Centre (0, 2), sigma 1: radius 3, so column x=4 (dx=4) lies outside the patch.
    expected = np.array(
        [
            [E[4], E[5], E[8], E[13], 0.0],
            [E[1], E[2], E[5], E[10], 0.0],
            [E[0], E[1], E[4], E[9], 0.0],
            [E[1], E[2], E[5], E[10], 0.0],
            [E[4], E[5], E[8], E[13], 0.0],
        ]
    )
    np.testing.assert_allclose(_encode_one(0.0, 2.0, unbiased=False), expected, atol=1e-7)


def test_standard_golden_half_integer_point_rounds_up() -> None:
    # (1.5, 2.5) rounds to pixel (2, 3); the whole 5x5 map is inside the 7x7 patch.
    expected = np.array(
        [
            [E[13], E[10], E[9], E[10], E[13]],
            [E[8], E[5], E[4], E[5], E[8]],
            [E[5], E[2], E[1], E[2], E[5]],
            [E[4], E[1], E[0], E[1], E[4]],
            [E[5], E[2], E[1], E[2], E[5]],
        ]
    )
    np.testing.assert_allclose(_encode_one(1.5, 2.5, unbiased=False), expected, atol=1e-7)


def test_unbiased_golden_integer_and_half_integer_points() -> None:
    # Integer point: same Gaussian as standard but never cut, so x=4 (dx=4) is exp(-8).
    integer = _encode_one(0.0, 2.0, unbiased=True)
    np.testing.assert_allclose(integer[2], [1.0, E[1], E[4], E[9], 0.00033546], atol=1e-7)
    np.testing.assert_allclose(integer[0, 4], 0.00004540, atol=1e-7)  # exp(-(16+4)/2)
    # Half-integer point (1.5, 2.5): per-axis factors exp(-d^2/2) with d = 0.5, 1.5, 2.5.
    gx = np.array([0.32465247, 0.88249690, 0.88249690, 0.32465247, 0.04393693])
    gy = np.array([0.04393693, 0.32465247, 0.88249690, 0.88249690, 0.32465247])
    half = _encode_one(1.5, 2.5, unbiased=True)
    np.testing.assert_allclose(half, np.outer(gy, gx), atol=1e-7)
    assert half.max() == pytest.approx(0.77880078, abs=1e-7)  # four pixels tie, none is 1


def test_sigma_two_uses_a_13_by_13_patch() -> None:
    maps, _ = encode_heatmaps(np.array([[10.0, 12.0]]), np.array([True]), (32, 32), sigma=2.0)
    ys, xs = np.nonzero(maps[0])
    assert (xs.min(), xs.max(), ys.min(), ys.max()) == (4, 16, 6, 18)
    assert maps[0, 12, 10] == 1.0


def test_heatmap_size_is_width_then_height() -> None:
    maps, _ = encode_heatmaps(np.array([[6.0, 2.0]]), np.array([True]), (8, 4), sigma=1.0)
    assert maps.shape == (1, 4, 8)
    assert np.unravel_index(maps[0].argmax(), maps[0].shape) == (2, 6)


@pytest.mark.parametrize("unbiased", [False, True])
def test_invisible_keypoint_gives_zero_map_and_weight(unbiased: bool) -> None:
    points = np.array([[3.0, 3.0], [4.0, 4.0]])
    maps, weights = encode_heatmaps(points, np.array([True, False]), (8, 8), 2.0, unbiased)
    assert weights.tolist() == [1.0, 0.0]
    assert maps[1].max() == 0.0 and maps[0].max() > 0.9


def test_off_map_rules() -> None:
    vis = np.array([True, True, True])
    # Standard, sigma 2: a patch reaching column 0 keeps weight 1, one ending at -1 does not.
    maps, weights = encode_heatmaps(np.array([[-6.0, 4], [-7.0, 4], [22.0, 4]]), vis, (16, 8))
    assert weights.tolist() == [1.0, 0.0, 0.0]
    assert maps[0, :, 0].max() == pytest.approx(np.exp(-36 / 8)) and maps[0, :, 1:].max() == 0
    assert maps[1].max() == 0.0 and maps[2].max() == 0.0
    # Unbiased: weight 0 as soon as the point leaves [0, W) x [0, H), and the map is zeroed.
    maps, weights = encode_heatmaps(
        np.array([[-0.5, 4], [15.9, 7.9], [4, 8.0]]), vis, (16, 8), unbiased=True
    )
    assert weights.tolist() == [0.0, 1.0, 0.0]
    assert maps[0].max() == 0.0 and maps[2].max() == 0.0


@pytest.mark.parametrize("unbiased", [False, True])
def test_torch_encode_equals_numpy(unbiased: bool) -> None:
    rng = np.random.default_rng(3)
    points = rng.uniform(-12, 60, size=(6, 9, 2))
    points[0, 0] = np.nan  # unusable coordinates: weight 0, like an invisible point
    visible = rng.random((6, 9)) > 0.25
    maps = encode_heatmaps_torch(
        torch.from_numpy(points), torch.from_numpy(visible).float(), (48, 40), 2.0, unbiased
    )
    weights = target_weights_torch(
        torch.from_numpy(points), torch.from_numpy(visible).float(), (48, 40), 2.0, unbiased
    )
    assert maps.shape == (6, 9, 40, 48) and maps.dtype == torch.float32
    for b in range(6):
        ref_maps, ref_weights = encode_heatmaps(points[b], visible[b], (48, 40), 2.0, unbiased)
        np.testing.assert_allclose(maps[b].numpy(), ref_maps, atol=1e-6)
        np.testing.assert_array_equal(weights[b].numpy(), ref_weights)
    assert 0 < float(weights.sum()) < weights.numel()  # both branches of the off-map rule hit


def test_standard_decode_golden_quarter_offsets() -> None:
    hm = np.zeros((1, 3, 5, 5), dtype=np.float32)
    # Channel 0: peak (2, 2), right > left and up > down -> (2.25, 1.75).
    hm[0, 0, 2, 2], hm[0, 0, 2, 3], hm[0, 0, 2, 1] = 1.0, 0.6, 0.4
    hm[0, 0, 1, 2], hm[0, 0, 3, 2] = 0.5, 0.3
    # Channel 1: peak at x=1 (outside MMPose's 1 < x < W-1): only y moves, toward y=3.
    hm[0, 1, 2, 1], hm[0, 1, 2, 2], hm[0, 1, 3, 1] = 0.9, 0.8, 0.2
    # Channel 2: all zero -> (-1, -1), score 0.
    coords, scores = decode_heatmaps(hm, "standard")
    np.testing.assert_allclose(coords[0], [[2.25, 1.75], [1.0, 2.25], [-1.0, -1.0]])
    np.testing.assert_allclose(scores[0], [1.0, 0.9, 0.0])


def test_unbiased_encode_dark_decode_round_trip_under_a_tenth_pixel() -> None:
    rng = np.random.default_rng(0)
    points = rng.uniform(8.0, 56.0, size=(200, 2))
    maps, _ = encode_heatmaps(points, np.ones(200, bool), (64, 64), 2.0, unbiased=True)
    coords, scores = decode_heatmaps(maps[None], "dark")
    error = np.linalg.norm(coords[0] - points, axis=1)
    assert error.max() < 0.1
    assert scores.min() > 0.75  # peak of a sub-pixel Gaussian sampled on the grid
    # Without DARK the same maps are off by up to a quarter pixel or more: the test has teeth.
    plain, _ = decode_heatmaps(maps[None], "standard")
    assert np.linalg.norm(plain[0] - points, axis=1).max() > 0.2


def test_standard_encode_decode_round_trip_within_half_pixel() -> None:
    rng = np.random.default_rng(1)
    points = rng.uniform(8.0, 56.0, size=(200, 2))
    maps, _ = encode_heatmaps(points, np.ones(200, bool), (64, 64), 2.0)
    coords, _ = decode_heatmaps(maps[None], "standard")
    error = np.abs(coords[0] - points)
    # The target is centred on the nearest pixel, so each axis is off by at most 0.5.
    assert error.max() <= 0.5 + 1e-6
    assert np.linalg.norm(error, axis=1).mean() < 0.5


def test_modulation_matches_the_opencv_recipe() -> None:
    rng = np.random.default_rng(2)
    maps = rng.random((4, 20, 24)).astype(np.float32)
    expected = []
    for m in maps:  # POSE_REFERENCE 5.2 step 2, literally: pad, cv2 blur, crop, rescale
        padded = np.zeros((30, 34), np.float32)
        padded[5:-5, 5:-5] = m
        blurred = cv2.GaussianBlur(padded, (11, 11), 0)[5:-5, 5:-5]
        expected.append(blurred * (m.max() / blurred.max()))
    np.testing.assert_allclose(modulate_heatmaps(maps, 11), np.stack(expected), atol=1e-6)


def _dark_loop(heatmaps: np.ndarray, kernel: int) -> np.ndarray:
    """POSE_REFERENCE 5.2 one keypoint at a time, with np.linalg.inv."""
    b, k, h, w = heatmaps.shape
    out = np.zeros((b, k, 2))
    border = (kernel - 1) // 2
    for i in range(b):
        for j in range(k):
            m = heatmaps[i, j]
            y, x = np.unravel_index(m.argmax(), m.shape)
            out[i, j] = x, y
            if m.max() <= 0:
                out[i, j] = -1
                continue
            padded = np.zeros((h + 2 * border, w + 2 * border), np.float32)
            padded[border:-border, border:-border] = m
            blur = cv2.GaussianBlur(padded, (kernel, kernel), 0)[border:-border, border:-border]
            hm = np.log(np.maximum(blur * (m.max() / blur.max()), 1e-10))
            if not (1 < x < w - 2 and 1 < y < h - 2):
                continue
            grad = np.array([hm[y, x + 1] - hm[y, x - 1], hm[y + 1, x] - hm[y - 1, x]]) * 0.5
            dxx = 0.25 * (hm[y, x + 2] - 2 * hm[y, x] + hm[y, x - 2])
            dyy = 0.25 * (hm[y + 2, x] - 2 * hm[y, x] + hm[y - 2, x])
            dxy = 0.25 * (hm[y + 1, x + 1] - hm[y - 1, x + 1] - hm[y + 1, x - 1] + hm[y - 1, x - 1])
            hessian = np.array([[dxx, dxy], [dxy, dyy]])
            if np.linalg.det(hessian) != 0:
                out[i, j] += -np.linalg.inv(hessian) @ grad
    return out


def test_vectorised_dark_matches_a_plain_loop_on_noisy_maps() -> None:
    rng = np.random.default_rng(4)
    points = rng.uniform(0.0, 31.0, size=(3, 8, 2))  # some near or on the border
    maps = np.stack(
        [encode_heatmaps(p, np.ones(8, bool), (32, 28), 2.0, unbiased=True)[0] for p in points]
    )
    maps += rng.normal(0.0, 0.05, maps.shape).astype(np.float32)
    maps[0, 0] = 0.0  # an empty map
    coords, _ = decode_heatmaps(maps, "dark", blur_kernel=11)
    np.testing.assert_allclose(coords, _dark_loop(maps, 11), atol=1e-3)
    assert decode_heatmaps(maps, "dark", blur_kernel=17)[0].shape == (3, 8, 2)


def test_decode_rejects_unknown_method_and_bad_shape() -> None:
    with pytest.raises(ValueError, match="standard, dark"):
        decode_heatmaps(np.zeros((1, 1, 5, 5)), "udp")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"\(B, K, H, W\)"):
        decode_heatmaps(np.zeros((1, 5, 5)))


def test_flip_back_twice_without_shift_is_identity() -> None:
    heatmaps = torch.rand(2, 5, 6, 7)
    flip_index = [1, 0, 2, 4, 3]
    once = flip_back(heatmaps, flip_index, shift=False)
    assert not torch.equal(once, heatmaps)
    torch.testing.assert_close(flip_back(once, flip_index, shift=False), heatmaps)


def test_flip_back_mirrors_swaps_channels_and_shifts_right() -> None:
    heatmaps = torch.zeros(1, 3, 4, 8)
    heatmaps[0, 0, 1, 2] = 1.0  # left channel, column 2
    heatmaps[0, 2, 3, 0] = 0.5  # centre channel, column 0
    flip_index = [1, 0, 2]
    plain = flip_back(heatmaps, flip_index, shift=False)
    assert plain[0, 1, 1, 5] == 1.0 and plain[0, 0].max() == 0  # 8-1-2 = 5, in channel 1
    shifted = flip_back(heatmaps, flip_index, shift=True)
    assert shifted[0, 1, 1, 6] == 1.0 and shifted[0, 1, 1, 5] == 0.0
    assert shifted[0, 2, 3, 7] == 0.0  # column 7 moved out to the right
    np.testing.assert_array_equal(shifted[0, :, :, 0], plain[0, :, :, 0])  # MMPose keeps col 0
    with pytest.raises(ValueError, match="permutation"):
        flip_back(heatmaps, [0, 0, 2])


def test_merge_flip_averages() -> None:
    a, b = torch.full((1, 2, 3, 3), 0.2), torch.full((1, 2, 3, 3), 0.6)
    torch.testing.assert_close(merge_flip(a, b), torch.full((1, 2, 3, 3), 0.4))
    with pytest.raises(ValueError):
        merge_flip(a, b[:, :1])
