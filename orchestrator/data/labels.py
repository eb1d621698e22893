"""Labels in the field's formats -> :class:`pose_core.records.Instance` + a Skeleton.

DeepLabCut is read here (a project folder, a ``config.yaml``, or one ``CollectedData_*``
``.csv``/``.h5``): the layout is DeepLabCut's own (header rows ``scorer``, optionally
``individuals``, ``bodyparts``, ``coords``; one row per labelled frame), and reading it directly
lets every problem name the file, the frame and the field. Everything else sleap-io reads
(SLEAP ``.slp``, NWB, Label Studio, Ultralytics YOLO pose, JABS, LEAP, SLEAP analysis HDF5) goes
through ``sleap_io.load_file``. COCO JSON keeps the project's own reader.

Rules, the same for every format:
- One instance per animal: a multi-animal project (DeepLabCut ``individuals``, SLEAP
  instances) gives one instance per animal with a labelled point; DeepLabCut's unique body
  parts (individual ``single``) belong to no animal and are left out, counted in the report.
- A frame or animal without any labelled point is skipped and counted in the ReadReport.
  SLEAP frames holding only predictions are skipped too: predictions are not labels.
- Keypoints are ``v = 2`` where labelled, ``v = 0`` (and x = y = 0) where not; formats
  without an occlusion flag cannot say ``v = 1``.
- The box is the source's box for that animal when it has one, else the labelled points'
  extent padded on each side by ``BOX_PADDING`` (10%) of its width and height and clipped to
  the image, and ``area`` is the box's w*h (``area_rule = "bbox"``), as in the shared
  DeepLabCut conversions.
- Keypoint order is the project's (DeepLabCut ``config.yaml`` ``bodyparts``, else the CSV
  columns; the SLEAP skeleton's nodes). Links are the source's skeleton edges; left/right
  flip pairs are the source's symmetries, else inferred from the names (``left_x``/``right_x``,
  ``L_x``/``R_x``, ``leftear``/``rightear``, ...). Sigmas are uniform 0.1 until the catalog
  gives some (``sigmas = {name = value}``).
- ``split = "train"`` keeps the first 80% of labelled frames (in image-path order),
  ``"test"`` the last 20%: contiguous, so near-duplicate neighbouring frames rarely straddle it.
- Bad input is one :class:`DataError` naming file, frame and field: a missing image, a
  non-numeric or half-missing (x without y) coordinate, a body part the config does not list.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import numpy as np

from orchestrator.data.label_frames import Animal, Frame, Layout, check_pairs
from orchestrator.data.labels_dlc import read_dlc
from pose_core.checks import _check_image, _check_keypoints
from pose_core.records import DataError, Instance, ReadReport
from pose_core.skeletons import UNIFORM_SIGMA, Skeleton, infer_flip_pairs

LabelFormat = Literal[
    "coco", "dlc", "slp", "nwb", "labelstudio", "ultralytics", "jabs", "analysis_h5", "leap"
]
LABEL_FORMATS: tuple[str, ...] = (
    "coco", "dlc", "slp", "nwb", "labelstudio", "ultralytics", "jabs", "analysis_h5", "leap"
)
BOX_PADDING = 0.1
TEST_FRACTION = 0.2


def infer_format(path: str | Path) -> str:
    """The format of ``path`` from its name: a folder with ``config.yaml`` or a ``CollectedData``
    file is DeepLabCut, a folder with ``data.yaml`` Ultralytics; otherwise the suffix."""
    p = Path(path)
    if p.is_dir():
        if (p / "config.yaml").is_file() or (p / "labeled-data").is_dir():
            return "dlc"
        if (p / "data.yaml").is_file():
            return "ultralytics"
        raise DataError(str(p), "folder", "format", "neither a DeepLabCut project (config.yaml) "
                        "nor an Ultralytics one (data.yaml)", "format = one of "
                        + ", ".join(LABEL_FORMATS))
    if p.name == "config.yaml" or p.name.startswith("CollectedData"):
        return "dlc"
    by_suffix = {".slp": "slp", ".nwb": "nwb", ".mat": "leap", ".json": "coco", ".csv": "dlc"}
    if p.name == "data.yaml":
        return "ultralytics"
    if p.suffix.lower() in by_suffix:
        return by_suffix[p.suffix.lower()]
    raise DataError(str(p), "whole file", "format", f"cannot tell the format of {p.name!r}",
                    "format = one of " + ", ".join(LABEL_FORMATS))


def read_labels(
    path: str | Path,
    format: str | None = None,
    source: str | None = None,
    split: str | None = None,
    frames_dir: str | Path | None = None,
) -> tuple[list[Instance], Skeleton, ReadReport]:
    """Instances and skeleton of a label source (see the module docstring for the rules).

    ``frames_dir`` is where frames of video-backed sources (a SLEAP project on ``.mp4``
    files, an ``.slp`` with embedded images) are written as PNG once; image-folder sources
    need none.
    """
    fmt = format or infer_format(path)
    if fmt not in LABEL_FORMATS:
        raise DataError(str(path), "catalog", "format", f"unknown {fmt!r}",
                        "one of " + ", ".join(LABEL_FORMATS))
    if split not in (None, "train", "test"):
        raise DataError(str(path), "catalog", "split", f"got {split!r}", "'train' or 'test'")
    name = source or _source_name(Path(path))
    if fmt == "coco":
        from pose_core.readers import read_coco

        instances, skeleton, report = read_coco(path, source=name)
        return _split(instances, split, report), skeleton, report
    report = ReadReport(file=str(path))
    if fmt == "dlc":
        layout, frames = read_dlc(Path(path), report)
    else:
        layout, frames = _read_sleap(Path(path), fmt, report, frames_dir)
    frames = sorted(frames, key=lambda f: f.image_path)
    instances = list(_instances(frames, layout, name, report))
    return _split(instances, split, report), skeleton_of(layout), report


def skeleton_of(layout: Layout) -> Skeleton:
    pairs = layout.flip_pairs
    return Skeleton(
        name=layout.name,
        keypoints=layout.keypoints,
        flip_pairs=infer_flip_pairs(layout.keypoints) if pairs is None else pairs,
        links=layout.links,
        upper_body=(),
        lower_body=(),
        sigmas=(UNIFORM_SIGMA,) * len(layout.keypoints),
    )


def _source_name(path: Path) -> str:
    if path.name == "config.yaml":
        return path.parent.name
    return path.stem if path.is_file() else path.name


def _split(instances: list[Instance], split: str | None, report: ReadReport) -> list[Instance]:
    """The ``split`` part of ``instances`` (all when None); the report counts what was kept."""
    kept = instances
    if split is not None:
        images = list(dict.fromkeys(i.image_id for i in instances))
        cut = len(images) - max(1, round(TEST_FRACTION * len(images))) if len(images) > 1 else 1
        chosen = set(images[:cut] if split == "train" else images[cut:])
        kept = [i for i in instances if i.image_id in chosen]
        if len(kept) < len(instances):
            report.skip(f"not in split {split!r}", len(instances) - len(kept))
    report.kept = len(kept)
    return kept


def _instances(
    frames: list[Frame], layout: Layout, source: str, report: ReadReport
) -> Iterator[Instance]:
    annotation_id = 0
    for image_id, frame in enumerate(frames, start=1):
        labelled = [a for a in frame.animals if np.isfinite(a.points).all(axis=1).any()]
        if not labelled:
            report.skip("frames without a labelled point")
            continue
        if len(labelled) < len(frame.animals):
            report.skip("animals without a labelled point", len(frame.animals) - len(labelled))
        size = _check_image(frame.file, frame.record, frame.image_path, "header", None)
        assert size is not None  # "header" always reads it
        for animal in labelled:
            annotation_id += 1
            yield _instance(frame, animal, layout, size, image_id, annotation_id, source)


def _instance(
    frame: Frame, animal: Animal, layout: Layout, size: tuple[int, int],
    image_id: int, annotation_id: int, source: str,
) -> Instance:
    points = animal.points
    seen = np.isfinite(points).all(axis=1)
    keypoints = np.zeros((len(points), 3), dtype=np.float64)
    keypoints[seen, :2] = points[seen]
    keypoints[seen, 2] = 2
    _check_keypoints(frame.file, frame.record, keypoints, size, layout.keypoints)
    box = animal.box or padded_box(points[seen], size)
    return Instance(
        image_path=frame.image_path, image_id=image_id, annotation_id=annotation_id,
        width=size[0], height=size[1], bbox=box, keypoints=keypoints.astype(np.float32),
        area=box[2] * box[3], source=source, category=layout.name, area_rule="bbox",
        identity=animal.identity,
    )


def padded_box(
    points: np.ndarray, size: tuple[int, int], padding: float = BOX_PADDING
) -> tuple[float, float, float, float]:
    """COCO ``(x, y, w, h)``: the extent of ``points`` ``(N, 2)`` padded by ``padding`` of its
    width and height on each side, clipped to the ``(width, height)`` image. One point gives a
    1-pixel box so the area stays positive."""
    low, high = points.min(axis=0), points.max(axis=0)
    pad = (high - low) * padding
    x0, y0 = np.maximum(low - pad, 0.0)
    x1, y1 = np.minimum(high + pad, np.asarray(size, dtype=np.float64))
    return float(x0), float(y0), max(float(x1 - x0), 1.0), max(float(y1 - y0), 1.0)


# ----------------------------------------------------------------------- through sleap-io


def _read_sleap(
    path: Path, fmt: str, report: ReadReport, frames_dir: str | Path | None
) -> tuple[Layout, list[Frame]]:
    import sleap_io

    file = str(path)
    if not path.exists():
        raise DataError(file, "whole file", "path", "not found", "an existing label file")
    try:
        labels = sleap_io.load_file(file, format=fmt)
    except Exception as error:  # sleap-io raises many types for unreadable files
        raise DataError(file, "whole file", "(format)", f"sleap-io cannot read it as {fmt}: "
                        f"{str(error).splitlines()[0] if str(error) else type(error).__name__}"
                        ) from None
    if len(labels.skeletons) != 1:
        raise DataError(file, "whole file", "skeletons", f"{len(labels.skeletons)} skeletons",
                        "exactly one")
    skeleton = labels.skeletons[0]
    names = tuple(str(n) for n in skeleton.node_names)
    symmetries = tuple(sorted(tuple(sorted(p)) for p in skeleton.symmetry_inds))
    layout = Layout(
        name=str(skeleton.name or path.stem), keypoints=names,
        links=tuple((int(a), int(b)) for a, b in skeleton.edge_inds),
        flip_pairs=symmetries or None,
    )
    frames = []
    for lf in labels.labeled_frames:
        record = f"frame {lf.frame_idx} of {_video_name(lf.video)}"
        users = list(lf.user_instances)
        if not users:
            report.skip("frames with predictions only")
            continue
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
        frames.append(Frame(image, file, record, animals))
    return layout, frames


def _video_name(video: Any) -> str:
    name = video.filename
    return f"{Path(name[0]).parent}/" if isinstance(name, list) else str(name)


def _frame_image(
    file: str, record: str, video: Any, frame_idx: int, frames_dir: str | Path | None
) -> str:
    """The image file of a frame: the file itself for image sequences, else a PNG written once."""
    name = video.filename
    if isinstance(name, list):
        return os.path.abspath(name[frame_idx])
    if frames_dir is None:
        raise DataError(file, record, "video", f"frames of {name} must be extracted to images",
                        "a frames folder (the catalog's data_dir, or --frames)")
    import hashlib

    import cv2

    digest = hashlib.sha1(f"{file}:{name}".encode()).hexdigest()[:10]
    target = Path(frames_dir) / f"{Path(str(name)).stem}-{digest}" / f"{frame_idx:07d}.png"
    if not target.is_file():
        try:
            image = np.asarray(video[frame_idx])
        except Exception as error:
            raise DataError(file, record, "video", f"cannot read the frame from {name}: "
                            f"{error}", "a readable video") from None
        target.parent.mkdir(parents=True, exist_ok=True)
        bgr = image[..., ::-1] if image.ndim == 3 and image.shape[2] == 3 else image
        partial = target.with_suffix(".partial.png")
        cv2.imwrite(str(partial), np.ascontiguousarray(bgr))
        partial.replace(target)  # concurrent trials on one node never see half a file
    return str(target)


def to_coco(
    fmt: str, src: str, out: str, frames_dir: str | None = None
) -> ReadReport:
    """``posetune data convert FORMAT SRC --out OUT.json``: any label source as COCO JSON."""
    from pose_core.readers import write_coco

    frames = frames_dir or str(Path(out).parent / "frames")
    instances, skeleton, report = read_labels(src, fmt, frames_dir=frames)
    write_coco(instances, skeleton, out, image_root=Path(os.path.abspath(out)).parent)
    return report
