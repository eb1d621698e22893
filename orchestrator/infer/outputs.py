"""Where ``posetune predict``'s poses go: COCO keypoint results JSON, a SLEAP ``.slp``, a
DeepLabCut machine-labelled CSV/H5, and overlay images.

``write_outputs`` is the one entry point; it reads a :class:`~orchestrator.infer.frames.Predictions`
and knows nothing of how the frames were read or which model ran. The builders of the SLEAP
labels and the DeepLabCut table are shared with the labelling package of ``--suggest``
(:mod:`orchestrator.infer.suggest`), which writes the same layouts as starting labels.

- ``coco`` (``.json``): one object per animal (``image_id`` the frame's 1-based position,
  ``file_name`` its name, ``keypoints`` [x, y, score] * K, ``score`` the mean keypoint score).
- ``slp`` (``.slp``, written by sleap-io): one ``PredictedInstance`` per animal with its
  per-point scores and the mean keypoint score as the instance score, on one Video: the video
  file for video input (``frame_idx`` its frame number), else an image list of every frame read
  (``frame_idx`` its position). It opens in SLEAP as predictions.
- ``dlc`` (``.csv`` or ``.h5``): DeepLabCut's machine-labelled table, header rows ``scorer``
  (``posetune``), ``individuals`` (only when some frame holds more than one animal:
  ``individual1``, ... in the order the boxes came), ``bodyparts``, ``coords`` (x, y,
  likelihood); one row per frame read, empty where no animal was found, indexed by frame number
  for video input and by the image's absolute path for image folders (so posetune's own
  DeepLabCut reader reads it back). The ``.h5`` holds the same table (pandas, key
  ``df_with_missing``, as DeepLabCut writes it). sleap-io's DeepLabCut writer is not used: it
  indexes rows by ``labeled-data/VIDEO/imgNNNN.png`` and writes no likelihood of predictions.

Every file is written beside its target under a temporary name and renamed when complete.
"""

from __future__ import annotations

import csv
import json
import math
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from orchestrator.infer.frames import OUTPUT_FORMATS, FrameReader, Predictions
from pose_core.skeletons import Skeleton

# The file names each --format writes (checked before any model runs).
SUFFIXES = {"coco": (".json",), "slp": (".slp",), "dlc": (".csv", ".h5")}
WHAT = {"coco": "COCO keypoint results JSON", "slp": "a SLEAP labels file",
        "dlc": "a DeepLabCut table (CSV or pandas HDF5)"}
SCORER = "posetune"  # DeepLabCut's scorer row (and CollectedData_<scorer> in packages)
DLC_H5_KEY = "df_with_missing"


def check_out(out: str, fmt: str) -> None:
    """``--out`` names a file of ``--format`` (before any model runs)."""
    if fmt not in OUTPUT_FORMATS:
        raise ValueError(f"--format {fmt}: expected one of {', '.join(OUTPUT_FORMATS)}")
    target = Path(out)
    if target.suffix.lower() not in SUFFIXES[fmt]:
        raise ValueError(f"--out {out}: --format {fmt} writes {WHAT[fmt]}; name it "
                         + " or ".join(f"*{s}" for s in SUFFIXES[fmt]))
    if target.is_dir():
        raise ValueError(f"--out {out} is a folder; name the file to write")


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
    check_out(out, fmt)
    results = coco_results(preds)
    target = Path(out)
    if fmt == "coco":
        write_atomically(target, lambda tmp: tmp.write_text(json.dumps(results, indent=1)))
    elif fmt == "slp":
        write_slp(slp_predictions(preds), target)
    else:
        write_dlc_table(dlc_prediction_table(preds), target)
    if overlay:
        draw_overlays(preds, Path(overlay), read_frame)
    return results


def write_atomically(target: Path, write: Callable[[Path], Any]) -> None:
    """``write(tmp)`` to a temporary name beside ``target`` (same suffix), then rename it."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.stem}.partial-{os.getpid()}{target.suffix}")
    try:
        write(tmp)
        tmp.replace(target)
    finally:
        tmp.unlink(missing_ok=True)


# --------------------------------------------------------------------------- SLEAP


def sleap_skeleton(skeleton: Skeleton) -> Any:
    """The skeleton as sleap-io's: nodes, edges (links) and symmetries (flip pairs)."""
    import sleap_io

    names = list(skeleton.keypoints)
    return sleap_io.Skeleton(
        nodes=names, edges=[(names[a], names[b]) for a, b in skeleton.links],
        symmetries=[(names[a], names[b]) for a, b in skeleton.flip_pairs],
        name=skeleton.name)


def sleap_video(preds: Predictions) -> Any:
    """The video file for video input, else the image list of every frame read."""
    import sleap_io

    if preds.video is not None:
        return sleap_io.Video(filename=os.path.abspath(preds.video), open_backend=False)
    paths = [os.path.abspath(f.path) for f in preds.frames if f.path is not None]
    return sleap_io.Video.from_filename(paths)


def predicted_instance(pose_points: np.ndarray, scores: np.ndarray, skeleton: Any) -> Any:
    import sleap_io

    return sleap_io.PredictedInstance.from_numpy(
        np.asarray(pose_points, dtype=np.float64), skeleton,
        point_scores=np.asarray(scores, dtype=np.float64), score=float(np.mean(scores)))


