"""Where ``posetune predict`` looks for animals in a frame: the boxes of each frame.

Three sources, one interface (:data:`BoxSource`: a frame -> its boxes in pixels):

- the whole frame (no box file): one animal filling the image;
- a MegaDetector batch-output JSON (``--detections``; https://lila.science/megadetector-output-format):
  ``images[].file``, ``detections[]`` with ``category`` "1" (animal), ``conf`` and a
  normalised ``[x, y, w, h]`` bbox, kept at or above ``--threshold``. For an image folder
  ``file`` is the image's path relative to the folder (or its bare name). For a video either
  MegaDetector's frame results, ``file`` = ``<video file>/frame000123.jpg`` (its frame
  naming), or its video results, ``file`` = the video with ``frame_rate`` and a
  ``frame_number`` on every detection;
- a box file per frame (``--boxes``, video only), a CSV of pixel boxes::

      # video: clip.mp4
      frame,x,y,w,h,score
      0,104.5,80,220,160,0.93
      12,110,82,214,158,0.88

  The first line names the video the frame numbers belong to (its file name); ``frame`` is
  the 0-based frame number, ``x, y`` the box's top-left corner and ``w, h`` its size in
  pixels; ``score`` is optional (1 when absent) and is held to ``--threshold`` like
  MegaDetector's. A frame may have several rows (several animals) or none (no animal).

A box file or MegaDetector JSON for another video (no frame of this video's name), or naming
frames past the video's end, is refused (``DataError``, a ``ValueError``: exit 2). Frames a
video's box source does not mention have no animal.
"""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from orchestrator.infer.frames import Frame
from pose_core.records import DataError

ANIMAL_CATEGORY = "1"
MEGADETECTOR_FRAME = re.compile(r"frame(\d+)\.jpg")


@dataclass(frozen=True)
class Box:
    """One animal's box in image pixels and the detector's confidence."""

    x: float
    y: float
    w: float
    h: float
    score: float = 1.0

    @property
    def bbox(self) -> tuple[float, float, float, float]:
        return self.x, self.y, self.w, self.h


BoxSource = Callable[[Frame], list[Box]]


def whole_frame(frame: Frame) -> list[Box]:
    return [Box(0.0, 0.0, float(frame.width), float(frame.height))]


def megadetector_entries(path: str) -> list[dict[str, Any]]:
    """The ``images`` list of a MegaDetector batch-output file, each entry with a ``file``."""
    try:
        data = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f"--detections {path} not found") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise DataError(path, "file", "json", f"cannot read MegaDetector output: {error}") from None
    if not isinstance(data, dict) or not isinstance(data.get("images"), list):
        raise DataError(path, "file", "images", "missing", "a MegaDetector batch-output object")
    for n, entry in enumerate(data["images"]):
        if not isinstance(entry, dict) or not isinstance(entry.get("file"), str):
            raise DataError(path, f"images[{n}]", "file", "missing", "a relative image path")
    return list(data["images"])


def animal_boxes(path: str, where: str, detections: Any, threshold: float
                 ) -> list[tuple[list[float], float, dict[str, Any]]]:
    """Animal detections at or above ``threshold``: (normalised bbox, conf, detection)."""
    kept = []
    for m, det in enumerate(detections or []):
        bbox = det.get("bbox") if isinstance(det, dict) else None
        if not (isinstance(bbox, list) and len(bbox) == 4
                and all(isinstance(v, int | float) for v in bbox)):
            raise DataError(path, f"{where} detection {m}", "bbox", f"{bbox!r}",
                            "[x, y, w, h] normalised to 0..1")
        conf = float(det.get("conf", 0))
        if str(det.get("category")) == ANIMAL_CATEGORY and conf >= threshold:
            kept.append(([float(v) for v in bbox], conf, det))
    return kept


def scaled(bbox: list[float], conf: float, frame: Frame) -> Box:
    x, y, w, h = bbox
    return Box(x * frame.width, y * frame.height, w * frame.width, h * frame.height, conf)


def megadetector_images(path: str, threshold: float) -> BoxSource:
    """Boxes of an image folder's frames (by relative path, else by file name)."""
    boxes: dict[str, list[tuple[list[float], float]]] = {}
    for n, entry in enumerate(megadetector_entries(path)):
        found = animal_boxes(path, f"images[{n}] ({entry['file']})", entry.get("detections"),
                             threshold)
        boxes[entry["file"].replace("\\", "/")] = [(bbox, conf) for bbox, conf, _ in found]

    def source(frame: Frame) -> list[Box]:
        found = boxes.get(frame.name, boxes.get(PurePosixPath(frame.name).name, []))
        return [scaled(bbox, conf, frame) for bbox, conf in found]

    return source


