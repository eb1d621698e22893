"""Top-down crop geometry: bbox to centre/scale, the crop affine, and the geometric augmentations.

Conventions follow MMPose 1.x (``GetBBoxCenterScale``, ``RandomFlip``, ``RandomHalfBody``,
``RandomBBoxTransform``, ``TopdownAffine`` with ``use_udp=False``):

- ``center`` is the box centre and ``scale`` the box ``(w, h)``, both in image pixels;
- the crop maps ``center`` to the output centre ``(W/2, H/2)`` and ``scale[0]`` image pixels to
  ``W`` output pixels, after rotating by ``rotation`` degrees about ``center``;
- a horizontal flip maps ``x -> width - 1 - x`` (pixel centres, what ``cv2.flip`` does).

Everything here is numpy, float64 where precision matters (the affine round trip is < 1e-4 px).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

BBOX_PADDING = 1.25
HALF_BODY_PADDING = 1.5


def bbox_to_center_scale(
    bbox: Sequence[float] | np.ndarray,
    padding: float = BBOX_PADDING,
    aspect_ratio: float | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """COCO ``(x, y, w, h)`` -> ``center (2,)``, ``scale (2,)`` in pixels, padded.

    With ``aspect_ratio`` (output ``W / H``) the scale is also expanded to that aspect, as
    ``TopdownAffine`` does; the dataset leaves it to the end so that half-body and the random
    box transform see the unexpanded box, as in MMPose.
    """
    x, y, w, h = (float(v) for v in bbox)
    center = np.array([x + w * 0.5, y + h * 0.5], dtype=np.float64)
    scale = np.array([w, h], dtype=np.float64) * padding
    if aspect_ratio is not None:
        scale = fix_aspect_ratio(scale, aspect_ratio)
    return center, scale


def fix_aspect_ratio(scale: np.ndarray, aspect_ratio: float) -> np.ndarray:
    """Grow the shorter side of ``scale (2,)`` so that ``w / h == aspect_ratio``."""
    w, h = float(scale[0]), float(scale[1])
    if w > h * aspect_ratio:
        return np.array([w, w / aspect_ratio], dtype=np.float64)
    return np.array([h * aspect_ratio, h], dtype=np.float64)


def get_affine(
    center: np.ndarray,
    scale: np.ndarray,
    rotation_deg: float,
    output_size: tuple[int, int],
    inverse: bool = False,
) -> np.ndarray:
    """The ``(2, 3)`` float64 matrix taking image pixels to crop pixels (or back if ``inverse``).

    ``output_size`` is ``(W, H)``. Only ``scale[0]`` sets the zoom, as in MMPose: the scale is
    expected to have the output's aspect already. MMPose builds the same similarity from three
    point pairs and ``cv2.getAffineTransform``; the closed form is exact and float64.
    """
    out_w, out_h = output_size
    zoom = out_w / float(scale[0])
    theta = np.deg2rad(rotation_deg)
    cos, sin = np.cos(theta), np.sin(theta)
    # Image -> crop rotates by -rotation: MMPose rotates the *source* direction by +rotation.
    linear = zoom * np.array([[cos, sin], [-sin, cos]], dtype=np.float64)
    out_center = np.array([out_w * 0.5, out_h * 0.5], dtype=np.float64)
    c = np.asarray(center, dtype=np.float64)
    if inverse:
        linear_inv = linear.T / zoom**2  # inverse of zoom * rotation
        return np.hstack([linear_inv, (c - linear_inv @ out_center)[:, None]])
    return np.hstack([linear, (out_center - linear @ c)[:, None]])


def transform_points(points: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """Apply a ``(2, 3)`` affine to ``points (N, 2)``; returns ``(N, 2)`` in the points' dtype."""
    pts = np.asarray(points)
    out = pts.astype(np.float64) @ matrix[:, :2].T + matrix[:, 2]
    return out.astype(pts.dtype if pts.dtype.kind == "f" else np.float64)


