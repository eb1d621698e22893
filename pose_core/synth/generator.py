"""One image (:func:`render`) and the whole set (:func:`generate`); see :mod:`pose_core.synth`."""

from __future__ import annotations

import json
import math
import multiprocessing
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import cv2
import numpy as np

from pose_core.skeletons import ANIMALPOSE
from pose_core.synth.body import OCCLUDER_ID, build_body, sample_pose, sample_shape
from pose_core.synth.camera import extent, place, project_keypoints, visibility
from pose_core.synth.camera_trap import camera_trap_look, eyeshine
from pose_core.synth.occluders import add_occluders
from pose_core.synth.paint import coat_textures, paint, shadow
from pose_core.synth.scene import SCENE_KINDS, apply_light, background_crop

Style = Literal["synthetic", "camera-trap"]
STYLES: tuple[str, ...] = ("synthetic", "camera-trap")


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
    label: np.ndarray  # (H, W) uint8: 0 background, synth.body.PART_IDS, 255 occluder
    silhouette: np.ndarray  # (H, W) bool: the animal, occluders ignored
    keypoints: np.ndarray  # (K, 3) float32 in ANIMALPOSE order
    bbox: tuple[float, float, float, float]
    area: float
    info: dict[str, Any]  # extra image fields: scene, style, pose, facing, ...
    jpeg_quality: int


def render(index: int, config: SynthConfig) -> Rendered:
    """Image ``index`` of the set ``config`` describes (pure: same inputs, same pixels)."""
    rng = np.random.default_rng(config.seed + index)
    style_rng = np.random.default_rng(int(rng.integers(2**62)))
    width, height = config.width, config.height
    scene = index % config.scenes
    kind = SCENE_KINDS[scene % len(SCENE_KINDS)]
    background = background_crop(rng, scene, width, height)
    shape, pose = sample_shape(rng), sample_pose(rng)
    body = build_body(shape, pose)
    camera, truncated = place(rng, body, pose, width, height)
    light = (rng.uniform(0.75, 1.2), rng.uniform(0.85, 1.15), rng.normal(1.0, 0.05, 3))
    canvas = background.copy()
    shadow(canvas, body, camera, rng.uniform(0.2, 0.45))
    x0, y0, x1, y1 = (int(v) for v in extent(body, camera))
    box = (max(x0 - 3, 0), max(y0 - 3, 0), min(x1 + 4, width), min(y1 + 4, height))
    label = np.zeros((height, width), np.uint8)
    paint(canvas, label, body, camera, coat_textures(shape, rng, box, camera.scale))
    silhouette = (label > 0) & (label != OCCLUDER_ID)
    occluder = add_occluders(rng, canvas, label, kind, box)
    image = apply_light(canvas, *light)
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
        image, extra = camera_trap_look(style_rng, image, label, silhouette)
        info.update(extra)
        quality = min(quality, int(style_rng.integers(30, 61)))
    keypoints = visibility(*project_keypoints(body, camera), label)
    if info["night"]:
        eyeshine(image, keypoints, 0.02 * camera.scale)
    ys, xs = np.nonzero(silhouette)
    bbox = (
        float(xs.min()),
        float(ys.min()),
        float(xs.max() - xs.min() + 1),
        float(ys.max() - ys.min() + 1),
    )
    return Rendered(
        image,
        apply_light(background, *light),
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
