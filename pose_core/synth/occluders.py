"""Grass, a branch or a trunk in front of the animal: what hides keypoints in the wild."""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np

from pose_core.synth.body import OCCLUDER_ID
from pose_core.synth.scene import bgr


def add_occluders(
    rng: np.random.Generator,
    canvas: np.ndarray,
    label: np.ndarray,
    kind: str,
    box: tuple[int, int, int, int],
) -> str:
    """Grass, a branch or a trunk in front of the animal (40% of images); label 255."""
    if rng.random() >= 0.4:
        return "none"
    choice = {
        "forest": ("grass", "branch", "trunk"),
        "snow": ("branch", "trunk", "grass"),
        "meadow": ("grass", "grass", "branch"),
        "rocks": ("branch", "grass", "grass"),
    }[kind]
    what = choice[int(rng.integers(3))]
    height, width = label.shape
    x0, y0, x1, y1 = box
    mask = np.zeros_like(label)
    layer = np.zeros_like(canvas)
    pairs: tuple[tuple[np.ndarray, Any], ...]
    if what == "grass":
        green = np.array((40, 140, 110) if kind != "snow" else (90, 150, 180), np.float32)
        for _ in range(int(rng.integers(25, 70))):
            x, bend = rng.uniform(x0 - 10, x1 + 10), rng.uniform(-8, 8)
            top = y1 - rng.uniform(0.1, 0.45) * (y1 - y0)
            blade = np.array([[x, height + 2], [x + bend / 2, (height + top) / 2], [x + bend, top]])
            pairs, thick = (
                ((layer, bgr(green * rng.uniform(0.6, 1.3))), (mask, 255)),
                int(rng.integers(1, 3)),
            )
            for img, value in pairs:
                cv2.polylines(img, [blade.astype(np.int32)], False, value, thick)
    elif what == "branch":
        ya, yb = rng.uniform(y0, y1, 2)
        stem = np.array(
            [[-5, ya], [width / 2, (ya + yb) / 2 + rng.uniform(-15, 15)], [width + 5, yb]]
        )
        thick = int(rng.integers(2, max(3, int(0.05 * height))))
        pairs = ((layer, (30.0, 45.0, 60.0)), (mask, 255))
        for img, value in pairs:
            cv2.polylines(img, [stem.astype(np.int32)], False, value, thick)
        for _ in range(int(rng.integers(2, 6))):
            s = stem[0] + rng.uniform(0.1, 0.9) * (stem[2] - stem[0])
            e = s + rng.uniform(-0.12, 0.12, 2) * width
            for img, value in pairs:
                cv2.line(
                    img, (int(s[0]), int(s[1])), (int(e[0]), int(e[1])), value, max(1, thick // 2)
                )
    else:
        tw = rng.uniform(0.12, 0.3) * (x1 - x0)
        x = rng.uniform(x0, x1 - tw)
        for img, value in (
            (layer, bgr(np.array((40, 55, 70)) * rng.uniform(0.7, 1.2))),
            (mask, 255),
        ):
            cv2.rectangle(img, (int(x), -1), (int(x + tw), height + 1), value, -1)
    inside = mask > 0
    canvas[inside] = layer[inside]
    label[inside] = OCCLUDER_ID
    return what
