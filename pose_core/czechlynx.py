"""The CzechLynx CSV: one row per image, a literal pose dict of visible keypoints, split
columns and a COCO RLE mask (see :mod:`pose_core.readers` for the documented choices)."""

from __future__ import annotations

import ast
import csv
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from pose_core.checks import (
    ImageCheck,
    _bbox,
    _check_image,
    _check_keypoints,
    _number,
)
from pose_core.coco import (
    _opt_str,
    write_coco,
)
from pose_core.records import DataError, Instance, ReadReport
from pose_core.skeletons import ANIMALPOSE, canonical_name

CZECHLYNX_SPLITS = ("geo_aware", "time_open", "time_closed", "pose")


# The real CSV's pose-dict names are undocumented (POSE_REFERENCE 1.4), so names are matched by
# canonical_name (case, separators, L/R/F/B abbreviations and word order ignored): MMPose's
# "L_F_Paw" and "left_front_paw" both work. A few anatomical synonyms are added by hand.
_POSE_SYNONYMS = {
    "L_Ear": "L_EarBase",
    "R_Ear": "R_EarBase",
    "root_of_tail": "TailBase",
    "tail_root": "TailBase",
    "wither": "Withers",
}
_POSE_ALIASES: dict[str, int] = {
    **{canonical_name(n): i for i, n in enumerate(ANIMALPOSE.keypoints)},
    **{canonical_name(a): ANIMALPOSE.index(t) for a, t in _POSE_SYNONYMS.items()},
}
_EMPTY = ("", "nan", "none", "null")


def _read_csv(file: str) -> tuple[list[str], list[tuple[int, dict[str, Any]]]]:
    # RLE strings of large masks can exceed csv's default 128 KiB field limit.
    csv.field_size_limit(max(csv.field_size_limit(), 1 << 26))
    rows: list[tuple[int, dict[str, Any]]] = []
    try:
        with open(file, encoding="utf-8", newline="") as handle:
            reader = csv.DictReader(handle, restkey="__extra__")
            header = list(reader.fieldnames or [])
            rows.extend((reader.line_num, row) for row in reader)
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(file, "whole file", "(csv)", f"cannot read CSV: {exc}") from None
    except csv.Error as exc:
        raise DataError(
            file, f"CSV line {reader.line_num}", "(csv)", f"malformed CSV: {exc}"
        ) from None
    missing = [c for c in ("path", "pose") if c not in header]
    if missing or not ({"mask", "bbox"} & set(header)):
        need = missing or ["mask or bbox"]
        raise DataError(
            file, "header (CSV line 1)", need[0], "missing required column",
            f"columns path, pose and mask or bbox; got {header}",
        )  # fmt: skip
    return header, rows


def _literal(file: str, record: str, field: str, text: str) -> Any:
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError) as exc:
        raise DataError(
            file, record, field, f"not a Python literal ({exc}): {text[:80]!r}"
        ) from None


def _split_filter(file: str, split: str | None, header: list[str]) -> tuple[str, str] | None:
    if split is None:
        return None
    name, sep, value = split.partition(":")
    if not sep or name not in CZECHLYNX_SPLITS or not value:
        raise ValueError(
            f"split {split!r}: expected '<name>:<value>' with name in {CZECHLYNX_SPLITS}"
        )
    if f"split-{name}" not in header:
        raise DataError(
            file, "header (CSV line 1)", f"split-{name}", "column missing for split filter"
        )
    return f"split-{name}", value


def _pose_keypoints(file: str, record: str, pose: dict[Any, Any]) -> np.ndarray:
    """``(K, 3)`` float64 for ANIMALPOSE: listed keypoints get v=2, the rest v=0."""
    kps = np.zeros((ANIMALPOSE.num_keypoints, 3), dtype=np.float64)
    for name, xy in pose.items():
        k = _POSE_ALIASES.get(canonical_name(str(name)))
        if k is None:
            raise DataError(
                file, record, "pose", f"unknown keypoint name {name!r}",
                f"one of {list(ANIMALPOSE.keypoints)} or long forms such as 'left_front_paw'",
            )  # fmt: skip
        if kps[k, 2] > 0:
            raise DataError(file, record, "pose", f"{name!r} repeats {ANIMALPOSE.keypoints[k]!r}")
        if not isinstance(xy, list | tuple) or len(xy) != 2:
            raise DataError(file, record, "pose", f"{name!r}: got {xy!r}", "[x, y]")
        kps[k] = (*(_number(file, record, "pose", v) for v in xy), 2.0)
    return kps


