"""The embedded default data: procedural lynx-like quadruped images with Animal-Pose keypoints.

The reference study trained on Unity renders of a lynx (4 scenes, walking and sitting) next to
real camera-trap photos. This generator stands in for both with numpy and OpenCV only: an
articulated quadruped (:mod:`pose_core.synth_body`) walking or sitting at any heading, with a
spotted tawny coat, ear tufts and a short black-tipped tail, on per-scene backgrounds, under
varied light, behind occluders, sometimes cut by the frame edge. ``style="synthetic"`` is the
clean render; ``style="camera-trap"`` adds what real traps add (night infrared frames with
flash falloff and eyeshine, motion blur, sensor noise, an info strip, heavy JPEG), so the two
styles differ the way real and synthetic data do.

Documented choices:
- One animal per image. ``bbox`` is the tight box of the rendered silhouette clipped to the
  frame; ``area`` is the silhouette's pixel count inside the frame (``area_rule="mask"``),
  amodal: occluders and the info strip do not shrink it, so OKS does not change with grass.
- Keypoints: v=2 visible; v=1 inside the frame but hidden (behind the body, on a surface that
  faces away, under an occluder or the info strip); v=0 outside the frame, stored as (0, 0).
  Pixel centres are integer coordinates (OpenCV's convention).
- Image ``i`` uses ``numpy.random.default_rng(seed + i)`` and scene ``i % scenes``, so the
  output does not depend on ``workers``. Geometry is drawn first and the style's own draws come
  from a child generator: both styles of one seed show the same animals in the same poses.
- A scene's background depends only on its id (and the image size), not on the seed: scene
  ``s`` is one place seen through different crops, as one Unity scene is. Kinds cycle forest,
  snow, meadow, rocks (night-ish) for ``s = 0, 1, 2, 3, 4, ...``.
"""

from __future__ import annotations

import json
import math
import multiprocessing
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

import cv2
import numpy as np

from pose_core import synth_body as sb
from pose_core.skeletons import ANIMALPOSE

Style = Literal["synthetic", "camera-trap"]
STYLES: tuple[str, ...] = ("synthetic", "camera-trap")
SCENE_KINDS = ("forest", "snow", "meadow", "rocks")
Colour = tuple[float, float, float]


@dataclass(frozen=True)
class SynthConfig:
    images: int = 1000
    seed: int = 0
    scenes: int = 4
    style: Style = "synthetic"
    width: int = 320  # small by default so the CPU quickstart is fast
    height: int = 240
    jpeg_quality: int = 90
    workers: int = 2

    def __post_init__(self) -> None:
        if self.style not in STYLES:
            raise ValueError(f"unknown style {self.style!r}; valid: {', '.join(STYLES)}")
        for name in ("images", "scenes", "workers"):
            if getattr(self, name) < (0 if name == "images" else 1):
                raise ValueError(f"SynthConfig.{name} must be positive, got {getattr(self, name)}")
        if min(self.width, self.height) < 32:
            raise ValueError(f"image size {self.width}x{self.height} is too small (min 32)")
        if not 1 <= self.jpeg_quality <= 100:
            raise ValueError(f"jpeg_quality must be in 1..100, got {self.jpeg_quality}")


@dataclass(frozen=True)
class Rendered:
    """One generated image before JPEG encoding, with what a test needs to check it."""

    image: np.ndarray  # (H, W, 3) uint8 BGR
    background: np.ndarray  # (H, W, 3) uint8: the same scene and light without the animal
    label: np.ndarray  # (H, W) uint8: 0 background, synth_body.PART_IDS, 255 occluder
    silhouette: np.ndarray  # (H, W) bool: the animal, occluders ignored
    keypoints: np.ndarray  # (K, 3) float32 in ANIMALPOSE order
    bbox: tuple[float, float, float, float]
    area: float
    info: dict[str, Any]  # extra image fields: scene, style, pose, facing, ...
    jpeg_quality: int


