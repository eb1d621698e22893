"""``posetune predict``: poses for a folder of camera-trap images with a trained checkpoint.

Boxes come from a MegaDetector batch-output file (``images[].file``, ``detections[]`` with
``category`` "1" = animal, ``conf`` and a normalised ``[x, y, w, h]`` bbox) above a
confidence threshold, or, without one, the whole image is the box. Output is the COCO
results format (one object per animal: ``image_id``, ``file_name``, ``category_id``,
``bbox``, ``keypoints`` [x, y, score] * K, ``score``), plus optional overlay images with the
skeleton drawn (``x.png`` -> ``x.png.jpg``). Images that do not decode are left out and
listed on stderr at the end; the predictions for the others are still written.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

from pose_core.checks import BadImage, decode_image
from pose_core.config import TrialConfig
from pose_core.dataset import ImageCache, TopDownDataset
from pose_core.engine import load_checkpoint, predict
from pose_core.models import build_model
from pose_core.readers import load_image
from pose_core.records import DataError, Instance
from pose_core.skeletons import Skeleton, skeleton_from_coco_category
from pose_core.trainer import make_loader

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff"}
ANIMAL_CATEGORY = "1"


def checkpoint_file(path: str) -> Path:
    """A checkpoint file, a Ray checkpoint folder holding one, or an s3:// URI of either."""
    if "://" in path:
        from orchestrator.store.storage import local_cache

        path = local_cache(path)
    candidate = Path(path)
    if candidate.is_dir():
        candidate = candidate / "checkpoint.pt"
    if not candidate.is_file():
        raise FileNotFoundError(f"checkpoint {path} not found (expected a file or a folder "
                                "holding checkpoint.pt)")
    return candidate


