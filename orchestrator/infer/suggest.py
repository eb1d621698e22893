"""``posetune predict --suggest N --package DIR``: the N frames whose predictions are least
certain, written as a labelling package whose corrected labels come back through the
catalog's ``labels =``.

Uncertainty of a frame with at least one animal (frames without one have nothing to correct
and are never picked), from three terms, each taken over the frame's least certain animal:

- ``confidence``: the mean keypoint score (lower is less certain);
- ``flip``: the mean distance between the image's keypoints and its mirrored crop's (mapped
  back), divided by the box size ``sqrt(w * h)`` (higher is less certain). Measured only when
  the input side filled ``Pose.flipped`` (it does when :func:`needs_flipped` says so);
- ``jump`` (video input only: image-folder frames are not neighbours): the mean keypoint
  displacement to the nearest animal of the neighbouring predicted frame, divided by the box
  size, the smaller of the previous and the next frame's (a one-frame glitch moves away and
  back; a real movement is smooth on one side).

Each measured term ranks the frames (0 = most certain, 1 = least; ties share their mean rank)
and the frames' combined score is the mean of their ranks; the N highest are picked (ties:
input order). Terms not measured are named in the package's ``README.txt``. ``--suggest``
larger than the frames with an animal keeps them all, with a note.

The package (a new or empty ``DIR``; written to a temporary folder and renamed) holds the
frames as PNG and the predictions as starting labels (points scored under
:data:`LABEL_MIN_SCORE` left unlabelled for the labeller to place), in ``--format``:

- ``slp``: ``DIR/labels.slp`` (open in SLEAP): per animal a user instance (editable, the
  labels) made from its PredictedInstance (with the scores), on an image-list video of
  ``DIR/images/``; the frames are SLEAP labelling suggestions too.
- ``dlc``: a DeepLabCut project: ``DIR/config.yaml`` and ``DIR/labeled-data/NAME/`` with the
  images and ``CollectedData_posetune.csv``/``.h5``.
- ``coco``: ``DIR/annotations.json`` with the images in ``DIR/images/``.

Every frame of the package is a label once read: correct each (or delete it) before training.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from orchestrator.infer.frames import Frame, FrameReader, Pose, Predictions
from orchestrator.infer.outputs import (
    SCORER,
    DlcTable,
    check_out,
    dlc_keys,
    dlc_values,
    predicted_instance,
    sleap_skeleton,
    write_atomically,
    write_dlc_table,
    write_slp,
)

LABEL_MIN_SCORE = 0.2  # starting labels keep the points scored at least this (as overlays do)
LABEL_FILES = {"slp": "labels.slp", "coco": "annotations.json", "dlc": "config.yaml"}
TERMS = ("confidence", "flip", "jump")


@dataclass(frozen=True)
class Uncertainty:
    """One frame's terms (None: not measured) and its combined rank score (0..1)."""

    position: int
    confidence: float
    flip: float | None
    jump: float | None
    score: float = 0.0


def needs_flipped(args: argparse.Namespace) -> bool:
    """Whether the input side should fill ``Pose.flipped`` (the flip term of --suggest)."""
    return bool(getattr(args, "suggest", None))


def check_destinations(args: argparse.Namespace) -> None:
    """``--out`` fits ``--format``; ``--suggest`` and ``--package`` come together and the
    package folder is new or empty (all before any model runs)."""
    check_out(args.out, args.format)
    suggest, package = getattr(args, "suggest", None), getattr(args, "package", None)
    if (suggest is None) != (package is None):
        raise ValueError("--suggest N and --package DIR go together (the N frames to label "
                         "next, and the folder to write them to)")
    if suggest is not None and package is not None:
        if suggest < 1:
            raise ValueError(f"--suggest {suggest}: expected 1 or more frames")
        folder = Path(package)
        if folder.exists() and (not folder.is_dir() or any(folder.iterdir())):
            raise ValueError(f"--package {package} exists and is not an empty folder; name a "
                             "new one")


def _box_size(pose: Pose) -> float:
    return max(float(np.sqrt(pose.bbox[2] * pose.bbox[3])), 1.0)


