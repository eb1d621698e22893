"""Labels in the field's formats -> :class:`pose_core.records.Instance` + a Skeleton.

DeepLabCut is read here (a project folder, a ``config.yaml``, or one ``CollectedData_*``
``.csv``/``.h5``): the layout is DeepLabCut's own (header rows ``scorer``, optionally
``individuals``, ``bodyparts``, ``coords``; one row per labelled frame), and reading it directly
lets every problem name the file, the frame and the field. SLEAP ``.slp``, NWB, Label Studio,
Ultralytics YOLO pose and LEAP go through sleap-io (:mod:`orchestrator.data.labels_sleap`);
JABS and SLEAP analysis HDF5 hold predictions only and are refused with what they hold. COCO
JSON keeps the project's own reader.

Rules, the same for every format:
- The format is the one named (``format =``, ``data convert FORMAT``), else inferred from the
  name (the content for ``.h5`` and ``.json``); either way the content is checked first, and a
  mismatch is one line naming the file and both formats. A ``.json`` holding a list (a Label
  Studio export) is not taken for COCO: the error says ``format = "labelstudio"``.
- Labels are user-labelled points: a source with no labelled instance (SLEAP predictions,
  JABS, analysis HDF5, an empty project) stops with one line saying what it holds.
- One instance per animal: a multi-animal project (DeepLabCut ``individuals``, SLEAP
  instances) gives one instance per animal with a labelled point; DeepLabCut's unique body
  parts (individual ``single``) belong to no animal and are left out, counted in the report.
- A frame or animal without any labelled point is skipped and counted in the ReadReport.
  SLEAP frames holding only predictions are skipped too: predictions are not labels.
- A body part never labelled in any frame is an error (a ``config.yaml`` body part without
  columns, a skeleton node nobody placed): every trial would learn it as "absent" (not COCO,
  whose category keypoint lists are shared standards).
- Keypoints are ``v = 2`` where labelled, ``v = 0`` (and x = y = 0) where not; formats
  without an occlusion flag cannot say ``v = 1``. Labelled points outside the image (within
  the readers' 50% tolerance; beyond it is an error) are kept and counted in the report,
  with the images holding the most.
- The box is the source's box for that animal when it has one, else the labelled points'
  extent padded on each side by ``BOX_PADDING`` (10%) of its width and height and clipped to
  the image, and ``area`` is the box's w*h (``area_rule = "bbox"``), as in the shared
  DeepLabCut conversions.
- Keypoint order is the project's (DeepLabCut ``config.yaml`` ``bodyparts``, else the CSV
  columns; the SLEAP skeleton's nodes). Links are the source's skeleton edges; left/right
  flip pairs are the source's (SLEAP symmetries, Ultralytics ``flip_idx``), else inferred
  from the names (``left_x``/``right_x``, ``L_x``/``R_x``, ``leftear``/``rightear``, ...).
  Sigmas are uniform 0.1 until the catalog gives some (``sigmas = {name = value}``).
- ``split = "train"`` keeps the first 80% of labelled frames (in image-path order),
  ``"test"`` the last 20%: contiguous, so near-duplicate neighbouring frames rarely straddle it.
  An Ultralytics dataset has its own splits: ``split`` names one (``train``, ``val``, ...).
- ``category`` (COCO only) reads one category of a file with several.
- Bad input is one :class:`DataError` naming file, frame and field: a missing image, a
  non-numeric or half-missing (x without y) coordinate, a body part the config does not list.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

import numpy as np

from orchestrator.data.label_content import WHAT, content_format
from orchestrator.data.label_frames import Animal, Frame, Layout
from orchestrator.data.labels_dlc import read_dlc
from orchestrator.data.labels_sleap import PREDICTIONS_ONLY, read_sleap
from pose_core.checks import _check_image, _check_keypoints
from pose_core.records import DataError, Instance, ReadReport
from pose_core.skeletons import UNIFORM_SIGMA, Skeleton, infer_flip_pairs

LabelFormat = Literal[
    "coco", "dlc", "slp", "nwb", "labelstudio", "ultralytics", "jabs", "analysis_h5", "leap"
]
LABEL_FORMATS: tuple[str, ...] = (
    "coco", "dlc", "slp", "nwb", "labelstudio", "ultralytics", "jabs", "analysis_h5", "leap"
)
TRAINING_FORMATS = tuple(f for f in LABEL_FORMATS if f not in PREDICTIONS_ONLY)
BOX_PADDING = 0.1
TEST_FRACTION = 0.2
SPLITS = ("train", "test")
_BY_SUFFIX = {".slp": "slp", ".nwb": "nwb", ".mat": "leap", ".csv": "dlc"}


def infer_format(path: str | Path) -> str:
    """The format of ``path``: a folder with ``config.yaml`` (or ``labeled-data``) is
    DeepLabCut, one with ``data.yaml`` Ultralytics; a file by its name, and by its content
    for ``.h5`` and ``.json`` (JABS, analysis HDF5, ``.slp`` or DeepLabCut; COCO). A JSON list
    is refused with the hint ``format = "labelstudio"``."""
    p = Path(path)
    if p.name in ("config.yaml", "data.yaml") or p.name.startswith("CollectedData") \
            or p.is_dir():
        pass
    elif p.suffix.lower() in _BY_SUFFIX:
        return _BY_SUFFIX[p.suffix.lower()]
    elif p.suffix.lower() not in (".h5", ".hdf5", ".json"):
        raise DataError(str(p), "whole file", "format", f"cannot tell the format of {p.name!r}",
                        "format = one of " + ", ".join(TRAINING_FORMATS))
    fmt, what = content_format(p)
    if fmt == "labelstudio":
        raise DataError(str(p), "whole file", "format", "a JSON list, not COCO (an object)",
                        'format = "labelstudio" for a Label Studio export')
    if fmt is None:
        raise DataError(str(p), "whole file", "format", f"cannot tell the format: {what}",
                        "format = one of " + ", ".join(TRAINING_FORMATS))
    return fmt


def check_content(path: Path, fmt: str, named: bool) -> None:
    """The file holds ``fmt`` (named by the user, or inferred from its name)."""
    actual, what = content_format(path)
    if actual != fmt:
        hint = f" (format = {actual!r})" if actual else ""
        how = "named" if named else "taken from the name as"
        raise DataError(str(path), "whole file", "format",
                        f"{how} {fmt!r}, but the file is {what}{hint}", WHAT[fmt])


def read_labels(
    path: str | Path,
    format: str | None = None,
    source: str | None = None,
    split: str | None = None,
    frames_dir: str | Path | None = None,
    category: str | None = None,
) -> tuple[list[Instance], Skeleton, ReadReport]:
    """Instances and skeleton of a label source (see the module docstring for the rules).

    ``frames_dir`` is where frames of video-backed sources (a SLEAP project on ``.mp4``
    files, an ``.slp`` with embedded images) are written as PNG once; image-folder sources
    need none.
    """
    p = Path(path)
    if format is not None and format not in LABEL_FORMATS:
        raise DataError(str(path), "catalog", "format", f"unknown {format!r}",
                        "one of " + ", ".join(LABEL_FORMATS))
    if not p.exists():
        raise DataError(str(path), "whole file", "path", "not found",
                        "an existing label file or project folder")
    fmt = format or infer_format(p)
    check_content(p, fmt, named=format is not None)
    if fmt != "ultralytics" and split not in (None, *SPLITS):
        raise DataError(str(path), "catalog", "split", f"got {split!r}",
                        "'train' (first 80% of frames) or 'test' (last 20%)")
    if category is not None and fmt != "coco":
        raise DataError(str(path), "catalog", "category", f"is for COCO files; this is {WHAT[fmt]}")
    name = source or _source_name(p)
    if fmt == "coco":
        from pose_core.readers import read_coco

        instances, skeleton, report = read_coco(path, source=name, category=category)
        require_instances(instances, report)
    else:
        report = ReadReport(file=str(path))
        if fmt == "dlc":
            layout, frames = read_dlc(p, report)
        else:
            layout, frames = read_sleap(p, fmt, report, frames_dir,
                                        split if fmt == "ultralytics" else None)
        frames = sorted(frames, key=lambda f: f.image_path)
        instances = list(_instances(frames, layout, name, report))
        require_instances(instances, report)
        _check_every_keypoint(instances, layout, str(path))
        skeleton = skeleton_of(layout)
    kept = _split(instances, None if fmt == "ultralytics" else split, report)
    note_outside(kept, report)
    return kept, skeleton, report


def require_instances(instances: list[Instance], report: ReadReport) -> None:
    """A source that gives nothing to train on is an error, not an empty data set."""
    if instances:
        return
    skipped = ", ".join(f"{n} {reason}" for reason, n in sorted(report.skipped.items()))
    raise DataError(report.file, "whole file", "instances",
                    "0 labelled instances" + (f" (skipped {skipped})" if skipped else ""),
                    "at least one labelled animal")


def note_outside(instances: list[Instance], report: ReadReport, shown: int = 3) -> None:
    """Count labelled points outside their image in ``report``, naming the images with the
    most (a cropped package whose points were never shifted shows up here)."""
    per_image: Counter[str] = Counter()
    for inst in instances:
        x, y, v = inst.keypoints[:, 0], inst.keypoints[:, 1], inst.keypoints[:, 2]
        outside = (v > 0) & ((x < 0) | (x > inst.width) | (y < 0) | (y > inst.height))
        if outside.any():
            per_image[inst.image_path] += int(outside.sum())
    if per_image:
        most = ", ".join(f"{Path(p).name} {n}" for p, n in per_image.most_common(shown))
        report.note(f"keypoints outside the image (most: {most})", sum(per_image.values()))


def _check_every_keypoint(instances: list[Instance], layout: Layout, file: str) -> None:
    labelled = np.sum([inst.keypoints[:, 2] > 0 for inst in instances], axis=0)
    never = [n for n, count in zip(layout.keypoints, labelled, strict=True) if count == 0]
    if never:
        raise DataError(file, "whole file", "keypoints",
                        f"{never[:5]} never labelled in {len(instances)} instance(s)",
                        "every body part labelled: label it, or remove it from the skeleton")


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
        if not kept:
            raise DataError(report.file, f"split {split!r}", "split",
                            f"holds no frames ({len(images)} labelled frame(s) in all)",
                            "more labelled frames, or no split")
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


def to_coco(
    fmt: str, src: str, out: str, frames_dir: str | None = None, split: str | None = None,
    category: str | None = None, images: str | None = None,
) -> ReadReport:
    """``posetune data convert FORMAT SRC --out OUT.json``: any label source as COCO JSON
    (``czechlynx`` too, whose ``split`` is ``KIND:PART`` and whose ``images`` is its image
    root). Nothing is written when the source gives no instance."""
    from pose_core.readers import read_czechlynx, write_coco
    from pose_core.skeletons import ANIMALPOSE

    if fmt == "czechlynx":
        if category is not None:
            raise DataError(src, "command line", "--category", "is for COCO files")
        instances, report = read_czechlynx(src, image_root=images, split=split)
        require_instances(instances, report)
        note_outside(instances, report)
        write_coco(instances, ANIMALPOSE, out)
        return report
    if images is not None:
        raise DataError(src, "command line", "--images", "is for czechlynx (its image root)",
                        "no --images: label files name their images")
    frames = frames_dir or str(Path(out).parent / "frames")
    instances, skeleton, report = read_labels(src, fmt, frames_dir=frames, split=split,
                                              category=category)
    write_coco(instances, skeleton, out, image_root=Path(os.path.abspath(out)).parent)
    return report