# ------------------------------------------------------------------ backgrounds


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


def _bgr(colour: Any) -> Colour:
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
                cv2.line(img, (int(x) + c, 0), (int(x) + c, foot), _bgr(tone * shade), 1)
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
            cv2.line(img, (int(x), int(y)), (int(x + d), int(y - length)), _bgr(tint * g), 1)
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


def _background(rng: np.random.Generator, scene: int, width: int, height: int) -> np.ndarray:
    pano = scene_canvas(scene, width, height)
    y = int(rng.integers(0, pano.shape[0] - height + 1))
    x = int(rng.integers(0, pano.shape[1] - width + 1))
    crop = pano[y : y + height, x : x + width]
    return (crop[:, ::-1] if rng.random() < 0.5 else crop).astype(np.float32)


def _light(image: np.ndarray, gain: float, gamma: float, cast: np.ndarray) -> np.ndarray:
    """Exposure, gamma and colour cast through a per-channel lookup table (fast)."""
    levels = np.arange(256, dtype=np.float64)[:, None] / 255.0
    table = np.clip(255.0 * np.power(levels, gamma) * gain * cast[None, :], 0, 255)
    pixels = np.clip(image + 0.5, 0, 255).astype(np.uint8)
    return np.asarray(cv2.LUT(pixels, table.astype(np.uint8).reshape(256, 1, 3)))


# ------------------------------------------------------------------ the animal in the frame


def _place(
    rng: np.random.Generator, body: sb.Body, pose: sb.Pose, width: int, height: int
) -> tuple[sb.Camera, bool]:
    """Scale and shift the camera so the animal fills a random part of the frame.

    About one image in six is truncated: the animal is pushed 10-40% of its extent past an
    edge (mostly left or right), as animals walking into or out of a trap's view are.
    """
    camera = sb.Camera.looking_at(body, pose)
    x0, y0, x1, y1 = sb.extent(body, camera)
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
    return sb.Camera(camera.rotation, camera.center, camera.distance, scale, (ox, oy)), truncated


def _shadow(canvas: np.ndarray, body: sb.Body, camera: sb.Camera, strength: float) -> None:
    """A soft contact shadow: an ellipse on the ground plane under the body."""
    theta = np.linspace(0, 2 * np.pi, 24, endpoint=False)
    ground = np.stack([body.center[0] + 0.7 * np.cos(theta), 0 * theta, 0.25 * np.sin(theta)], 1)
    xy, _ = camera.project(ground)
    mask = np.zeros(canvas.shape[:2], np.float32)
    cv2.fillPoly(mask, [np.round(xy * 16).astype(np.int32)], 1.0, cv2.LINE_AA, 4)
    soft = cv2.GaussianBlur(mask, (0, 0), max(1.0, 0.04 * camera.scale))
    canvas *= 1.0 - strength * soft[..., None]


def _occluders(
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
                ((layer, _bgr(green * rng.uniform(0.6, 1.3))), (mask, 255)),
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
            (layer, _bgr(np.array((40, 55, 70)) * rng.uniform(0.7, 1.2))),
            (mask, 255),
        ):
            cv2.rectangle(img, (int(x), -1), (int(x + tw), height + 1), value, -1)
    inside = mask > 0
    canvas[inside] = layer[inside]
    label[inside] = sb.OCCLUDER_ID
    return what


# ------------------------------------------------------------------ camera-trap look


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