def _displacement(a: Pose, b: Pose) -> float:
    return float(np.linalg.norm(a.keypoints - b.keypoints, axis=1).mean()) / _box_size(a)


def _centre(pose: Pose) -> np.ndarray:
    x, y, w, h = pose.bbox
    return np.array([x + w / 2, y + h / 2])


def _jump(pose: Pose, neighbours: Sequence[Pose]) -> float:
    nearest = min(neighbours, key=lambda p: float(np.linalg.norm(_centre(p) - _centre(pose))))
    return _displacement(pose, nearest)


def uncertainties(preds: Predictions) -> list[Uncertainty]:
    """The terms and combined score of every frame with an animal, in input order."""
    grouped = preds.poses_by_frame()
    positions = sorted(grouped, key=lambda p: preds.frames[p].index)
    video = preds.video is not None
    rows = []
    for n, position in enumerate(positions):
        poses = grouped[position]
        confidence = min(float(p.scores.mean()) for p in poses)
        flipped = [p for p in poses if p.flipped is not None]
        flip = max(float(np.linalg.norm(p.keypoints - p.flipped, axis=1).mean()) / _box_size(p)
                   for p in flipped if p.flipped is not None) if flipped else None
        jump = None
        if video:
            sides = [grouped[positions[m]] for m in (n - 1, n + 1) if 0 <= m < len(positions)]
            if sides:
                jump = max(min(_jump(p, side) for side in sides) for p in poses)
        rows.append(Uncertainty(position, confidence, flip, jump))
    ranks = []
    for term in TERMS:
        values = [getattr(r, term) for r in rows]
        if rows and all(v is not None for v in values):
            ranks.append(_ranks([-v if term == "confidence" else v for v in values]))
    combined = np.mean(ranks, axis=0) if ranks else np.zeros(len(rows))
    return [Uncertainty(r.position, r.confidence, r.flip, r.jump, float(s))
            for r, s in zip(rows, combined, strict=True)]


def _ranks(values: Sequence[float]) -> np.ndarray:
    """0 (lowest) .. 1 (highest); ties share their mean rank."""
    array = np.asarray(values, dtype=np.float64)
    if len(array) < 2:
        return np.ones(len(array))
    order = array.argsort(kind="stable")
    ranks = np.empty(len(array))
    ranks[order] = np.arange(len(array))
    for value in np.unique(array):
        same = array == value
        ranks[same] = ranks[same].mean()
    return ranks / (len(array) - 1)


def pick(preds: Predictions, n: int) -> list[Uncertainty]:
    """The ``n`` least certain frames, least certain first."""
    rows = uncertainties(preds)
    return sorted(rows, key=lambda r: -r.score)[:n]


def measured_terms(preds: Predictions) -> dict[str, str]:
    """Each term -> "measured" or why not."""
    flips = any(p.flipped is not None for p in preds.poses)
    return {
        "confidence": "measured",
        "flip": "measured" if flips else "not measured (no flipped predictions were made)",
        "jump": "measured" if preds.video is not None
        else "not measured (image folder: frames are not neighbours)",
    }


# --------------------------------------------------------------------------- the package


def image_name(frame: Frame) -> str:
    """The package's file for a frame: ``img<frame number>.png`` for video frames (as
    DeepLabCut names extracted frames), else the image's relative path flattened
    (``sub/x.jpg`` -> ``sub__x.jpg.png``)."""
    if frame.path is None:
        return f"img{frame.index:06d}.png"
    flat = frame.name.replace("/", "__")
    return flat if flat.lower().endswith(".png") else f"{flat}.png"


def starting_points(pose: Pose) -> np.ndarray:
    """``(K, 2)`` with NaN where the score is under :data:`LABEL_MIN_SCORE`."""
    points = np.asarray(pose.keypoints, dtype=np.float64).copy()
    points[pose.scores < LABEL_MIN_SCORE] = np.nan
    return points


