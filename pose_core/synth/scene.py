"""Backgrounds of the synthetic generator: one panorama per scene, cropped per image, and
the image's light.

A scene's background depends only on its id (and the image size), not on the seed: scene
``s`` is one place seen through different crops, as one Unity scene is. Kinds cycle forest,
snow, meadow, rocks (night-ish) for ``s = 0, 1, 2, 3, 4, ...``.
"""

from __future__ import annotations

import math
from functools import lru_cache
from typing import Any

import cv2
import numpy as np

SCENE_KINDS = ("forest", "snow", "meadow", "rocks")
Colour = tuple[float, float, float]


def _noise(
    rng: np.random.Generator, height: int, width: int, cells: int, octaves: int = 3
) -> np.ndarray:
    """``(H, W)`` float32 smooth noise of roughly unit scale: upsampled random grids."""
    out = np.zeros((height, width), np.float32)
    for o in range(octaves):
        n = cells * 2**o
        grid = rng.standard_normal((max(2, n * height // width), n)).astype(np.float32)
        out += cv2.resize(grid, (width, height), interpolation=cv2.INTER_CUBIC) / 2**o
    return out


def bgr(colour: Any) -> Colour:
    b, g, r = (float(c) for c in colour)
    return b, g, r


_PALETTES: dict[str, tuple[Colour, Colour, Colour]] = {  # sky, far tree line, ground
    "forest": ((60, 85, 70), (45, 70, 55), (55, 85, 100)),
    "snow": ((215, 205, 195), (60, 80, 60), (238, 232, 226)),
    "meadow": ((230, 195, 150), (60, 105, 75), (70, 150, 125)),
    "rocks": ((70, 52, 40), (55, 50, 45), (70, 72, 75)),
}


@lru_cache(maxsize=8)
def scene_canvas(scene: int, width: int, height: int) -> np.ndarray:
    """``(1.3 H, 1.6 W, 3)`` uint8 read-only panorama of scene ``scene``; images crop it."""
    rng = np.random.default_rng(10_007 + scene)
    h, w = int(height * 1.3), int(width * 1.6)
    kind = SCENE_KINDS[scene % len(SCENE_KINDS)]
    sky, far, ground = (np.array(c, np.float32) for c in _PALETTES[kind])
    horizon = int(h * rng.uniform(0.3, 0.45))
    yy = np.linspace(0.0, 1.0, h, dtype=np.float32)[:, None, None]
    img = np.where(yy * h < horizon, sky * (0.9 + 0.2 * yy), ground * (0.8 + 0.3 * yy))
    img = np.repeat(img.astype(np.float32), w, axis=1)
    img *= 1.0 + 0.12 * _noise(rng, h, w, 6)[..., None]
    img += 6.0 * rng.standard_normal((h, w, 1)).astype(np.float32)
    # a distant tree line or ridge: a noisy skyline just above the horizon
    skyline = horizon - h * (0.04 + 0.035 * _noise(rng, 1, w, 8)[0] + 0.02 * (kind == "snow"))
    rows = np.arange(h)[:, None]
    band = (rows > skyline[None, :]) & (rows < horizon + 0.02 * h)
    img[band] = img[band] * 0.25 + far * 0.75
    _scene_details(img, rng, kind, horizon)
    out = np.clip(img * (0.7 if kind == "rocks" else 1.0), 0, 255).astype(np.uint8)
    out.setflags(write=False)  # shared by every image of the scene
    return out


def _scene_details(img: np.ndarray, rng: np.random.Generator, kind: str, horizon: int) -> None:
    """Trunks (forest, snow), conifers (snow), grass strokes (meadow, forest), rocks."""
    h, w = img.shape[:2]
    if kind in ("forest", "snow"):
        bark = np.array((35, 45, 60) if kind == "forest" else (45, 50, 55), np.float32)
        for _ in range(int(rng.integers(6, 12))):
            x, tw = rng.uniform(0, w), rng.uniform(0.01, 0.06) * w
            foot, tone = int(horizon + rng.uniform(0.0, 0.25) * h), bark * rng.uniform(0.7, 1.3)
            for c in range(max(int(tw), 1)):  # a rounded trunk: darker towards its edges
                shade = 0.55 + 0.55 * math.sin(math.pi * (c + 0.5) / max(tw, 1.0))
                cv2.line(img, (int(x) + c, 0), (int(x) + c, foot), bgr(tone * shade), 1)
    if kind == "snow":
        for x in rng.uniform(0, w, 25):
            s = rng.uniform(0.04, 0.1) * h
            tri = np.array(
                [[x, horizon - 3 * s], [x - s, horizon + 4], [x + s, horizon + 4]], np.int32
            )
            cv2.fillConvexPoly(img, tri, (50.0, 70.0, 50.0))
    if kind in ("meadow", "forest"):
        n = 900 if kind == "meadow" else 300
        tint = np.array((40, 130, 105) if kind == "meadow" else (30, 70, 95), np.float32)
        for x, y, d, g in zip(
            rng.uniform(0, w, n),
            rng.uniform(horizon, h, n),
            rng.uniform(-3, 3, n),
            rng.uniform(0.6, 1.3, n),
            strict=True,
        ):
            length = 3 + 10 * (y - horizon) / max(h - horizon, 1)
            cv2.line(img, (int(x), int(y)), (int(x + d), int(y - length)), bgr(tint * g), 1)
    if kind == "rocks":
        for _ in range(int(rng.integers(10, 18))):
            cx, cy = int(rng.uniform(0, w)), int(rng.uniform(horizon - 0.05 * h, h))
            ax, ay = int(rng.uniform(0.04, 0.16) * w), int(rng.uniform(0.03, 0.1) * h)
            grey = float(rng.uniform(70, 120))
            cv2.ellipse(
                img,
                (cx, cy),
                (ax, ay),
                float(rng.uniform(-20, 20)),
                0,
                360,
                (grey, grey + 4, grey + 8),
                -1,
            )
            lit = (grey + 25, grey + 28, grey + 32)  # the sky-lit top of the rock
            cv2.ellipse(img, (cx, cy - ay // 3), (ax * 2 // 3, ay // 2), 0, 0, 360, lit, -1)


def background_crop(rng: np.random.Generator, scene: int, width: int, height: int) -> np.ndarray:
    pano = scene_canvas(scene, width, height)
    y = int(rng.integers(0, pano.shape[0] - height + 1))
    x = int(rng.integers(0, pano.shape[1] - width + 1))
    crop = pano[y : y + height, x : x + width]
    return (crop[:, ::-1] if rng.random() < 0.5 else crop).astype(np.float32)


def apply_light(image: np.ndarray, gain: float, gamma: float, cast: np.ndarray) -> np.ndarray:
    """Exposure, gamma and colour cast through a per-channel lookup table (fast)."""
    levels = np.arange(256, dtype=np.float64)[:, None] / 255.0
    table = np.clip(255.0 * np.power(levels, gamma) * gain * cast[None, :], 0, 255)
    pixels = np.clip(image + 0.5, 0, 255).astype(np.uint8)
    return np.asarray(cv2.LUT(pixels, table.astype(np.uint8).reshape(256, 1, 3)))