def list_images(folder: str) -> list[Path]:
    root = Path(folder)
    if not root.is_dir():
        raise FileNotFoundError(f"--images {folder} is not a folder")
    files = sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise ValueError(f"--images {folder} holds no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
    return files


def read_detections(path: str, root: Path, threshold: float) -> dict[str, list[list[float]]]:
    """MegaDetector output -> {relative file: [normalised [x, y, w, h], ...]} above threshold."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise DataError(path, "file", "json", f"cannot read MegaDetector output: {error}") from None
    if not isinstance(data, dict) or not isinstance(data.get("images"), list):
        raise DataError(path, "file", "images", "missing", "a MegaDetector batch-output object")
    boxes: dict[str, list[list[float]]] = {}
    for n, entry in enumerate(data["images"]):
        name = entry.get("file")
        if not isinstance(name, str):
            raise DataError(path, f"images[{n}]", "file", "missing", "a relative image path")
        kept = []
        for m, det in enumerate(entry.get("detections") or []):
            bbox = det.get("bbox")
            if not (isinstance(bbox, list) and len(bbox) == 4):
                raise DataError(path, f"images[{n}] ({name}) detection {m}", "bbox",
                                f"{bbox!r}", "[x, y, w, h] normalised to 0..1")
            if str(det.get("category")) == ANIMAL_CATEGORY and float(det.get("conf", 0)) >= threshold:
                kept.append([float(v) for v in bbox])
        boxes[name] = kept
    return boxes


def instances_for(
    files: Sequence[Path], root: Path, boxes: dict[str, list[list[float]]] | None, k: int
) -> tuple[list[Instance], list[float], list[BadImage]]:
    """One Instance per box (whole image when no detections file); returns box scores too,
    and the images that do not decode (left out: one bad camera-trap file must not cost the
    predictions for the rest)."""
    instances: list[Instance] = []
    scores: list[float] = []
    bad: list[BadImage] = []
    for image_id, path in enumerate(files, start=1):
        image = decode_image(str(path))
        if isinstance(image, BadImage):
            bad.append(image)
            continue
        height, width = image.shape[:2]
        rel = path.relative_to(root).as_posix()
        if boxes is None:
            candidates = [[0.0, 0.0, 1.0, 1.0]]
        else:
            candidates = boxes.get(rel, boxes.get(path.name, []))
        for box in candidates:
            x, y, w, h = box[0] * width, box[1] * height, box[2] * width, box[3] * height
            if w <= 1 or h <= 1:
                continue
            instances.append(Instance(
                image_path=str(path), image_id=image_id, annotation_id=len(instances) + 1,
                width=width, height=height, bbox=(x, y, w, h),
                keypoints=np.zeros((k, 3), dtype=np.float32), area=w * h, source="predict",
            ))
            scores.append(1.0)
    return instances, scores, bad


def load_trained(checkpoint: str) -> tuple[torch.nn.Module, TrialConfig, Skeleton]:
    """The model of a checkpoint (file, Ray folder or s3:// URI), its config and skeleton."""
    state = load_checkpoint(checkpoint_file(checkpoint), restore_rng=False)
    cfg = TrialConfig.from_dict(state["config"])
    names = list(state["skeleton"])
    skeleton = skeleton_from_coco_category({"name": "animal", "keypoints": names, "skeleton": []})
    model = build_model(cfg.model, len(names), cfg.data.input_size)
    model.load_state_dict(state["model"])
    return model, cfg, skeleton


def trial_test_set(
    row: dict[str, Any], cfg: TrialConfig, catalog_path: str | None
) -> tuple[list[Instance], Skeleton]:
    """A trial row's test instances and skeleton: from the sweep's catalog file, else the
    default catalog as the row's scale generated it (its fixed pools, if any)."""
    from orchestrator.data.catalog import Catalog
    from orchestrator.data.trialdata import test_set
    from orchestrator.study.scale import SCALES

    pools = SCALES.get(str(row.get("scale") or "smoke"), SCALES["smoke"]).dataset_sizes
    catalog = Catalog.from_file(catalog_path, pools) if catalog_path else Catalog.default(
        pools, needs={cfg.data.test: cfg.data.max_test or 0})
    return test_set(cfg, catalog)


def instance_loader(cfg: TrialConfig, skeleton: Skeleton, instances: Sequence[Instance]) -> Any:
    """Test-time crops of ``instances`` (no augmentation), in order, batches of 16."""
    dataset = TopDownDataset.for_skeleton(
        list(instances), skeleton, input_size=cfg.data.input_size, image_cache=ImageCache())
    return make_loader(dataset, 16, False, 0)


def predict_instances(
    model: torch.nn.Module, cfg: TrialConfig, skeleton: Skeleton, instances: Sequence[Instance]
) -> tuple[np.ndarray, np.ndarray]:
    """Keypoints ``(N, K, 2)`` in image pixels and scores ``(N, K)``, in ``instances`` order."""
    loader = instance_loader(cfg, skeleton, instances)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model.to(device)
    coords, scores, indices = predict(model, loader, device, skeleton.flip_index, cfg.eval)
    order = np.argsort(indices)
    return coords[order], scores[order]


@dataclass(frozen=True)
class PredictOutcome:
    """What ``posetune predict`` wrote, and the images it left out."""

    results: list[dict[str, Any]]
    skipped: tuple[BadImage, ...]


def run_predict(args: argparse.Namespace) -> PredictOutcome:
    model, cfg, skeleton = load_trained(args.checkpoint)
    root = Path(args.images)
    files = list_images(args.images)
    boxes = read_detections(args.detections, root, args.threshold) if args.detections else None
    instances, _, bad = instances_for(files, root, boxes, skeleton.num_keypoints)
    results: list[dict[str, Any]] = []
    if instances:
        coords, scores = predict_instances(model, cfg, skeleton, instances)
        for index, (coord, score) in enumerate(zip(coords, scores, strict=True)):
            inst = instances[int(index)]
            keypoints = np.concatenate([coord, score[:, None]], axis=1)
            results.append({
                "image_id": inst.image_id, "file_name": root_relative(inst.image_path, root),
                "category_id": 1, "bbox": [round(v, 2) for v in inst.bbox],
                "keypoints": [round(float(v), 3) for v in keypoints.reshape(-1)],
                "score": float(score.mean()),
            })
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=1))
    if args.overlay:
        draw_overlays(results, root, Path(args.overlay), skeleton)
    print(f"{len(results)} animal(s) in {len(files) - len(bad)} image(s) -> {args.out}")
    if bad:
        print(f"posetune predict: skipped {len(bad)} of {len(files)} image(s) that do not "
              "decode:", file=sys.stderr)
        for image in bad:
            print(f"  {root_relative(image.path, root)}: {image.reason}", file=sys.stderr)
    return PredictOutcome(results, tuple(bad))


def root_relative(path: str, root: Path) -> str:
    return Path(path).relative_to(root).as_posix()


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


def draw_overlays(
    results: list[dict[str, Any]], root: Path, out: Path, skeleton: Skeleton,
    min_score: float = 0.2,
) -> None:
    out.mkdir(parents=True, exist_ok=True)
    by_file: dict[str, list[dict[str, Any]]] = {}
    for result in results:
        by_file.setdefault(result["file_name"], []).append(result)
    for name, items in by_file.items():
        image = load_image(str(root / name)).copy()
        for item in items:
            x, y, w, h = item["bbox"]
            cv2.rectangle(image, (int(x), int(y)), (int(x + w), int(y + h)), (255, 200, 0), 1)
            draw_pose(image, np.asarray(item["keypoints"]).reshape(-1, 3), skeleton,
                      (0, 255, 255), (0, 0, 255), min_score)
        # x.png -> x.png.jpg: x.png and x.jpeg in one folder must not share an overlay.
        target = out / f"{name}.jpg"
        target.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(target), image)
