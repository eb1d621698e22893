"""Photometric sets and KITPose CutMix rules."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pose_core.augment import (
    AUGMENT_SETS,
    apply_photometric,
    build_photometric,
    cutmix,
    cutmix_box,
    seed_photometric,
)


def _image() -> np.ndarray:
    rng = np.random.default_rng(0)
    image = np.zeros((64, 64, 3), np.uint8)
    image[..., 0] = np.linspace(30, 220, 64, dtype=np.uint8)[None, :]
    image[..., 1] = np.linspace(200, 40, 64, dtype=np.uint8)[:, None]
    image[..., 2] = rng.integers(60, 180, (64, 64), dtype=np.uint8)
    return image


@pytest.mark.parametrize("name", AUGMENT_SETS)
def test_every_named_set_runs_and_changes_pixels(name):
    image = _image()
    compose = build_photometric(name)
    if name == "none":
        assert compose is None
        assert apply_photometric(compose, image, np.random.default_rng(0)) is image
        return
    changed = 0
    for seed in range(12):
        out = apply_photometric(compose, image.copy(), np.random.default_rng(seed))
        assert out.shape == image.shape and out.dtype == np.uint8
        changed += int(np.any(out != image))
    # every transform fires with p = 0.5: some seeds change pixels and (for one transform) some not
    assert changed >= 3
    if name != "all":
        assert changed <= 11


def test_unknown_set_lists_valid_names():
    with pytest.raises(ValueError, match="brightness_contrast"):
        build_photometric("solarize")


def test_photometric_is_reproducible_from_the_rng():
    compose = build_photometric("all")
    image = _image()
    first = apply_photometric(compose, image.copy(), np.random.default_rng(42))
    apply_photometric(compose, image.copy(), np.random.default_rng(7))
    again = apply_photometric(compose, image.copy(), np.random.default_rng(42))
    np.testing.assert_array_equal(first, again)


def test_seed_photometric_gives_each_transform_its_own_stream():
    compose = build_photometric("all")
    seed_photometric(compose, np.random.default_rng(3))
    draws = {transform.py_random.random() for transform in compose.transforms}
    assert len(draws) == len(compose.transforms)


def _batch():
    """Two 16x16 images (stride 4 -> 4x4 maps), K = 3, one-hot target maps at known cells."""
    images = torch.stack([torch.zeros(3, 16, 16), torch.ones(3, 16, 16)])
    heatmaps = torch.zeros(2, 3, 4, 4)
    peaks = {(0, 0): (0, 0), (0, 1): (3, 3), (0, 2): (1, 2), (1, 0): (2, 2), (1, 1): (0, 3)}
    for (b, k), (x, y) in peaks.items():
        heatmaps[b, k, y, x] = 1.0
    weights = torch.tensor([[1.0, 1.0, 1.0], [1.0, 1.0, 0.0]])  # sample 1 keypoint 2 unlabelled
    return images, heatmaps, weights, peaks


def test_cutmix_follows_kitpose_rules():
    images, heatmaps, weights, peaks = _batch()
    originals = images.clone(), heatmaps.clone(), weights.clone()
    zeroed_a = kept_b = 0
    for seed in range(30):
        out = cutmix(images, heatmaps, weights, torch.Generator().manual_seed(seed))
        x1, y1, x2, y2 = out.box
        assert sorted(out.partner.tolist()) == [0, 1]
        assert out.lam == pytest.approx(1 - (x2 - x1) * (y2 - y1) / 256)
        inside = torch.zeros(16, 16, dtype=torch.bool)
        inside[y1:y2, x1:x2] = True
        expected = torch.where(inside, images[out.partner], images)
        torch.testing.assert_close(out.images, expected)
        hin = torch.zeros(4, 4, dtype=torch.bool)
        hin[y1 // 4 : y2 // 4, x1 // 4 : x2 // 4] = True
        torch.testing.assert_close(out.heatmaps, torch.where(hin, heatmaps[out.partner], heatmaps))
        for b in range(2):
            for k in range(3):
                p = int(out.partner[b])
                xa, ya = peaks.get((b, k), (0, 0))  # an all-zero map's argmax is cell (0, 0)
                xb, yb = peaks.get((p, k), (0, 0))
                want_a = weights[b, k] * (not hin[ya, xa])
                want_b = weights[p, k] * bool(hin[yb, xb])
                assert out.weights_a[b, k] == want_a and out.weights_b[b, k] == want_b
                zeroed_a += int(weights[b, k] > 0 and want_a == 0)
                kept_b += int(want_b > 0)
    assert zeroed_a > 0 and kept_b > 0  # the seeds exercised both rules
    for before, after in zip(originals, (images, heatmaps, weights), strict=True):
        torch.testing.assert_close(before, after)  # inputs untouched


def test_cutmix_box_side_and_clipping():
    generator = torch.Generator().manual_seed(0)
    for lam in (0.0, 0.19, 0.75, 1.0):
        for _ in range(20):
            x1, y1, x2, y2 = cutmix_box(256, 192, lam, generator)
            assert 0 <= x1 <= x2 <= 192 and 0 <= y1 <= y2 <= 256
            assert x2 - x1 <= int(192 * (1 - lam) ** 0.5) and y2 - y1 <= int(256 * (1 - lam) ** 0.5)
    x1, y1, x2, y2 = cutmix_box(64, 64, 1.0, generator)
    assert (x2 - x1) * (y2 - y1) == 0
    x1, y1, x2, y2 = cutmix_box(64, 64, 0.0, generator)
    assert min(x2 - x1, y2 - y1) >= 32  # lam 0: a full-side box, at worst clipped to half
