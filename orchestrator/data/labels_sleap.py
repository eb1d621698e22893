"""Labels read through sleap-io: SLEAP ``.slp``, NWB, Label Studio, Ultralytics YOLO pose and
LEAP; JABS and SLEAP analysis HDF5 are read only to say what they hold (predictions).

Each format is read by its own sleap-io loader (``load_file`` dispatches on the suffix and
would read a ``.h5`` named ``slp`` as JABS). Rules shared with the other formats are in
:mod:`orchestrator.data.labels`; the ones particular to these formats:

- Only user-labelled instances are labels. A source with none stops with one line saying what
  it holds (``0 labelled instances; 2,274 predicted instances in 1,100 frames``). JABS pose
  files and SLEAP analysis HDF5 hold predictions only, so they never give training labels.
- Label Studio: every task is checked before sleap-io parses it, so a problem names the task
  and the field. The keypoint order is the order of first appearance. A task's image is
  ``meta.video`` (as sleap-io writes it) or ``data.image`` (Label Studio's own export: the
  path as given, else relative to the JSON file's folder, else its name in that folder).
- Ultralytics: ``flip_idx`` in ``data.yaml`` gives the flip pairs (identity: none); ``split``
  names one of the dataset's own splits (``train``, ``val``, ``test``), and without one every
  split it lists is read.
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from orchestrator.data.label_content import WHAT
from orchestrator.data.label_frames import (
    Animal,
    Frame,
    Layout,
    check_pairs,
    short,
    yaml_problem,
)
from pose_core.records import DataError, ReadReport

PREDICTIONS_ONLY = ("jabs", "analysis_h5")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")


def read_sleap(
    path: Path, fmt: str, report: ReadReport, frames_dir: str | Path | None,
    split: str | None = None,
) -> tuple[Layout, list[Frame]]:
    """Frames of a source sleap-io reads (``split``: an Ultralytics dataset's own split)."""
    file = str(path)
    flip_pairs = None
    if fmt == "labelstudio":
        sources = [_labelstudio(path, report)]
    elif fmt == "ultralytics":
        sources, flip_pairs = _ultralytics(path, split)
    else:
        sources = [_load(file, fmt)]
    _check_labelled(file, fmt, sources)
    if len(sources[0].skeletons) != 1:
        raise DataError(file, "whole file", "skeletons", f"{len(sources[0].skeletons)} skeletons",
                        "exactly one")
    skeleton = sources[0].skeletons[0]
    names = tuple(str(n) for n in skeleton.node_names)
    if flip_pairs is None:
        symmetries = tuple(sorted(tuple(sorted(p)) for p in skeleton.symmetry_inds))
        flip_pairs = symmetries or None
    name = path.parent.name if path.name == "data.yaml" else path.stem if path.is_file() \
        else path.name
    layout = Layout(
        name=str(name if fmt == "ultralytics" else skeleton.name or path.stem),
        keypoints=names, links=tuple((int(a), int(b)) for a, b in skeleton.edge_inds),
        flip_pairs=flip_pairs,
    )
    frames = []
    for labels in sources:
        for lf in labels.labeled_frames:
            frame = _frame(file, lf, names, report, frames_dir)
            if frame is not None:
                frames.append(frame)
    return layout, frames


def _frame(
    file: str, lf: Any, names: tuple[str, ...], report: ReadReport,
    frames_dir: str | Path | None,
) -> Frame | None:
    record = f"frame {lf.frame_idx} of {_video_name(lf.video)}"
    users = list(lf.user_instances)
    if not users:
        report.skip("frames with predictions only" if lf.predicted_instances
                    else "frames without a labelled point")
        return None
    boxes = {id(b.instance): b.xywh for b in getattr(lf, "bboxes", []) if b.instance}
    animals = []
    for inst in users:
        points = np.asarray(inst.numpy(), dtype=np.float64)
        check_pairs(file, record, names, points)
        box = boxes.get(id(inst))
        xywh = (float(box[0]), float(box[1]), float(box[2]), float(box[3])) if box else None
        track = inst.track.name if inst.track is not None else None
        animals.append(Animal(points, xywh, track))
    image = _frame_image(file, record, lf.video, lf.frame_idx, frames_dir)
    return Frame(image, file, record, animals)


def _load(file: str, fmt: str) -> Any:
    import sleap_io

    loader = {"slp": sleap_io.load_slp, "nwb": sleap_io.load_nwb, "jabs": sleap_io.load_jabs,
              "analysis_h5": sleap_io.load_analysis_h5, "leap": sleap_io.load_leap}[fmt]
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return loader(file)
    except Exception as error:  # sleap-io raises many types for unreadable files
        raise DataError(file, "whole file", "(format)",
                        f"sleap-io cannot read it as {fmt}: {short(error)}") from None


def _check_labelled(file: str, fmt: str, sources: list[Any]) -> None:
    """A source without one user-labelled instance stops here, saying what it holds."""
    frames = [lf for labels in sources for lf in labels.labeled_frames]
    if any(lf.user_instances for lf in frames):
        return
    predicted = sum(len(lf.predicted_instances) for lf in frames)
    with_predictions = sum(1 for lf in frames if lf.predicted_instances)
    why = (f"{WHAT[fmt]} holds predictions only" if fmt in PREDICTIONS_ONLY
           else "predictions are not training labels")
    raise DataError(file, "whole file", "instances",
                    f"0 labelled instances; {predicted:,} predicted instances in "
                    f"{with_predictions:,} frames", f"labelled instances: {why}")


# --------------------------------------------------------------------------- Label Studio


def _labelstudio(path: Path, report: ReadReport) -> Any:
    import sleap_io
    from sleap_io.io import labelstudio

    file = str(path)
    try:
        tasks = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as error:
        raise DataError(file, "whole file", "(json)", f"cannot read JSON: {short(error)}") from None
    if not isinstance(tasks, list):
        raise DataError(file, "whole file", "(json)", f"top level is {type(tasks).__name__}",
                        "a list of Label Studio tasks")
    checked = []
    names: dict[str, None] = {}
    for n, task in enumerate(tasks):
        record = f"task {n}" + (f" (id {task['id']})" if isinstance(task, dict)
                                and isinstance(task.get("id"), int | str) else "")
        entry = _checked_task(file, record, task, path.parent, report)
        if entry is None:
            continue
        key, fixed = entry
        for item in fixed[key][0]["result"]:
            if item["type"] == "keypointlabels":
                names.update(dict.fromkeys(str(k) for k in item["value"]["keypointlabels"]))
        checked.append((record, key, fixed))
    skeleton = sleap_io.Skeleton(list(names), name=path.stem)
    frames = []
    for record, key, task in checked:
        try:
            frames.append(labelstudio.task_to_labeled_frame(task, skeleton, key=key))
        except (KeyError, TypeError, ValueError, IndexError, AttributeError) as error:
            field = error.args[0] if isinstance(error, KeyError) else "annotations"
            raise DataError(file, record, str(field)[:40], short(error)) from None
    return sleap_io.Labels(frames, skeletons=[skeleton])


def _checked_task(
    file: str, record: str, task: Any, folder: Path, report: ReadReport
) -> tuple[str, dict[str, Any]] | None:
    """``(annotation key, task)`` with its image in ``meta.video``; None for a task without
    annotations (skipped and counted). Anything sleap-io would trip on is a DataError here."""
    def fail(field: str, problem: str, expected: str | None = None) -> DataError:
        return DataError(file, record, field, problem, expected)

    if not isinstance(task, dict):
        raise fail("(task)", f"got {short(json.dumps(task))}", "an object")
    key = next((k for k in ("annotations", "completions") if k in task), None)
    if key is None:
        raise fail("annotations", "missing", "a list of annotations (or completions)")
    annotations = task[key]
    if not isinstance(annotations, list):
        raise fail(key, f"got {short(json.dumps(annotations))}", "a list")
    if not annotations:
        report.skip("tasks without annotations")
        return None
    if len(annotations) > 1:
        report.note("tasks with several annotations (the first used)")
    first = annotations[0]
    results = first.get("result") if isinstance(first, dict) else None
    if not isinstance(results, list):
        raise fail(f"{key}[0].result", "missing or not a list", "a list of results")
    for i, item in enumerate(results):
        where = f"{key}[0].result[{i}]"
        if not isinstance(item, dict) or not isinstance(item.get("type"), str):
            raise fail(f"{where}.type", "missing", "a result type")
        if item["type"] == "keypointlabels":
            _check_keypoint(fail, where, item)
        elif item["type"] == "relation" and not {"from_id", "to_id"} <= item.keys():
            raise fail(f"{where}.from_id/to_id", "missing", "both ids of the relation")
        elif item["type"] == "rectanglelabels" and "id" not in item:
            raise fail(f"{where}.id", "missing", "the box's id (relations name it)")
    return key, _with_video(fail, task, folder)


def _check_keypoint(fail: Any, where: str, item: dict[str, Any]) -> None:
    value = item.get("value")
    if not isinstance(value, dict):
        raise fail(f"{where}.value", "missing", "an object with x, y and keypointlabels")
    for name in ("x", "y"):
        if isinstance(value.get(name), bool) or not isinstance(value.get(name), int | float):
            raise fail(f"{where}.value.{name}", f"got {short(repr(value.get(name)))}", "a number (%)")
    labels = value.get("keypointlabels")
    if not (isinstance(labels, list) and labels and all(isinstance(n, str) for n in labels)):
        raise fail(f"{where}.value.keypointlabels", f"got {short(repr(labels))}", "a body part name")
    for name in ("original_width", "original_height"):
        if isinstance(item.get(name), bool) or not isinstance(item.get(name), int | float):
            raise fail(f"{where}.{name}", f"got {short(repr(item.get(name)))}", "the image size")


def _with_video(fail: Any, task: dict[str, Any], folder: Path) -> dict[str, Any]:
    video = (task.get("meta") or {}).get("video") if isinstance(task.get("meta"), dict) else None
    if isinstance(video, dict):
        missing = [k for k in ("filename", "frame_idx") if k not in video]
        if missing:
            raise fail(f"meta.video.{missing[0]}", "missing", "the frame's video and index")
        # sleap-io passes "shape" where Video takes its backend: leave it out.
        return {**task, "meta": {**task["meta"], "video": {**video, "shape": None}}}
    image = task.get("data", {}).get("image") if isinstance(task.get("data"), dict) else None
    if not isinstance(image, str):
        raise fail("data.image", "missing (and no meta.video)", "the task's image path")
    given = Path(image.split("?")[0])
    found = next((c for c in (given, folder / given, folder / given.name) if c.is_file()), None)
    if found is None:
        raise fail("data.image", f"image not found: {short(image)}",
                   f"the image beside the JSON file ({folder})")
    return {**task, "meta": {"video": {"filename": str(found), "shape": None, "frame_idx": 0}}}


# ---------------------------------------------------------------------------- Ultralytics


def _ultralytics(path: Path, split: str | None) -> tuple[list[Any], tuple[tuple[int, int], ...]
                                                         | None]:
    import sleap_io
    import yaml

    root = path.parent if path.name == "data.yaml" else path
    config_file = root / "data.yaml"
    try:
        config = yaml.safe_load(config_file.read_text())
    except (OSError, yaml.YAMLError) as error:
        raise DataError(str(config_file), "whole file", "(yaml)",
                        f"cannot read: {yaml_problem(error)}") from None
    if not isinstance(config, dict):
        raise DataError(str(config_file), "whole file", "(yaml)", "not a mapping",
                        "an Ultralytics data.yaml")
    splits = [s for s in ("train", "val", "test") if isinstance(config.get(s), str)]
    if split is not None and split not in splits:
        raise DataError(str(config_file), "data.yaml", "split", f"{split!r} is not one of "
                        "this dataset's splits", f"one of {splits}")
    if not splits:
        raise DataError(str(config_file), "data.yaml", "train", "no split listed",
                        "train: train/images (and val: val/images)")
    sources = []
    for name in [split] if split else splits:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                sources.append(sleap_io.load_ultralytics(str(root), split=name))
        except Exception as error:  # sleap-io raises many types for a broken dataset
            raise DataError(str(config_file), f"split {name!r}", name,
                            f"sleap-io cannot read it: {short(error)}") from None
    return sources, _flip_pairs(str(config_file), config)


def _flip_pairs(file: str, config: dict[str, Any]) -> tuple[tuple[int, int], ...] | None:
    """``flip_idx`` (keypoint i becomes ``flip_idx[i]`` in a mirrored image) as pairs; None
    when absent (the pairs are then inferred from the names)."""
    flip = config.get("flip_idx")
    if flip is None:
        return None
    shape = config.get("kpt_shape")
    k = shape[0] if isinstance(shape, list) and shape and isinstance(shape[0], int) else None
    valid = (isinstance(flip, list) and len(flip) == k
             and all(isinstance(i, int) and not isinstance(i, bool) and 0 <= i < k for i in flip)
             and all(flip[flip[i]] == i for i in range(len(flip))))
    if not valid:
        raise DataError(file, "data.yaml", "flip_idx", f"got {short(flip)}",
                        f"a list of kpt_shape[0] = {k} indices, each pair swapped both ways")
    return tuple(sorted({(min(i, j), max(i, j)) for i, j in enumerate(flip) if i != j}))


# -------------------------------------------------------------------------------- images


def _video_name(video: Any) -> str:
    name = video.filename
    return f"{Path(name[0]).parent}/" if isinstance(name, list) else str(name)


def _frame_image(
    file: str, record: str, video: Any, frame_idx: int, frames_dir: str | Path | None
) -> str:
    """The image file of a frame: the image itself for image sequences and single images,
    else a PNG written once under ``frames_dir``."""
    name = video.filename
    if isinstance(name, list):
        return os.path.abspath(name[frame_idx])
    if Path(str(name)).suffix.lower() in IMAGE_SUFFIXES and frame_idx == 0:
        return os.path.abspath(str(name))
    if frames_dir is None:
        raise DataError(file, record, "video", f"frames of {name} must be extracted to images",
                        "a frames folder (the catalog's data_dir, or --frames)")
    import hashlib

    import cv2

    digest = hashlib.sha1(f"{file}:{name}".encode()).hexdigest()[:10]
    target = Path(frames_dir) / f"{Path(str(name)).stem}-{digest}" / f"{frame_idx:07d}.png"
    if not target.is_file():
        image = _decode(file, record, video, frame_idx)
        target.parent.mkdir(parents=True, exist_ok=True)
        bgr = image[..., ::-1] if image.ndim == 3 and image.shape[2] == 3 else image
        partial = target.with_suffix(".partial.png")
        cv2.imwrite(str(partial), np.ascontiguousarray(bgr))
        partial.replace(target)  # concurrent trials on one node never see half a file
    return str(target)


def _decode(file: str, record: str, video: Any, frame_idx: int) -> np.ndarray:
    """A frame through the source's own video object, else one opened afresh (a video named
    in a Label Studio or NWB file may come without a working backend)."""
    import sleap_io

    try:
        return np.asarray(video[frame_idx])
    except Exception:  # noqa: BLE001 - retried below with a fresh backend
        pass
    try:
        return np.asarray(sleap_io.load_video(str(video.filename))[frame_idx])
    except Exception as error:
        raise DataError(file, record, "video", f"cannot read the frame from {video.filename}: "
                        f"{short(error)}", "a readable video") from None
