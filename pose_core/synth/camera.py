"""The camera of the synthetic generator: where the animal sits in the frame, projection,
painting order and honest keypoint visibility.

Visibility is honest: a keypoint is visible (v=2) only when the part that owns it is the one
painted at its pixel (nothing painted later covers it) and, for points on a rounded surface
(eyes, ear bases, nose, throat, tail base), when that surface faces the camera.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from pose_core.skeletons import ANIMALPOSE
from pose_core.synth.body import OWNERS, PART_IDS, Body, Part, Pose, Prim


@dataclass(frozen=True)
class Camera:
    """Yaw about the vertical, then elevation; weak perspective; image = offset + scale * view."""

    rotation: np.ndarray  # (3, 3) body -> camera; the camera looks along -z with y up
    center: np.ndarray
    distance: float
    scale: float = 1.0
    offset: tuple[float, float] = (0.0, 0.0)

    @classmethod
    def looking_at(cls, body: Body, pose: Pose) -> Camera:
        c, s = math.cos(pose.yaw), math.sin(pose.yaw)
        yaw = np.array([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]])
        ce, se = math.cos(pose.elevation), math.sin(pose.elevation)
        tilt = np.array([[1.0, 0.0, 0.0], [0.0, ce, -se], [0.0, se, ce]])
        return cls(tilt @ yaw, body.center, pose.distance)

    @property
    def toward(self) -> np.ndarray:
        """Unit vector from the animal to the camera, in body coordinates."""
        return np.asarray(self.rotation[2])

    def project(self, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(N, 3)`` body points -> ``(N, 2)`` pixels and ``(N,)`` pixels per body unit."""
        view = (np.asarray(points, dtype=np.float64) - self.center) @ self.rotation.T
        k = self.scale * self.distance / (self.distance - view[:, 2])
        return np.stack([self.offset[0] + k * view[:, 0], self.offset[1] - k * view[:, 1]], 1), k


def bounds(prims: tuple[Prim, ...], camera: Camera) -> tuple[np.ndarray, np.ndarray]:
    lows, highs = [], []
    for prim in prims:
        xy, k = camera.project(np.stack(prim.points))
        r = (np.asarray(prim.radii) * k)[:, None]
        lows.append((xy - r).min(0))
        highs.append((xy + r).max(0))
    return np.min(lows, 0), np.max(highs, 0)


def extent(body: Body, camera: Camera) -> tuple[float, float, float, float]:
    """Projected ``(x0, y0, x1, y1)`` of the whole animal, radii included."""
    lo, hi = bounds(tuple(p for part in body.parts for p in part.prims), camera)
    return float(lo[0]), float(lo[1]), float(hi[0]), float(hi[1])


def order_parts(body: Body, camera: Camera) -> list[tuple[float, Part]]:
    """Back-to-front painting order as ``(closeness to the camera, part)``; torso is 0.

    Legs are compared with the torso where they attach: the side of the body first, then
    front legs before the chest and hind legs behind the rump, so a near-side leg paints over
    the flank and a far-side leg goes behind it whatever the heading.
    """
    t = camera.toward
    keyed = []
    for part in body.parts:
        if part.name.startswith("leg_"):
            key = float((part.anchor[2] - body.center[2]) * t[2] + part.bias * t[0])
        else:
            key = float((part.anchor - body.center) @ t) + part.bias
        keyed.append((key, part))
    return sorted(keyed, key=lambda item: item[0])


def project_keypoints(body: Body, camera: Camera) -> tuple[np.ndarray, np.ndarray]:
    """``(K, 2)`` pixels in ANIMALPOSE order; ``(K,)`` bool: its surface faces the camera."""
    names = ANIMALPOSE.keypoints
    xy, _ = camera.project(np.stack([body.points[n] for n in names]))
    t = camera.toward
    facing = [
        n not in body.normals or float(body.normals[n][0] @ t) > body.normals[n][1] for n in names
    ]
    return xy, np.array(facing)


def visibility(xy: np.ndarray, facing: np.ndarray, label: np.ndarray) -> np.ndarray:
    """``(K, 3)`` COCO keypoints: v=2 seen, v=1 in the frame but hidden, v=0 (and 0, 0) outside."""
    height, width = label.shape
    out = np.zeros((len(xy), 3), np.float32)
    for k, name in enumerate(ANIMALPOSE.keypoints):
        x, y = float(xy[k, 0]), float(xy[k, 1])
        if not (0.0 <= x <= width - 1 and 0.0 <= y <= height - 1):
            continue
        painted = int(label[int(round(y)), int(round(x))])
        seen = bool(facing[k]) and painted in {PART_IDS[p] for p in OWNERS[name]}
        out[k] = (x, y, 2.0 if seen else 1.0)
    return out


def place(
    rng: np.random.Generator, body: Body, pose: Pose, width: int, height: int
) -> tuple[Camera, bool]:
    """Scale and shift the camera so the animal fills a random part of the frame.

    About one image in six is truncated: the animal is pushed 10-40% of its extent past an
    edge (mostly left or right), as animals walking into or out of a trap's view are.
    """
    camera = Camera.looking_at(body, pose)
    x0, y0, x1, y1 = extent(body, camera)
    scale = rng.uniform(0.45, 1.0) * min(width, 1.33 * height) / 1.5
    scale = min(scale, 0.92 * width / (x1 - x0), 0.9 * height / (y1 - y0))
    x0, y0, x1, y1 = x0 * scale, y0 * scale, x1 * scale, y1 * scale
    ox = rng.uniform(2 - x0, max(width - 2 - x1, 2 - x0))
    oy = rng.uniform(2 - y0, max(height - 2 - y1, 2 - y0))
    truncated = bool(rng.random() < 0.16)
    if truncated:
        cut = rng.uniform(0.1, 0.4)
        side = int(rng.integers(4)) if rng.random() < 0.3 else int(rng.integers(2))
        ox = {0: -x0 - cut * (x1 - x0), 1: width - x1 + cut * (x1 - x0)}.get(side, ox)
        oy = {2: height - y1 + cut * (y1 - y0), 3: -y0 - cut * (y1 - y0)}.get(side, oy)
    return Camera(camera.rotation, camera.center, camera.distance, scale, (ox, oy)), truncated
