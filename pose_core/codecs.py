"""Heatmap codecs: Gaussian targets, argmax / DARK decoding, flip-test helpers.

Facts follow POSE_REFERENCE sections 3 and 5 (MMPose ``MSRAHeatmap``, ``refine_keypoints``,
``refine_keypoints_dark``, ``flip_heatmaps``). Coordinates are heatmap pixels with pixel
centres at integers, x along W and y along H; ``heatmap_size`` is ``(W, H)`` as in MMPose.

Deliberate differences from MMPose, all outside the cases a crop normally produces:

- standard encode rounds the centre with ``floor(x + 0.5)``; MMPose truncates ``int(x + 0.5)``,
  which differs only for points left of / above the map by more than half a pixel.
- the standard patch is every pixel with ``|dx|, |dy| <= 3 sigma`` (13x13 for sigma 2, exactly
  MMPose's). For a non-integer ``3 sigma`` MMPose's patch is one pixel lopsided; ours is not.
- standard weight is 0 when the patch has no pixel on the map. MMPose keeps weight 1 in the
  single off-by-one case where the patch ends exactly one pixel before the map (an empty map).
- unbiased weight is 0 when the point itself is outside ``[0, W) x [0, H)`` (the project's
  rule: a sub-pixel target for a point off the map teaches only a tail); MMPose zeroes it only
  when the 3-sigma box misses the map. Weight 0 always comes with an all-zero map.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import cv2
import numpy as np
import torch

DecodeMethod = Literal["standard", "dark"]


# ------------------------------------------------------------------ encoding


def _centres_and_weights(
    keypoints: np.ndarray,
    visible: np.ndarray,
    width: int,
    height: int,
    sigma: float,
    unbiased: bool,
) -> tuple[np.ndarray, np.ndarray]:
    """``(K, 2)`` Gaussian centres and ``(K,)`` bool weights; mirrored by the torch path."""
    finite = np.isfinite(keypoints).all(axis=-1)
    points = np.where(finite[..., None], keypoints, 0.0).astype(np.float64)
    if unbiased:
        centres = points
        inside = (points[..., 0] >= 0) & (points[..., 0] < width)
        inside &= (points[..., 1] >= 0) & (points[..., 1] < height)
    else:
        centres = np.floor(points + 0.5)
        radius = math.floor(3 * sigma)
        inside = (centres[..., 0] + radius >= 0) & (centres[..., 0] - radius <= width - 1)
        inside &= (centres[..., 1] + radius >= 0) & (centres[..., 1] - radius <= height - 1)
    return centres, np.asarray(visible, dtype=bool) & finite & inside


def encode_heatmaps(
    keypoints: np.ndarray,
    visible: np.ndarray,
    heatmap_size: tuple[int, int],
    sigma: float = 2.0,
    unbiased: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """Gaussian target heatmaps for one instance.

    ``keypoints (K, 2)`` in heatmap pixels, ``visible (K,)`` bool, ``heatmap_size`` ``(W, H)``.
    Returns ``heatmaps (K, H, W)`` float32 with peak 1 and ``weights (K,)`` float32 in {0, 1}.
    Standard: centre on the nearest pixel, a ``(2*3sigma+1)``-wide patch. Unbiased (DARK):
    centre at the exact sub-pixel location, Gaussian over the whole map.
    """
    width, height = int(heatmap_size[0]), int(heatmap_size[1])
    keypoints = np.asarray(keypoints, dtype=np.float64).reshape(-1, 2)
    centres, keep = _centres_and_weights(keypoints, visible, width, height, sigma, unbiased)
    dx = np.arange(width, dtype=np.float64)[None, :] - centres[:, 0:1]  # (K, W)
    dy = np.arange(height, dtype=np.float64)[None, :] - centres[:, 1:2]  # (K, H)
    squared = dy[:, :, None] ** 2 + dx[:, None, :] ** 2
    heatmaps = np.exp(-squared / (2.0 * sigma**2))
    if not unbiased:
        radius = 3 * sigma
        in_patch = (np.abs(dy) <= radius)[:, :, None] & (np.abs(dx) <= radius)[:, None, :]
        heatmaps = heatmaps * in_patch
    heatmaps = heatmaps * keep[:, None, None]
    return heatmaps.astype(np.float32), keep.astype(np.float32)


def encode_heatmaps_torch(
    keypoints: torch.Tensor,
    weights: torch.Tensor,
    heatmap_size: tuple[int, int],
    sigma: float = 2.0,
    unbiased: bool = False,
) -> torch.Tensor:
    """Batched :func:`encode_heatmaps` on any device: ``(B, K, 2)``, ``(B, K)`` -> ``(B, K, H, W)``.

    ``weights > 0`` marks visible keypoints. The maps equal the numpy version's (float32
    rounding aside); the matching target weights come from :func:`target_weights_torch`.
    """
    width, height = int(heatmap_size[0]), int(heatmap_size[1])
    points = keypoints.to(torch.float32)
    keep = target_weights_torch(points, weights, heatmap_size, sigma, unbiased)
    points = torch.nan_to_num(points, nan=0.0, posinf=0.0, neginf=0.0)
    centres = points if unbiased else torch.floor(points + 0.5)
    xs = torch.arange(width, dtype=torch.float32, device=points.device)
    ys = torch.arange(height, dtype=torch.float32, device=points.device)
    dx = xs.view(1, 1, -1) - centres[..., 0:1]  # (B, K, W)
    dy = ys.view(1, 1, -1) - centres[..., 1:2]  # (B, K, H)
    squared = dy.unsqueeze(-1) ** 2 + dx.unsqueeze(-2) ** 2
    heatmaps = torch.exp(-squared / (2.0 * sigma**2))
    if not unbiased:
        radius = 3 * sigma
        in_patch = (dy.abs() <= radius).unsqueeze(-1) & (dx.abs() <= radius).unsqueeze(-2)
        heatmaps = heatmaps * in_patch
    return heatmaps * keep[..., None, None]


def target_weights_torch(
    keypoints: torch.Tensor,
    weights: torch.Tensor,
    heatmap_size: tuple[int, int],
    sigma: float = 2.0,
    unbiased: bool = False,
) -> torch.Tensor:
    """``(B, K)`` float32 loss weights matching :func:`encode_heatmaps_torch`'s maps.

    ``weights`` with the off-map rule of :func:`encode_heatmaps` applied (kept values pass
    through unchanged, so fractional weights survive).
    """
    width, height = int(heatmap_size[0]), int(heatmap_size[1])
    points = keypoints.to(torch.float32)
    finite = torch.isfinite(points).all(dim=-1)
    points = torch.nan_to_num(points, nan=0.0, posinf=0.0, neginf=0.0)
    x, y = points[..., 0], points[..., 1]
    if unbiased:
        inside = (x >= 0) & (x < width) & (y >= 0) & (y < height)
    else:
        cx, cy = torch.floor(x + 0.5), torch.floor(y + 0.5)
        radius = math.floor(3 * sigma)
        inside = (cx + radius >= 0) & (cx - radius <= width - 1)
        inside &= (cy + radius >= 0) & (cy - radius <= height - 1)
    keep = finite & inside & (weights > 0)
    return torch.where(keep, weights.to(torch.float32), torch.zeros_like(x))


# ------------------------------------------------------------------ decoding


def decode_heatmaps(
    heatmaps: np.ndarray, method: DecodeMethod = "standard", blur_kernel: int = 11
) -> tuple[np.ndarray, np.ndarray]:
    """Keypoints from heatmaps: ``(B, K, H, W)`` -> ``coords (B, K, 2)``, ``scores (B, K)``.

    Coords are heatmap pixels (x, y); scores are the raw maxima. A map whose maximum is <= 0
    gets coords (-1, -1) and no refinement (MMPose ``get_heatmap_maximum``).
    ``standard``: argmax plus a quarter pixel toward the higher neighbour (POSE_REFERENCE 5.1).
    ``dark``: argmax plus a Newton step on the blurred log-heatmap (POSE_REFERENCE 5.2).
    """
    if method not in ("standard", "dark"):
        raise ValueError(f"unknown decode method {method!r}; valid: standard, dark")
    maps = np.asarray(heatmaps, dtype=np.float32)
    if maps.ndim != 4:
        raise ValueError(f"heatmaps must be (B, K, H, W), got shape {maps.shape}")
    batch, num_kpts, height, width = maps.shape
    flat = maps.reshape(batch * num_kpts, height, width)
    index = flat.reshape(len(flat), -1).argmax(axis=1)
    scores = flat.reshape(len(flat), -1).max(axis=1)
    ys, xs = np.divmod(index, width)
    positive = scores > 0
    if method == "standard":
        coords = _quarter_offset(flat, xs, ys, positive)
    else:
        coords = _dark_offset(flat, xs, ys, positive, blur_kernel)
    coords[~positive] = -1.0
    return coords.reshape(batch, num_kpts, 2), scores.reshape(batch, num_kpts).astype(np.float32)


def _quarter_offset(
    flat: np.ndarray, xs: np.ndarray, ys: np.ndarray, valid: np.ndarray
) -> np.ndarray:
    """``(N, 2)`` argmax moved 0.25 px toward the higher neighbour, per axis.

    The border tests are MMPose's ``refine_keypoints`` (and HRNet's): x needs ``1 < x < W-1``,
    y needs ``1 < y < H-1``; column/row 1 is excluded there too, kept for parity.
    """
    n, height, width = flat.shape
    rows = np.arange(n)
    ok_x = valid & (xs > 1) & (xs < width - 1)
    ok_y = valid & (ys > 1) & (ys < height - 1)
    xr, xl = np.clip(xs + 1, 0, width - 1), np.clip(xs - 1, 0, width - 1)
    yd, yu = np.clip(ys + 1, 0, height - 1), np.clip(ys - 1, 0, height - 1)
    dx = np.where(ok_x, flat[rows, ys, xr] - flat[rows, ys, xl], 0.0)
    dy = np.where(ok_y, flat[rows, yd, xs] - flat[rows, yu, xs], 0.0)
    coords = np.stack([xs, ys], axis=1).astype(np.float32)
    coords += 0.25 * np.stack([np.sign(dx), np.sign(dy)], axis=1).astype(np.float32)
    return coords


def modulate_heatmaps(flat: np.ndarray, kernel: int = 11) -> np.ndarray:
    """DARK's Gaussian modulation of ``(N, H, W)`` maps, rescaled to each original maximum.

    Per map this is MMPose's recipe: zero-pad by ``(kernel-1)/2``, ``cv2.GaussianBlur(kernel,
    sigma auto)``, crop. Stacking the padded maps into one tall image gives the same numbers in
    one OpenCV call: the kernel never reaches past a map's own padding into its neighbour.
    """
    if kernel % 2 != 1 or kernel < 1:
        raise ValueError(f"blur kernel must be a positive odd integer, got {kernel}")
    border = (kernel - 1) // 2
    n, height, width = flat.shape
    maps = np.ascontiguousarray(flat, dtype=np.float32)
    padded = np.pad(maps, ((0, 0), (border, border), (border, border)))
    tall = padded.reshape(n * (height + 2 * border), width + 2 * border)
    blurred = cv2.GaussianBlur(tall, (kernel, kernel), 0).reshape(padded.shape)
    blurred = blurred[:, border : border + height, border : border + width]
    origin_max = maps.reshape(n, -1).max(axis=1)
    blurred_max = blurred.reshape(n, -1).max(axis=1)
    # An all-zero map would divide 0 by 0; its keypoint is not refined anyway.
    scale = np.divide(origin_max, blurred_max, out=np.ones(n, np.float32), where=blurred_max != 0)
    return blurred * scale[:, None, None]


def _dark_offset(
    flat: np.ndarray, xs: np.ndarray, ys: np.ndarray, valid: np.ndarray, kernel: int
) -> np.ndarray:
    """``(N, 2)`` argmax plus ``-H^-1 grad`` of the log of the modulated map (DARK, eq. 2)."""
    n, height, width = flat.shape
    logmap = np.log(np.maximum(modulate_heatmaps(flat, kernel), 1e-10))
    rows = np.arange(n)

    def at(ox: int, oy: int) -> np.ndarray:
        return logmap[rows, np.clip(ys + oy, 0, height - 1), np.clip(xs + ox, 0, width - 1)]

    centre = at(0, 0)
    dx = 0.5 * (at(1, 0) - at(-1, 0))
    dy = 0.5 * (at(0, 1) - at(0, -1))
    dxx = 0.25 * (at(2, 0) - 2 * centre + at(-2, 0))
    dyy = 0.25 * (at(0, 2) - 2 * centre + at(0, -2))
    dxy = 0.25 * (at(1, 1) - at(1, -1) - at(-1, 1) + at(-1, -1))
    det = dxx * dyy - dxy**2
    inside = valid & (xs > 1) & (xs < width - 2) & (ys > 1) & (ys < height - 2)
    step = inside & (det != 0)
    safe = np.where(step, det, 1.0)
    # Inverse of [[dxx, dxy], [dxy, dyy]] applied to (dx, dy), negated.
    off_x = np.where(step, -(dyy * dx - dxy * dy) / safe, 0.0)
    off_y = np.where(step, -(dxx * dy - dxy * dx) / safe, 0.0)
    return np.stack([xs + off_x, ys + off_y], axis=1).astype(np.float32)


# ------------------------------------------------------------------ flip test


def flip_back(
    heatmaps: torch.Tensor, flip_index: Sequence[int], shift: bool = True
) -> torch.Tensor:
    """Heatmaps predicted on the mirrored image, mapped back: ``(B, K, H, W)`` -> same shape.

    Mirror along W, take channel ``flip_index[k]`` as channel k (left/right swap), and with
    ``shift`` move everything one pixel right as MMPose's ``shift_heatmap=True`` does. Why:
    mirroring the image maps pixel u to W_img-1-u; with heatmap x = u / stride the mirrored-back
    peak lands (stride-1)/stride heatmap px (0.75 at stride 4) left of the original, and the
    integer shift compensates. Column 0 keeps its value (MMPose's rule).
    """
    if heatmaps.ndim != 4:
        raise ValueError(f"heatmaps must be (B, K, H, W), got shape {tuple(heatmaps.shape)}")
    index = list(flip_index)
    if sorted(index) != list(range(heatmaps.shape[1])):
        raise ValueError(
            f"flip_index must be a permutation of 0..{heatmaps.shape[1] - 1}, got {index}"
        )
    flipped = heatmaps.flip(-1)[:, index]
    if shift:
        flipped = torch.cat([flipped[..., :1], flipped[..., :-1]], dim=-1)
    return flipped


def merge_flip(heatmaps: torch.Tensor, flipped_back: torch.Tensor) -> torch.Tensor:
    """Flip-test average, 0.5 / 0.5: ``(B, K, H, W)`` twice -> ``(B, K, H, W)``."""
    if heatmaps.shape != flipped_back.shape:
        raise ValueError(f"shapes differ: {tuple(heatmaps.shape)} vs {tuple(flipped_back.shape)}")
    return (heatmaps + flipped_back) * 0.5