def slp_predictions(preds: Predictions) -> Any:
    """sleap-io Labels: one PredictedInstance per animal on the input's one Video."""
    import sleap_io

    skeleton = sleap_skeleton(preds.skeleton)
    video = sleap_video(preds)
    frames = []
    for position, poses in sorted(preds.poses_by_frame().items()):
        frame = preds.frames[position]
        index = frame.index if preds.video is not None else position
        frames.append(sleap_io.LabeledFrame(video=video, frame_idx=index, instances=[
            predicted_instance(p.keypoints, p.scores, skeleton) for p in poses]))
    return sleap_io.Labels(frames, videos=[video], skeletons=[skeleton])


def write_slp(labels: Any, target: Path) -> None:
    import sleap_io

    write_atomically(target, lambda tmp: sleap_io.save_slp(labels, str(tmp), verbose=False))


# --------------------------------------------------------------------------- DeepLabCut


class DlcTable:
    """A DeepLabCut table: ``index`` columns per row (one path, or the three cells of
    ``labeled-data/VIDEO/IMAGE``), column keys ``(individual or "", bodypart, coord)`` and
    float values (NaN = empty)."""

    def __init__(self, keys: list[tuple[str, str, str]], index_levels: int = 1) -> None:
        self.keys = keys
        self.index_levels = index_levels
        self.rows: list[tuple[tuple[str, ...], np.ndarray]] = []

    @property
    def multi(self) -> bool:
        return any(k[0] for k in self.keys)


def dlc_keys(skeleton: Skeleton, animals: int, coords: Sequence[str]) -> list[tuple[str, str, str]]:
    """Column keys: single-animal (no individual) when ``animals`` is 1, else
    ``individual1..N``, each with every body part and ``coords``."""
    individuals = [""] if animals <= 1 else [f"individual{n + 1}" for n in range(animals)]
    return [(ind, part, c) for ind in individuals for part in skeleton.keypoints for c in coords]


def dlc_values(keys: list[tuple[str, str, str]], poses: Sequence[tuple[np.ndarray, np.ndarray]],
               ) -> np.ndarray:
    """One table row: ``poses`` ((K, 2) points with NaN for empty, (K,) scores) in order."""
    slot = {k: i for i, k in enumerate(keys)}
    names = list(dict.fromkeys(k[1] for k in keys))
    individuals = list(dict.fromkeys(k[0] for k in keys))
    row = np.full(len(keys), math.nan)
    for individual, (points, scores) in zip(individuals, poses, strict=False):
        for k, name in enumerate(names):
            for coord, value in (("x", points[k, 0]), ("y", points[k, 1]),
                                 ("likelihood", scores[k])):
                if (individual, name, coord) in slot:
                    row[slot[(individual, name, coord)]] = value
    return row


def dlc_prediction_table(preds: Predictions) -> DlcTable:
    """The machine-labelled table of every frame read (see the module docstring)."""
    grouped = preds.poses_by_frame()
    animals = max((len(p) for p in grouped.values()), default=1)
    table = DlcTable(dlc_keys(preds.skeleton, animals, ("x", "y", "likelihood")))
    for position, frame in enumerate(preds.frames):
        name = str(frame.index) if preds.video is not None or frame.path is None \
            else os.path.abspath(frame.path)
        poses = [(p.keypoints, p.scores) for p in grouped.get(position, [])]
        table.rows.append(((name,), dlc_values(table.keys, poses)))
    return table


def write_dlc_table(table: DlcTable, target: Path) -> None:
    if target.suffix.lower() == ".h5":
        write_atomically(target, lambda tmp: _write_dlc_h5(table, tmp))
    else:
        write_atomically(target, lambda tmp: _write_dlc_csv(table, tmp))


def _header_rows(table: DlcTable) -> list[list[str]]:
    pad = [""] * (table.index_levels - 1)
    rows = [["scorer", *pad] + [SCORER] * len(table.keys)]
    if table.multi:
        rows.append(["individuals", *pad] + [k[0] for k in table.keys])
    rows.append(["bodyparts", *pad] + [k[1] for k in table.keys])
    rows.append(["coords", *pad] + [k[2] for k in table.keys])
    return rows


def _write_dlc_csv(table: DlcTable, path: Path) -> None:
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerows(_header_rows(table))
        for index, values in table.rows:
            writer.writerow([*index, *("" if math.isnan(v) else repr(float(v)) for v in values)])


def _write_dlc_h5(table: DlcTable, path: Path) -> None:
    import pandas as pd

    levels = ["scorer", "individuals", "bodyparts", "coords"] if table.multi else \
        ["scorer", "bodyparts", "coords"]
    columns = pd.MultiIndex.from_tuples(
        [(SCORER, *k) if table.multi else (SCORER, k[1], k[2]) for k in table.keys],
        names=levels)
    index: Any = [r[0][0] for r in table.rows] if table.index_levels == 1 else \
        pd.MultiIndex.from_tuples([r[0] for r in table.rows])
    data = np.stack([r[1] for r in table.rows]) if table.rows else \
        np.zeros((0, len(table.keys)))
    # "table" as DeepLabCut writes predictions; a row MultiIndex (CollectedData) needs "fixed".
    pd.DataFrame(data, index=index, columns=columns).to_hdf(
        path, key=DLC_H5_KEY, format="table" if table.index_levels == 1 else "fixed", mode="w")


# --------------------------------------------------------------------------- overlays


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
