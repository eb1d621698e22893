"""Where ``posetune predict``'s poses go: COCO keypoint results JSON and overlay images.

``write_outputs`` is the one entry point; it reads a :class:`~orchestrator.infer.frames.Predictions`
and knows nothing of how the frames were read or which model ran.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from orchestrator.infer.frames import OUTPUT_FORMATS, FrameReader, Predictions
from pose_core.skeletons import Skeleton


def coco_results(preds: Predictions) -> list[dict[str, Any]]:
    """COCO keypoint results: one object per animal (``image_id`` is the frame's 1-based
    position in the input, ``file_name`` its name, ``keypoints`` [x, y, score] * K)."""
    results: list[dict[str, Any]] = []
    for pose in preds.poses:
        frame = preds.frames[pose.frame]
        keypoints = np.concatenate([pose.keypoints, pose.scores[:, None]], axis=1)
        results.append({
            "image_id": frame.index + 1, "file_name": frame.name, "category_id": 1,
            "bbox": [round(float(v), 2) for v in pose.bbox],
            "keypoints": [round(float(v), 3) for v in keypoints.reshape(-1)],
            "score": float(pose.scores.mean()),
        })
    return results


def write_outputs(
    preds: Predictions, out: str, fmt: str, overlay: str | None, read_frame: FrameReader
) -> list[dict[str, Any]]:
    """Write the predictions to ``out`` in ``fmt`` (and overlays to the folder ``overlay``);
    returns the COCO results (what the CLI summarises)."""
    if fmt not in OUTPUT_FORMATS:
        raise ValueError(f"--format {fmt}: expected one of {', '.join(OUTPUT_FORMATS)}")
    results = coco_results(preds)
    target = Path(out)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(results, indent=1))
    if overlay:
        draw_overlays(preds, Path(overlay), read_frame)
    return results


def draw_pose(
    image: np.ndarray, points: np.ndarray, skeleton: Skeleton, line: tuple[int, int, int],
    dot: tuple[int, int, int], min_score: float = 0.2, thickness: int = 2,
) -> None:
    """Draw ``points (K, 3)`` (x, y, score or visibility) and the skeleton's links in place."""
    for a, b in skeleton.links:
        if points[a, 2] >= min_score and points[b, 2] >= min_score:
            cv2.line(image, tuple(int(v) for v in points[a, :2]),
                     tuple(int(v) for v in points[b, :2]), line, thickness)
    for px, py, s in points:
        if s >= min_score:
            cv2.circle(image, (int(px), int(py)), thickness + 1, dot, -1)


def draw_frame(image: np.ndarray, preds: Predictions, position: int,
               min_score: float = 0.2) -> np.ndarray:
    """A copy of ``image`` with the boxes and poses of the frame at ``position`` drawn."""
    image = image.copy()
    for pose in preds.poses_by_frame().get(position, []):
        x, y, w, h = pose.bbox
        cv2.rectangle(image, (int(x), int(y)), (int(x + w), int(y + h)), (255, 200, 0), 1)
        points = np.concatenate([pose.keypoints, pose.scores[:, None]], axis=1)
        draw_pose(image, points, preds.skeleton, (0, 255, 255), (0, 0, 255), min_score)
    return image


def draw_overlays(preds: Predictions, out: Path, read_frame: FrameReader,
                  min_score: float = 0.2) -> None:
    """One JPEG per frame with an animal: ``x.png`` -> ``OUT/x.png.jpg`` (x.png and x.jpeg in
    one folder must not share an overlay)."""
    out.mkdir(parents=True, exist_ok=True)
    for position in sorted(preds.poses_by_frame()):
        frame = preds.frames[position]
        image = draw_frame(read_frame(frame), preds, position, min_score)
        target = out / f"{frame.name}.jpg"
        target.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(target), image)