def megadetector_video(path: str, video: str, frame_count: int, threshold: float) -> BoxSource:
    """Boxes of a video's frames from MegaDetector's frame or video results for ``video``
    (a file name); refused when the file has no frame of it or frames past its end."""
    name = PurePosixPath(video.replace("\\", "/")).name
    by_frame: dict[int, list[tuple[list[float], float]]] = {}
    others: set[str] = set()
    matched = False
    for n, entry in enumerate(megadetector_entries(path)):
        file = PurePosixPath(entry["file"].replace("\\", "/"))
        where = f"images[{n}] ({entry['file']})"
        frame_file = MEGADETECTOR_FRAME.fullmatch(file.name)
        if frame_file and file.parent.name == name:  # frame results: <video>/frame000123.jpg
            matched = True
            found = animal_boxes(path, where, entry.get("detections"), threshold)
            number = int(frame_file.group(1))
            by_frame.setdefault(number, []).extend((bbox, conf) for bbox, conf, _ in found)
        elif file.name == name and "frame_rate" in entry:  # video results: frame_number each
            matched = True
            for bbox, conf, det in animal_boxes(path, where, entry.get("detections"), threshold):
                at = det.get("frame_number")
                if not isinstance(at, int) or at < 0:
                    raise DataError(path, where, "frame_number", f"{at!r}",
                                    "a frame number >= 0 on every detection of a video")
                by_frame.setdefault(at, []).append((bbox, conf))
        else:
            others.add(str(file.parent if frame_file else file))
    if not matched:
        named = ", ".join(sorted(others)[:3]) + (", ..." if len(others) > 3 else "")
        raise DataError(path, "file", "images", f"no frame of {name} (it names {named or 'nothing'})",
                        f"MegaDetector results for {name}: '{name}/frame000000.jpg' entries "
                        "or a video entry with frame_number")
    check_frames(path, by_frame, name, frame_count)

    def source(frame: Frame) -> list[Box]:
        return [scaled(bbox, conf, frame) for bbox, conf in by_frame.get(frame.index, [])]

    return source


def box_file(path: str, video: str, frame_count: int, threshold: float) -> BoxSource:
    """Boxes of a video's frames from a box file (the CSV in this module's docstring)."""
    name = PurePosixPath(video.replace("\\", "/")).name
    try:
        lines = Path(path).read_text().splitlines()
    except FileNotFoundError:
        raise FileNotFoundError(f"--boxes {path} not found") from None
    except (OSError, UnicodeDecodeError) as error:
        raise DataError(path, "file", "text", f"cannot read: {error}") from None
    first = re.fullmatch(r"#\s*video:\s*(.+?)\s*", lines[0]) if lines else None
    if first is None:
        raise DataError(path, "line 1", "video", f"{(lines or [''])[0][:40]!r}",
                        "'# video: <file name>' naming the video of the frame numbers")
    if PurePosixPath(first.group(1).replace("\\", "/")).name != name:
        raise DataError(path, "line 1", "video", f"boxes for {first.group(1)}, not {name}",
                        f"a box file for {name}")
    rows = csv.reader(lines[1:])
    header = [h.strip() for h in next(rows, [])]
    if header not in (["frame", "x", "y", "w", "h"], ["frame", "x", "y", "w", "h", "score"]):
        raise DataError(path, "line 2", "header", f"{','.join(header)!r}", "frame,x,y,w,h[,score]")
    by_frame: dict[int, list[Box]] = {}
    for line, row in enumerate(rows, start=3):
        if not row or row[0].lstrip().startswith("#"):
            continue
        if len(row) != len(header):
            raise DataError(path, f"line {line}", "row", f"{len(row)} values",
                            f"{len(header)} ({','.join(header)})")
        try:
            number = int(row[0])
            values = [float(v) for v in row[1:]]
        except ValueError:
            raise DataError(path, f"line {line}", "row", f"{','.join(row)!r}",
                            "a frame number and numbers") from None
        if number < 0 or values[2] <= 0 or values[3] <= 0:
            raise DataError(path, f"line {line}", "row", f"{','.join(row)!r}",
                            "frame >= 0, w > 0, h > 0")
        box = Box(*values)
        if box.score >= threshold:
            by_frame.setdefault(number, []).append(box)
    check_frames(path, by_frame, name, frame_count)
    return lambda frame: list(by_frame.get(frame.index, []))


def check_frames(path: str, by_frame: dict[int, Any], video: str, frame_count: int) -> None:
    past = sorted(n for n in by_frame if n >= frame_count)
    if past:
        raise DataError(path, f"frame {past[0]}", "frame", f"past the end of {video} "
                        f"({frame_count} frames, 0..{frame_count - 1})",
                        f"boxes for {video}'s own frames")
