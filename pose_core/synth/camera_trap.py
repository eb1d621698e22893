"""What real camera traps add to a clean render: night infrared frames with flash falloff
and eyeshine, motion blur, sensor noise, an info strip (and, in the generator, heavy JPEG)."""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np

from pose_core.skeletons import ANIMALPOSE
from pose_core.synth.body import OCCLUDER_ID


def _motion_blur(rng: np.random.Generator, image: np.ndarray, silhouette: np.ndarray) -> np.ndarray:
    """Blur along a random direction around the animal: it moved during the exposure."""
    length = int(rng.integers(3, 10))
    kernel = np.zeros((length, length), np.float32)
    kernel[length // 2, :] = 1.0 / length
    turn = cv2.getRotationMatrix2D(
        ((length - 1) / 2, (length - 1) / 2), float(rng.uniform(0, 180)), 1
    )
    line = np.asarray(cv2.warpAffine(kernel, turn, (length, length)), np.float32)
    blurred = cv2.filter2D(image, -1, line / np.float32(max(float(line.sum()), 1e-6)))
    near = cv2.dilate(silhouette.astype(np.uint8), np.ones((length, length), np.uint8))
    weight = cv2.GaussianBlur(near.astype(np.float32), (0, 0), length / 2)[..., None]
    return np.asarray(image * (1 - weight) + blurred * weight)


def camera_trap_look(
    rng: np.random.Generator,
    image: np.ndarray,
    label: np.ndarray,
    silhouette: np.ndarray,
) -> tuple[np.ndarray, dict[str, Any]]:
    """Night infrared with flash falloff (40%), motion blur, sensor noise, an info strip (60%).

    The strip is written into ``label`` as an occluder: what it covers is hidden (v=1).
    """
    height, width = label.shape
    out = image.astype(np.float32)
    night = bool(rng.random() < 0.4)
    if rng.random() < 0.45:
        out = _motion_blur(rng, out, silhouette)
    if night:  # the flash lights the centre; the corners fall off into the dark
        gray = cv2.cvtColor(np.clip(out, 0, 255).astype(np.uint8), cv2.COLOR_BGR2GRAY).astype(
            np.float32
        )
        yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
        r2 = ((xx - width / 2) ** 2 + (yy - height / 2) ** 2) / (width**2 + height**2)
        falloff = 0.15 + 0.95 * np.exp(-r2 / (2 * rng.uniform(0.06, 0.14)))
        out = np.repeat((gray * rng.uniform(0.9, 1.15) * falloff)[..., None], 3, axis=2)
    else:  # daylight traps wash colours out and haze the contrast
        mean = out.mean(axis=2, keepdims=True)
        out = mean + rng.uniform(0.6, 0.9) * (out - mean)
        out = out * rng.uniform(0.75, 0.95) + rng.uniform(10, 35)
    sigma = rng.uniform(6, 14) if night else rng.uniform(3, 9)
    out += sigma * rng.standard_normal((height, width, 1 if night else 3)).astype(np.float32)
    result = np.clip(out, 0, 255).astype(np.uint8)
    strip = bool(rng.random() < 0.6)
    if strip:
        bar = max(8, int(0.06 * height))
        top = bool(rng.random() < 0.3)
        rows = slice(0, bar) if top else slice(height - bar, height)
        result[rows] = 0
        label[rows] = OCCLUDER_ID
        hour = int(rng.integers(20, 30)) % 24 if night else int(rng.integers(6, 19))
        day, month, year, minute, celsius = (
            int(rng.integers(lo, hi)) for lo, hi in ((1, 29), (1, 13), (15, 25), (0, 60), (-15, 25))
        )
        text = f"{day:02d}/{month:02d}/20{year} {hour:02d}:{minute:02d}  {celsius}C"
        y = (bar if top else height) - bar // 4
        cv2.putText(result, text, (4, y), cv2.FONT_HERSHEY_PLAIN, bar / 14, (235, 235, 235), 1)
    return result, {"night": night, "info_strip": strip}


def eyeshine(image: np.ndarray, keypoints: np.ndarray, radius: float) -> None:
    """The tapetum reflects the flash: visible eyes glow in night frames."""
    for k in (ANIMALPOSE.index("L_Eye"), ANIMALPOSE.index("R_Eye")):
        x, y, v = keypoints[k]
        if v == 2:
            cv2.circle(
                image, (int(round(x)), int(round(y))), max(1, int(radius)), (250, 250, 250), -1
            )