def _rle(file: str, record: str, text: str) -> dict[str, Any] | None:
    from pycocotools import mask as mask_util

    if text.strip().lower() in _EMPTY:
        return None
    value = _literal(file, record, "mask", text)
    size = value.get("size") if isinstance(value, dict) else None
    counts = value.get("counts") if isinstance(value, dict) else None
    if not (isinstance(size, list | tuple) and len(size) == 2 and isinstance(counts, str | list)):
        raise DataError(
            file, record, "mask", f"got {text[:80]!r}", "{'size': [h, w], 'counts': str}"
        )
    h, w = int(size[0]), int(size[1])
    try:
        runs = _rle_runs(counts) if isinstance(counts, str) else [int(c) for c in counts]
    except (ValueError, TypeError) as exc:
        raise DataError(file, record, "mask", f"invalid COCO RLE counts: {exc}") from None
    # pycocotools decodes without bounds checks, so a corrupt string must be caught here.
    if min(runs, default=0) < 0 or sum(runs) != h * w:
        raise DataError(
            file, record, "mask", f"RLE runs sum to {sum(runs)}", f"h * w = {h * w}, no negatives"
        )
    if isinstance(counts, list):
        return dict(mask_util.frPyObjects({"size": [h, w], "counts": counts}, h, w))
    return {"size": [h, w], "counts": counts.encode("ascii")}


def _rle_runs(text: str) -> list[int]:
    """Run lengths of a compressed COCO RLE string (6-bit chars from '0', 5 data bits each,
    0x20 = more chars follow, 0x10 = sign; runs after the second are deltas to run m-2)."""
    runs: list[int] = []
    pos = 0
    while pos < len(text):
        value, shift, more = 0, 0, True
        while more:
            if pos >= len(text):
                raise ValueError("string ends inside a run")
            c = ord(text[pos]) - 48
            if not 0 <= c < 64:
                raise ValueError(f"character {text[pos]!r} at {pos}")
            value |= (c & 0x1F) << shift
            more = bool(c & 0x20)
            pos, shift = pos + 1, shift + 5
            if not more and c & 0x10:
                value |= -1 << shift
        runs.append(value + runs[-2] if len(runs) > 2 else value)
    return runs


def _int_column(file: str, record: str, row: dict[str, Any], column: str) -> int | None:
    text = (row.get(column) or "").strip()
    if text.lower() in _EMPTY:
        return None
    try:
        return int(float(text))
    except ValueError:
        raise DataError(file, record, column, f"got {text!r}", "an integer") from None