def write_suggestions(args: argparse.Namespace, preds: Predictions,
                      read_frame: FrameReader) -> Path | None:
    """``--suggest N --package DIR``: pick, write the package, print where and the catalog
    lines; returns the labels file (None without --suggest)."""
    import sys

    if not getattr(args, "suggest", None):
        return None
    with_animal = len(preds.poses_by_frame())
    if with_animal == 0:
        raise ValueError(f"--suggest {args.suggest}: no frame has a predicted animal; "
                         "nothing to label")
    if args.suggest > with_animal:
        print(f"posetune predict: --suggest {args.suggest}: only {with_animal} frame(s) have "
              f"an animal; the package holds all {with_animal}", file=sys.stderr)
    picked = pick(preds, args.suggest)
    labels = write_package(preds, picked, Path(args.package), args.format, read_frame)
    name = re.sub(r"[^A-Za-z0-9_-]+", "-", Path(args.package).resolve().name).strip("-")
    print(f"{len(picked)} frame(s) to label next -> {labels} (why: "
          f"{Path(args.package) / 'README.txt'}); once corrected, train on them with the "
          f"catalog entry [datasets.{name or 'corrected'}] labels = \"{labels}\"")
    return labels


def write_package(preds: Predictions, picked: Sequence[Uncertainty], package: Path, fmt: str,
                  read_frame: FrameReader) -> Path:
    """The images and README in a temporary folder renamed to ``package``, then the labels
    file (it names the images where they end up); ``package`` is removed on any failure."""
    package = Path(os.path.abspath(package))
    stage = package.parent / f".{package.name}.partial-{os.getpid()}"
    image_dir = Path("labeled-data") / package.name if fmt == "dlc" else Path("images")
    names = [image_name(preds.frames[u.position]) for u in picked]
    shutil.rmtree(stage, ignore_errors=True)
    try:
        (stage / image_dir).mkdir(parents=True)
        for u, name in zip(picked, names, strict=True):
            image = read_frame(preds.frames[u.position])
            if not cv2.imwrite(str(stage / image_dir / name), image):
                raise OSError(f"cannot write {stage / image_dir / name}")
        (stage / "README.txt").write_text(readme(preds, picked, names, fmt))
        if package.exists():
            package.rmdir()  # checked empty before predicting
        stage.rename(package)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    try:
        images = [package / image_dir / n for n in names]
        if fmt == "slp":
            return _slp_package(preds, picked, images, package)
        if fmt == "dlc":
            return _dlc_package(preds, picked, images, package)
        return _coco_package(preds, picked, images, package)
    except BaseException:
        shutil.rmtree(package, ignore_errors=True)
        raise


def _slp_package(preds: Predictions, picked: Sequence[Uncertainty], images: list[Path],
                 package: Path) -> Path:
    import sleap_io

    skeleton = sleap_skeleton(preds.skeleton)
    video = sleap_io.Video.from_filename([str(p) for p in images])
    grouped = preds.poses_by_frame()
    frames = []
    for index, u in enumerate(picked):
        instances = []
        for pose in grouped[u.position]:
            predicted = predicted_instance(pose.keypoints, pose.scores, skeleton)
            instances += [sleap_io.Instance.from_numpy(starting_points(pose), skeleton,
                                                       from_predicted=predicted), predicted]
        frames.append(sleap_io.LabeledFrame(video=video, frame_idx=index, instances=instances))
    labels = sleap_io.Labels(frames, videos=[video], skeletons=[skeleton])
    labels.suggestions = [sleap_io.SuggestionFrame(video=video, frame_idx=i)
                          for i in range(len(picked))]
    target = package / LABEL_FILES["slp"]
    write_slp(labels, target)
    return target


