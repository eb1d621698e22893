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

import numpy as np
import torch

from orchestrator.infer.frames import Frame, Pose, Predictions
from orchestrator.infer.outputs import write_outputs
from orchestrator.infer.suggest import check_destinations, write_suggestions
from pose_core.checks import BadImage, decode_image, load_image
from pose_core.config import TrialConfig
from pose_core.dataset import ImageCache, TopDownDataset
from pose_core.engine import load_checkpoint, predict
from pose_core.models import build_model
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
) -> tuple[list[Frame], list[Instance], list[int], list[BadImage]]:
    """The frames that decode, one Instance per box (the whole image when there is no
    detections file), each instance's frame position, and the images that do not decode (left
    out: one bad camera-trap file must not cost the predictions for the rest)."""
    frames: list[Frame] = []
    instances: list[Instance] = []
    owners: list[int] = []
    bad: list[BadImage] = []
    for image_id, path in enumerate(files, start=1):
        image = decode_image(str(path))
        if isinstance(image, BadImage):
            bad.append(image)
            continue
        height, width = image.shape[:2]
        rel = path.relative_to(root).as_posix()
        frames.append(Frame(index=image_id - 1, name=rel, width=width, height=height,
                            path=str(path)))
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
            owners.append(len(frames) - 1)
    return frames, instances, owners, bad


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
    check_destinations(args)
    model, cfg, skeleton = load_trained(args.checkpoint)
    root = Path(args.images)
    files = list_images(args.images)
    boxes = read_detections(args.detections, root, args.threshold) if args.detections else None
    frames, instances, owners, bad = instances_for(files, root, boxes, skeleton.num_keypoints)
    preds = Predictions(skeleton=skeleton, frames=frames)
    if instances:
        coords, scores = predict_instances(model, cfg, skeleton, instances)
        for inst, owner, coord, score in zip(instances, owners, coords, scores, strict=True):
            preds.poses.append(Pose(frame=owner, bbox=inst.bbox, keypoints=coord, scores=score))
    results = write_outputs(preds, args.out, args.format, args.overlay,
                            read_image_frame)
    print(f"{len(results)} animal(s) in {len(files) - len(bad)} image(s) -> {args.out}")
    write_suggestions(args, preds, read_image_frame)
    if bad:
        print(f"posetune predict: skipped {len(bad)} of {len(files)} image(s) that do not "
              "decode:", file=sys.stderr)
        for image in bad:
            print(f"  {root_relative(image.path, root)}: {image.reason}", file=sys.stderr)
    return PredictOutcome(results, tuple(bad))


def read_image_frame(frame: Frame) -> np.ndarray:
    """The pixels of an image-folder frame (BGR)."""
    assert frame.path is not None, "an image-folder frame has a file"
    return load_image(frame.path)


def root_relative(path: str, root: Path) -> str:
    return Path(path).relative_to(root).as_posix()