def _camera_trap(
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
        label[rows] = sb.OCCLUDER_ID
        hour = int(rng.integers(20, 30)) % 24 if night else int(rng.integers(6, 19))
        day, month, year, minute, celsius = (
            int(rng.integers(lo, hi)) for lo, hi in ((1, 29), (1, 13), (15, 25), (0, 60), (-15, 25))
        )
        text = f"{day:02d}/{month:02d}/20{year} {hour:02d}:{minute:02d}  {celsius}C"
        y = (bar if top else height) - bar // 4
        cv2.putText(result, text, (4, y), cv2.FONT_HERSHEY_PLAIN, bar / 14, (235, 235, 235), 1)
    return result, {"night": night, "info_strip": strip}


def _eyeshine(image: np.ndarray, keypoints: np.ndarray, radius: float) -> None:
    """The tapetum reflects the flash: visible eyes glow in night frames."""
    for k in (ANIMALPOSE.index("L_Eye"), ANIMALPOSE.index("R_Eye")):
        x, y, v = keypoints[k]
        if v == 2:
            cv2.circle(
                image, (int(round(x)), int(round(y))), max(1, int(radius)), (250, 250, 250), -1
            )


# ------------------------------------------------------------------ one image, the whole set


def render(index: int, config: SynthConfig) -> Rendered:
    """Image ``index`` of the set ``config`` describes (pure: same inputs, same pixels)."""
    rng = np.random.default_rng(config.seed + index)
    style_rng = np.random.default_rng(int(rng.integers(2**62)))
    width, height = config.width, config.height
    scene = index % config.scenes
    kind = SCENE_KINDS[scene % len(SCENE_KINDS)]
    background = _background(rng, scene, width, height)
    shape, pose = sb.sample_shape(rng), sb.sample_pose(rng)
    body = sb.build_body(shape, pose)
    camera, truncated = _place(rng, body, pose, width, height)
    light = (rng.uniform(0.75, 1.2), rng.uniform(0.85, 1.15), rng.normal(1.0, 0.05, 3))
    canvas = background.copy()
    _shadow(canvas, body, camera, rng.uniform(0.2, 0.45))
    x0, y0, x1, y1 = (int(v) for v in sb.extent(body, camera))
    box = (max(x0 - 3, 0), max(y0 - 3, 0), min(x1 + 4, width), min(y1 + 4, height))
    label = np.zeros((height, width), np.uint8)
    sb.paint(canvas, label, body, camera, sb.coat_textures(shape, rng, box, camera.scale))
    silhouette = (label > 0) & (label != sb.OCCLUDER_ID)
    occluder = _occluders(rng, canvas, label, kind, box)
    image = _light(canvas, *light)
    info: dict[str, Any] = {
        "scene": f"scene_{scene}",
        "style": config.style,
        "pose": pose.kind,
        "facing": "right" if math.cos(pose.yaw) > 0 else "left",
        "yaw_deg": round(math.degrees(pose.yaw), 1),
        "truncated": truncated,
        "occluder": occluder,
        "night": False,
    }
    quality = config.jpeg_quality
    if config.style == "camera-trap":
        image, extra = _camera_trap(style_rng, image, label, silhouette)
        info.update(extra)
        quality = min(quality, int(style_rng.integers(30, 61)))
    keypoints = sb.visibility(*sb.project_keypoints(body, camera), label)
    if info["night"]:
        _eyeshine(image, keypoints, 0.02 * camera.scale)
    ys, xs = np.nonzero(silhouette)
    bbox = (
        float(xs.min()),
        float(ys.min()),
        float(xs.max() - xs.min() + 1),
        float(ys.max() - ys.min() + 1),
    )
    return Rendered(
        image,
        _light(background, *light),
        label,
        silhouette,
        keypoints,
        bbox,
        float(len(xs)),
        info,
        quality,
    )


def _image_task(job: tuple[int, SynthConfig, str]) -> tuple[int, dict[str, Any], dict[str, Any]]:
    """Render, encode and write image ``index``; return its COCO image and annotation records."""
    index, config, folder = job
    r = render(index, config)
    name = f"{index:06d}.jpg"
    ok, data = cv2.imencode(".jpg", r.image, [cv2.IMWRITE_JPEG_QUALITY, r.jpeg_quality])
    if not ok:
        raise RuntimeError(f"OpenCV could not encode image {index} as JPEG")
    (Path(folder) / name).write_bytes(data.tobytes())
    image = {
        "id": index + 1,
        "file_name": name,
        "width": config.width,
        "height": config.height,
        **r.info,
    }
    annotation = {
        "id": index + 1,
        "image_id": index + 1,
        "category_id": 1,
        "bbox": list(r.bbox),
        "area": r.area,
        "area_rule": "mask",
        "iscrowd": 0,
        "num_keypoints": int((r.keypoints[:, 2] > 0).sum()),
        "keypoints": [round(float(v), 2) for v in r.keypoints.reshape(-1)],
    }
    return index, image, annotation


def _worker_init() -> None:
    cv2.setNumThreads(1)  # one process per core already; OpenCV threads would oversubscribe


def _in_processes(
    jobs: list[tuple[int, SynthConfig, str]],
    workers: int,
    progress: Callable[[int, int], None] | None,
) -> list[tuple[int, dict[str, Any], dict[str, Any]]]:
    """Run the jobs in ``workers`` spawned processes, reporting progress as images finish.

    Spawn, not fork: safe inside Ray workers and after torch has started threads. A process
    pool from concurrent.futures fails loudly (BrokenProcessPool) where a multiprocessing.Pool
    would respawn crashing workers forever, e.g. when a script lacks the ``__main__`` guard.
    """
    context = multiprocessing.get_context("spawn")
    results = []
    try:
        with ProcessPoolExecutor(workers, mp_context=context, initializer=_worker_init) as pool:
            for future in as_completed([pool.submit(_image_task, job) for job in jobs]):
                results.append(future.result())
                if progress:
                    progress(len(results), len(jobs))
    except BrokenProcessPool as exc:
        raise RuntimeError(
            "synthetic data workers died while starting; a script that calls generate() with "
            "workers > 1 needs the `if __name__ == '__main__':` guard (processes are spawned)"
        ) from exc
    return results


def generate(
    out_dir: str | Path, config: SynthConfig, progress: Callable[[int, int], None] | None = None
) -> Path:
    """Write ``out_dir/images/*.jpg`` and ``out_dir/annotations.json``; return the JSON path.

    COCO keypoints with one category ``lynx`` (the 20 Animal-Pose names, 1-based skeleton
    links). Image records also carry ``scene``, ``style``, ``pose`` (walk/sit), ``facing``
    (left/right), ``yaw_deg``, ``truncated``, ``occluder``, ``night`` and, for camera traps,
    ``info_strip``. ``progress(done, total)`` is called as images complete. With
    ``workers > 1`` images render in spawned processes, so a calling script needs the usual
    ``if __name__ == "__main__":`` guard.
    """
    out = Path(out_dir)
    folder = out / "images"
    folder.mkdir(parents=True, exist_ok=True)
    jobs = [(i, config, str(folder)) for i in range(config.images)]
    results: list[tuple[int, dict[str, Any], dict[str, Any]]] = []
    if config.workers <= 1 or config.images < 8:
        for job in jobs:
            results.append(_image_task(job))
            if progress:
                progress(len(results), config.images)
    else:
        results = _in_processes(jobs, config.workers, progress)
    results.sort(key=lambda item: item[0])
    settings = {k: v for k, v in asdict(config).items() if k != "workers"}  # output is the same
    coco = {
        "info": {
            "description": "posetune procedural lynx",
            "config": settings,
            "area_rule": "silhouette pixels inside the frame, occluders ignored",
        },
        "images": [image for _, image, _ in results],
        "annotations": [annotation for _, _, annotation in results],
        "categories": [
            {
                "id": 1,
                "name": "lynx",
                "supercategory": "animal",
                "keypoints": list(ANIMALPOSE.keypoints),
                "skeleton": [[a + 1, b + 1] for a, b in ANIMALPOSE.links],
            }
        ],
    }
    path = out / "annotations.json"
    path.write_text(json.dumps(coco, separators=(",", ":")))
    return path