def _czechlynx_instance(
    file: str,
    record: str,
    row: dict[str, Any],
    root: Path,
    ann_id: int,
    image_id: int,
    check_images: ImageCheck,
    source: str | None,
) -> Instance | None:
    """One CSV row as an instance, or None when its pose dict is empty."""
    from pycocotools import mask as mask_util

    rel = (row.get("path") or "").strip()
    if not rel:
        raise DataError(file, record, "path", "empty", "an image path relative to image_root")
    pose_text = (row.get("pose") or "").strip()
    pose = {} if pose_text.lower() in _EMPTY else _literal(file, record, "pose", pose_text)
    if not isinstance(pose, dict):
        raise DataError(file, record, "pose", f"got {type(pose).__name__}", "a dict {name: [x, y]}")
    if not pose:
        return None
    rle = _rle(file, record, row.get("mask") or "")
    bbox_text = (row.get("bbox") or "").strip()
    if bbox_text.lower() not in _EMPTY:
        bbox = _bbox(file, record, _literal(file, record, "bbox", bbox_text))
    elif rle is not None:
        bbox = _bbox(file, record, [float(v) for v in mask_util.toBbox(rle)])
    else:
        raise DataError(file, record, "bbox", "no bbox and no mask", "a bbox or a mask")
    width, height = (
        _int_column(file, record, row, "width"),
        _int_column(file, record, row, "height"),
    )
    size = (width, height) if width and height else None
    if size is None and rle is not None:
        size = (int(rle["size"][1]), int(rle["size"][0]))
    image_path = os.path.abspath(os.path.join(root, rel))
    header = _check_image(file, record, image_path, check_images, size)
    size = size or header
    assert size is not None
    kps = _pose_keypoints(file, record, pose)
    _check_keypoints(file, record, kps, size, ANIMALPOSE.keypoints)
    if rle is not None:
        area, rule = float(mask_util.area(rle)), "mask"
        if area <= 0:
            raise DataError(file, record, "mask", "empty mask (area 0)", "a non-empty mask")
    else:
        area, rule = bbox[2] * bbox[3], "bbox"
    identity = _opt_str(row.get("identity")) or _opt_str(row.get("unique_name"))
    return Instance(
        image_path=image_path,
        image_id=image_id,
        annotation_id=ann_id,
        width=size[0],
        height=size[1],
        bbox=bbox,
        keypoints=kps.astype(np.float32),
        area=area,
        source=source or _opt_str(row.get("source")) or "czechlynx",
        category="lynx",
        area_rule=rule,
        scene=_opt_str(row.get("scene")),
        identity=identity,
        split={
            k[len("split-") :]: str(v) for k, v in row.items() if k and k.startswith("split-") and v
        },
    )


def _check_row_shape(file: str, record: str, row: dict[str, Any], header: list[str]) -> None:
    if row.get("__extra__"):
        raise DataError(file, record, "(csv)", f"{len(row['__extra__'])} values beyond the header")
    missing = [c for c in header if row.get(c) is None]
    if missing:
        raise DataError(
            file, record, missing[0], "row ends early (truncated line?)", f"{len(header)} columns"
        )


def _iter_czechlynx(
    file: str, root: Path, split: str | None, check_images: ImageCheck, source: str | None,
    report: ReadReport,
) -> Iterator[Instance]:  # fmt: skip
    header, rows = _read_csv(file)
    split_filter = _split_filter(file, split, header)
    image_ids: dict[str, int] = {}
    # annotation id = 1-based data row number, so ids do not depend on the split filter.
    for ann_id, (line, row) in enumerate(rows, start=1):
        record = f"CSV line {line}"
        _check_row_shape(file, record, row, header)
        if split_filter and (row.get(split_filter[0]) or "").strip() != split_filter[1]:
            report.skip(f"{split_filter[0]} is not {split_filter[1]}")
            continue
        image_id = image_ids.setdefault((row.get("path") or "").strip(), len(image_ids) + 1)
        inst = _czechlynx_instance(file, record, row, root, ann_id, image_id, check_images, source)
        if inst is None:
            report.skip("empty pose")
            continue
        yield inst


def read_czechlynx(
    path: str | Path,
    image_root: str | Path | None = None,
    split: str | None = None,
    check_images: ImageCheck = "exists",
    source: str | None = None,
) -> tuple[list[Instance], ReadReport]:
    """Read the CzechLynx CSV (one row per image) as ANIMALPOSE instances.

    ``split="pose:train"`` keeps rows whose ``split-pose`` is ``train``. ``image_root`` defaults
    to the CSV's folder. ``source`` defaults to the row's ``source`` column, else ``czechlynx``.
    """
    file = str(path)
    root = Path(image_root) if image_root is not None else Path(os.path.abspath(file)).parent
    report = ReadReport(file=file)
    instances = list(_iter_czechlynx(file, root, split, check_images, source, report))
    report.kept = len(instances)
    return instances, report


def czechlynx_to_coco(
    csv_path: str | Path,
    out_json: str | Path,
    split: str | None = None,
    image_root: str | Path | None = None,
) -> ReadReport:
    """Convert the CzechLynx CSV to COCO keypoint JSON (mask RLE becomes bbox and area)."""
    instances, report = read_czechlynx(csv_path, image_root=image_root, split=split)
    write_coco(instances, ANIMALPOSE, out_json)
    return report
