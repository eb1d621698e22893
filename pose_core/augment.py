"""Photometric augmentation sets (albumentations) and KITPose's CutMix as a batch op.

The named sets are the study's five photometric augmentations, alone and all together. They run
on the uint8 RGB crop after the geometric crop, so keypoints are never touched by them.

CutMix follows KITPose (``cutmix_data_no_target_weight_update``): one box and one partner
permutation for the whole batch, lambda ~ Beta(1, 1), the box pasted into the images and, divided
by the stride, into the target heatmaps; base keypoints inside the box lose their weight, partner
keypoints keep it only inside the box; lambda is recomputed from the clipped box area.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import albumentations as A
import numpy as np
import torch
from torch import Tensor

# GaussNoise in albumentations 2.x takes the std as a fraction of 255. This range is the 1.x
# default ``var_limit=(10, 50)`` (std 3.2..7.1 grey levels), which the study's era would have
# used; the 2.x default (0.2..0.44, std up to 112) destroys the image.
_NOISE_STD = (10**0.5 / 255.0, 50**0.5 / 255.0)


def _blur() -> A.BasicTransform:
    return A.Blur(blur_limit=(3, 7), p=0.5)


def _noise() -> A.BasicTransform:
    return A.GaussNoise(std_range=_NOISE_STD, p=0.5)


def _hsv() -> A.BasicTransform:
    return A.HueSaturationValue(
        hue_shift_limit=(-20, 20), sat_shift_limit=(-30, 30), val_shift_limit=(-20, 20), p=0.5
    )


def _brightness_contrast() -> A.BasicTransform:
    return A.RandomBrightnessContrast(
        brightness_limit=(-0.2, 0.2), contrast_limit=(-0.2, 0.2), p=0.5
    )


def _grayscale() -> A.BasicTransform:
    # Night (infrared) camera-trap images are grey; the model must not rely on colour.
    return A.ToGray(num_output_channels=3, p=0.5)


_SINGLE = {
    "blur": _blur,
    "noise": _noise,
    "hsv": _hsv,
    "brightness_contrast": _brightness_contrast,
    "grayscale": _grayscale,
}
AUGMENT_SETS: tuple[str, ...] = ("none", *_SINGLE, "all")


def build_photometric(name: str) -> A.Compose | None:
    """The named photometric set for uint8 RGB ``(H, W, 3)`` images; None for ``"none"``."""
    if name == "none":
        return None
    if name == "all":
        return A.Compose([make() for make in _SINGLE.values()])
    if name in _SINGLE:
        return A.Compose([_SINGLE[name]()])
    raise ValueError(f"unknown augment set {name!r}; valid sets are {list(AUGMENT_SETS)}")


def seed_photometric(compose: A.Compose, rng: np.random.Generator) -> None:
    """Seed ``compose`` and each of its transforms with its own seed drawn from ``rng``.

    ``Compose.set_random_seed`` gives every child the *same* seed, so their "apply with p"
    draws coincide and in ``all`` the five transforms would fire together or not at all.
    """
    seeds = rng.integers(0, 2**31 - 1, size=len(compose.transforms) + 1)
    compose.set_random_seed(int(seeds[0]))
    for transform, seed in zip(compose.transforms, seeds[1:], strict=True):
        transform.set_random_seed(int(seed))


def apply_photometric(
    compose: A.Compose | None, image: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    """Apply a set to one uint8 RGB image with randomness drawn from ``rng`` (reproducible)."""
    if compose is None:
        return image
    seed_photometric(compose, rng)
    out: Any = compose(image=image)["image"]
    return np.asarray(out)


@dataclass(frozen=True)
class CutMixBatch:
    """A CutMix-ed batch. The loss is ``lam * L(w_a) + (1 - lam) * L(w_b)`` on ``heatmaps``.

    ``images`` ``(B, 3, H, W)``, ``heatmaps`` ``(B, K, h, w)``, ``weights_a``/``weights_b``
    ``(B, K)``, ``lam`` the kept fraction of the base image, ``partner`` ``(B,)`` the index of
    each sample's pasted partner, ``box`` ``(x1, y1, x2, y2)`` in input pixels (end exclusive).
    """

    images: Tensor
    heatmaps: Tensor
    weights_a: Tensor
    weights_b: Tensor
    lam: float
    partner: Tensor
    box: tuple[int, int, int, int]


def cutmix_box(
    height: int, width: int, lam: float, generator: torch.Generator
) -> tuple[int, int, int, int]:
    """Box of side ``sqrt(1 - lam)`` x image side, centre uniform, clipped to the image."""
    ratio = (1.0 - lam) ** 0.5
    cut_w, cut_h = int(width * ratio), int(height * ratio)
    cx = int(torch.randint(width, (1,), generator=generator))
    cy = int(torch.randint(height, (1,), generator=generator))
    x1, x2 = max(cx - cut_w // 2, 0), min(cx + cut_w // 2, width)
    y1, y2 = max(cy - cut_h // 2, 0), min(cy + cut_h // 2, height)
    return x1, y1, x2, y2


def _peaks_inside(heatmaps: Tensor, box: tuple[int, int, int, int]) -> Tensor:
    """``(B, K)`` bool: the argmax of each map lies in the (heatmap-pixel) box."""
    width = heatmaps.shape[-1]
    flat = heatmaps.flatten(2).argmax(dim=2)
    x, y = flat % width, flat // width
    x1, y1, x2, y2 = box
    return (x >= x1) & (x < x2) & (y >= y1) & (y < y2)


def cutmix(
    images: Tensor, heatmaps: Tensor, weights: Tensor, generator: torch.Generator
) -> CutMixBatch:
    """KITPose CutMix on a batch: ``images (B, 3, H, W)``, ``heatmaps (B, K, h, w)``, ``weights (B, K)``.

    ``generator`` is a CPU generator (box, lambda and permutation are drawn on the CPU, so the
    result does not depend on the device). Inputs are not modified.
    """
    batch, _, height, width = images.shape
    stride = width // heatmaps.shape[-1]
    lam = float(torch.rand((), generator=generator))  # Beta(1, 1) is uniform
    partner = torch.randperm(batch, generator=generator).to(images.device)
    x1, y1, x2, y2 = cutmix_box(height, width, lam, generator)
    hbox = (x1 // stride, y1 // stride, x2 // stride, y2 // stride)

    mixed = images.clone()
    mixed[:, :, y1:y2, x1:x2] = images[partner, :, y1:y2, x1:x2]
    partner_maps = heatmaps[partner]
    mixed_maps = heatmaps.clone()
    mixed_maps[:, :, hbox[1] : hbox[3], hbox[0] : hbox[2]] = partner_maps[
        :, :, hbox[1] : hbox[3], hbox[0] : hbox[2]
    ]
    weights_a = weights * (~_peaks_inside(heatmaps, hbox)).to(weights.dtype)
    weights_b = weights[partner] * _peaks_inside(partner_maps, hbox).to(weights.dtype)
    lam = 1.0 - (x2 - x1) * (y2 - y1) / float(width * height)
    return CutMixBatch(mixed, mixed_maps, weights_a, weights_b, lam, partner, (x1, y1, x2, y2))