def _dlc_package(preds: Predictions, picked: Sequence[Uncertainty], images: list[Path],
                 package: Path) -> Path:
    import yaml

    grouped = preds.poses_by_frame()
    animals = max(len(grouped[u.position]) for u in picked)
    table = DlcTable(dlc_keys(preds.skeleton, animals, ("x", "y")), index_levels=3)
    for u, image in zip(picked, images, strict=True):
        poses = [(starting_points(p), p.scores) for p in grouped[u.position]]
        table.rows.append((("labeled-data", package.name, image.name),
                           dlc_values(table.keys, poses)))
    folder = images[0].parent
    for suffix in (".csv", ".h5"):
        write_dlc_table(table, folder / f"CollectedData_{SCORER}{suffix}")
    names = list(preds.skeleton.keypoints)
    config = {
        "Task": package.name, "scorer": SCORER, "date": "", "project_path": str(package),
        "multianimalproject": animals > 1,
        "video_sets": {},
        "skeleton": [[names[a], names[b]] for a, b in preds.skeleton.links],
        "numframes2pick": len(picked), "pcutoff": LABEL_MIN_SCORE, "dotsize": 6,
        "alphavalue": 0.7, "colormap": "rainbow",
    }
    if animals > 1:
        config.update(multianimalbodyparts=names, uniquebodyparts=[], bodyparts="MULTI!",
                      individuals=[f"individual{n + 1}" for n in range(animals)])
    else:
        config["bodyparts"] = names
    target = package / LABEL_FILES["dlc"]
    write_atomically(target, lambda tmp: tmp.write_text(yaml.safe_dump(config, sort_keys=False)))
    return package


def _coco_package(preds: Predictions, picked: Sequence[Uncertainty], images: list[Path],
                  package: Path) -> Path:
    from pose_core.readers import write_coco
    from pose_core.records import Instance

    grouped = preds.poses_by_frame()
    instances: list[Instance] = []
    for image_id, (u, image) in enumerate(zip(picked, images, strict=True), start=1):
        frame = preds.frames[u.position]
        for pose in grouped[u.position]:
            keep = pose.scores >= LABEL_MIN_SCORE
            keypoints = np.zeros((len(pose.scores), 3), dtype=np.float32)
            keypoints[keep, :2] = pose.keypoints[keep]
            keypoints[keep, 2] = 2
            x, y, w, h = (float(v) for v in pose.bbox)
            instances.append(Instance(
                image_path=str(image), image_id=image_id, annotation_id=len(instances) + 1,
                width=frame.width, height=frame.height, bbox=(x, y, w, h), keypoints=keypoints,
                area=w * h, source=package.name, category=preds.skeleton.name,
                area_rule="bbox"))
    target = package / LABEL_FILES["coco"]
    write_coco(instances, preds.skeleton, target)
    return target


def readme(preds: Predictions, picked: Sequence[Uncertainty], names: Sequence[str],
           fmt: str) -> str:
    """The package's README.txt: what it is, how the frames were chosen, and each frame."""
    terms = measured_terms(preds)
    lines = [
        f"posetune predict --suggest: the {len(picked)} frame(s) whose predictions are least "
        "certain, least certain first.",
        f"Labels ({fmt}): {LABEL_FILES[fmt]}; the predictions are the starting labels (points "
        f"scored under {LABEL_MIN_SCORE} left for you to place). Correct every frame (or delete "
        "it): each one is a label once read.",
        "",
        "Uncertainty: each measured term ranks the frames with an animal (0 = most certain, "
        "1 = least); the score is the mean of the ranks.",
        "  confidence: mean keypoint score of the frame's least certain animal (low = uncertain)"
        f"; {terms['confidence']}",
        "  flip: keypoint distance between the image's and its mirror's prediction / box size "
        f"(high = uncertain); {terms['flip']}",
        "  jump: keypoint displacement to the neighbouring predicted frame / box size, the "
        f"smaller of both sides (high = uncertain); {terms['jump']}",
        "",
        "rank\tscore\tconfidence\tflip\tjump\timage\tframe",
    ]
    for n, (u, name) in enumerate(zip(picked, names, strict=True), start=1):
        frame = preds.frames[u.position]
        when = f" ({frame.time_s:.2f} s)" if frame.time_s is not None else ""
        lines.append("\t".join([str(n), f"{u.score:.3f}", f"{u.confidence:.3f}",
                                "-" if u.flip is None else f"{u.flip:.3f}",
                                "-" if u.jump is None else f"{u.jump:.3f}", name,
                                frame.name + when]))
    return "\n".join(lines) + "\n"