def hflip_matrix(image_width: int) -> np.ndarray:
    """``(3, 3)`` homogeneous matrix of the horizontal flip ``x -> width - 1 - x``."""
    return np.array([[-1.0, 0.0, image_width - 1.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])


def compose_flip(matrix: np.ndarray, image_width: int) -> np.ndarray:
    """Crop affine of the flipped image, as a ``(2, 3)`` matrix on the *unflipped* image.

    Warping the original image with it equals flipping the whole image and then cropping,
    without ever materialising the flipped full-size image.
    """
    return matrix @ hflip_matrix(image_width)


def flip_keypoints(
    keypoints: np.ndarray, image_width: int, flip_index: Sequence[int]
) -> np.ndarray:
    """Mirror ``keypoints (K, 3)`` (x, y, v) horizontally and swap left/right channels."""
    flipped = np.array(keypoints, copy=True)
    flipped[:, 0] = image_width - 1 - flipped[:, 0]
    return flipped[np.asarray(flip_index, dtype=np.intp)]


def flip_heatmaps(heatmaps: np.ndarray, flip_index: Sequence[int]) -> np.ndarray:
    """Mirror ``heatmaps (K, H, W)`` left-right and swap left/right channels."""
    return np.ascontiguousarray(heatmaps[np.asarray(flip_index, dtype=np.intp), :, ::-1])


def truncated_normal(rng: np.random.Generator, size: int) -> np.ndarray:
    """``size`` standard normal draws truncated to ``[-1, 1]`` (rejection; accepts ~68%)."""
    out = np.empty(0)
    while out.size < size:
        draws = rng.standard_normal(2 * size + 4)
        out = np.concatenate([out, draws[np.abs(draws) <= 1.0]])
    return out[:size]


@dataclass(frozen=True)
class RandomBBoxTransform:
    """MMPose ``RandomBBoxTransform`` defaults: random shift, scale and rotation of the box.

    Each factor is a truncated normal on ``[-1, 1]`` times its range, applied with its
    probability; scale is ``1 + 0.5 t`` for the default range ``(0.5, 1.5)``.
    """

    shift_factor: float = 0.16
    shift_prob: float = 0.3
    scale_range: tuple[float, float] = (0.5, 1.5)
    scale_prob: float = 1.0
    rotate_factor: float = 80.0
    rotate_prob: float = 0.6

    def sample(self, rng: np.random.Generator) -> tuple[np.ndarray, float, float]:
        """``(shift (2,) as a fraction of the box scale, scale factor, rotation in degrees)``."""
        t = truncated_normal(rng, 4)
        u = rng.random(3)
        shift = t[:2] * self.shift_factor if u[0] < self.shift_prob else np.zeros(2)
        low, high = self.scale_range
        scale = (high + low) * 0.5 + t[2] * (high - low) * 0.5 if u[1] < self.scale_prob else 1.0
        rotation = t[3] * self.rotate_factor if u[2] < self.rotate_prob else 0.0
        return shift, float(scale), float(rotation)

    def apply(
        self, center: np.ndarray, scale: np.ndarray, rng: np.random.Generator
    ) -> tuple[np.ndarray, np.ndarray, float]:
        """New ``(center, scale, rotation)``: the shift is relative to the box size."""
        shift, factor, rotation = self.sample(rng)
        return center + shift * scale, scale * factor, rotation


def random_half_body(
    keypoints: np.ndarray,
    upper_body: Sequence[int],
    lower_body: Sequence[int],
    rng: np.random.Generator,
    prob: float = 0.3,
    min_total: int = 9,
    min_upper: int = 2,
    min_lower: int = 3,
    upper_prob: float = 0.7,
    padding: float = HALF_BODY_PADDING,
) -> tuple[np.ndarray, np.ndarray] | None:
    """MMPose ``RandomHalfBody``: a box around the visible upper or lower keypoints, or None.

    ``keypoints`` is ``(K, 3)`` with v > 0 meaning labelled. Applies with ``prob`` when at
    least ``min_total`` keypoints are labelled; the upper half is preferred with
    ``upper_prob`` unless it has fewer than ``min_upper`` (lower: ``min_lower``) keypoints.
    Returns the new ``(center, scale)`` (scale not yet aspect-fixed) or None.
    """
    visible = keypoints[:, 2] > 0
    if int(visible.sum()) < min_total or rng.random() > prob:
        return None
    upper = [i for i in upper_body if visible[i]]
    lower = [i for i in lower_body if visible[i]]
    prefer_upper = rng.random() < upper_prob
    if len(upper) < min_upper and len(lower) < min_lower:
        return None
    if len(lower) < min_lower:
        chosen = upper
    elif len(upper) < min_upper:
        chosen = lower
    else:
        chosen = upper if prefer_upper else lower
    points = keypoints[chosen, :2].astype(np.float64)
    low, high = points.min(axis=0), points.max(axis=0)
    scale = (high - low) * padding
    if scale.max() < 1.0:  # coincident points: no usable box (MMPose would divide by zero)
        return None
    return points.mean(axis=0), scale
