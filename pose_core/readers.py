"""Readers into :class:`pose_core.records.Instance`: COCO keypoint JSON and the CzechLynx CSV.

Validation is strict and every problem raises :class:`DataError` naming the file, the record
and the field. What is skipped on purpose (crowd, no labelled keypoints, split filter, empty
pose) is counted in the :class:`ReadReport`, never dropped silently.

Documented choices:
- A labelled keypoint more than ``OUT_OF_IMAGE_TOLERANCE`` (50%) of the image width/height
  beyond the border is an error: it is almost always swapped x/y or a wrong image size, while
  points slightly outside (a paw cut by the frame) are legitimate.
- ``image_root`` defaults to ``<file dir>/images`` when that folder exists, else the file's
  folder (COCO); the CSV's folder for CzechLynx, whose ``path`` column is relative to the
  dataset root. ``write_coco`` writes file names relative to the same default, so its output
  reads back unchanged.
- CzechLynx ``area`` is the mask area when a mask exists (``area_rule="mask"``), else the
  bbox area. COCO ``area`` missing under ``area_rule="given"`` falls back to bbox w*h, counted
  in the report as ``area missing, used bbox`` and recorded as ``area_rule="bbox"``.
"""

from __future__ import annotations

import ast
import csv
import json
import math
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import cv2
import numpy as np

from pose_core.records import DataError, Instance, ReadReport
from pose_core.skeletons import ANIMALPOSE, Skeleton, canonical_name, skeleton_from_coco_category

ImageCheck = Literal["none", "exists", "header"]
AreaRule = Literal["given", "bbox"]

OUT_OF_IMAGE_TOLERANCE = 0.5
CZECHLYNX_SPLITS = ("geo_aware", "time_open", "time_closed", "pose")


# ------------------------------------------------------------------ shared checks


def default_image_root(path: str | Path) -> Path:
    folder = Path(os.path.abspath(path)).parent
    return folder / "images" if (folder / "images").is_dir() else folder


def load_image(path: str) -> np.ndarray:
    """``(H, W, 3)`` BGR uint8. Raises DataError naming the file if it is missing or corrupt."""
    if not os.path.isfile(path):
        raise DataError(path, "image file", "path", "file not found", "an existing image file")
    image = cv2.imread(path, cv2.IMREAD_COLOR)
    if image is None:
        raise DataError(path, "image file", "content", "cannot decode image", "a JPEG/PNG image")
    return image


def _header_size(path: str) -> tuple[int, int]:
    """(width, height) from the image header only; raises OSError/ValueError when unreadable."""
    from PIL import Image

    with Image.open(path) as image:
        return int(image.size[0]), int(image.size[1])


def _check_image(
    file: str,
    record: str,
    image_path: str,
    check: ImageCheck,
    size: tuple[int, int] | None,
) -> tuple[int, int] | None:
    """Apply ``check`` to one image; returns the header size when it was read.

    An unknown ``size`` always needs the header, even under ``check="none"``.
    """
    if check == "none" and size is not None:
        return None
    if not os.path.isfile(image_path):
        raise DataError(file, record, "file_name", f"image not found: {image_path}", "a file")
    if check == "exists" and size is not None:
        return None
    try:
        header = _header_size(image_path)
    except Exception as exc:  # PIL raises several unrelated types for bad files
        raise DataError(
            file, record, "file_name", f"corrupt image {image_path}: {exc}", "a readable image"
        ) from None
    # EXIF-rotated images report swapped sides; either orientation is accepted.
    if size is not None and header not in (size, size[::-1]):
        raise DataError(
            file, record, "width/height", f"image header says {header}, record says {size}"
        )
    return header


def _number(file: str, record: str, field: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise DataError(file, record, field, f"got {value!r}", "a number")
    if not math.isfinite(value):
        raise DataError(file, record, field, f"non-finite value {value!r}", "a finite number")
    return float(value)


def _bbox(file: str, record: str, value: Any) -> tuple[float, float, float, float]:
    if not isinstance(value, list | tuple) or len(value) != 4:
        raise DataError(file, record, "bbox", f"got {value!r}", "[x, y, w, h]")
    x, y, w, h = (_number(file, record, "bbox", v) for v in value)
    if w <= 0 or h <= 0:
        raise DataError(file, record, "bbox", f"zero or negative size w={w}, h={h}", "w, h > 0")
    return x, y, w, h


def _check_keypoints(
    file: str, record: str, kps: np.ndarray, size: tuple[int, int], names: tuple[str, ...]
) -> None:
    """``kps`` is ``(K, 3)``: finite, v in {0,1,2}, labelled points near the image."""
    bad = ~np.isfinite(kps)
    if bad.any():
        k = int(np.argwhere(bad)[0][0])
        raise DataError(
            file, record, "keypoints", f"non-finite value at {names[k]!r}", "finite numbers"
        )
    bad_v = ~np.isin(kps[:, 2], (0, 1, 2))
    if bad_v.any():
        k = int(np.flatnonzero(bad_v)[0])
        raise DataError(
            file, record, "keypoints", f"visibility {kps[k, 2]:g} at {names[k]!r}", "v in {0, 1, 2}"
        )
    w, h = size
    tol = OUT_OF_IMAGE_TOLERANCE
    labelled = kps[:, 2] > 0
    outside = labelled & (
        (kps[:, 0] < -tol * w)
        | (kps[:, 0] > (1 + tol) * w)
        | (kps[:, 1] < -tol * h)
        | (kps[:, 1] > (1 + tol) * h)
    )
    if outside.any():
        k = int(np.flatnonzero(outside)[0])
        raise DataError(
            file,
            record,
            "keypoints",
            f"{names[k]!r} at ({kps[k, 0]:g}, {kps[k, 1]:g}) is far outside the {w}x{h} image",
            f"within {tol:.0%} of the image size beyond the border",
        )


# ------------------------------------------------------------------ COCO JSON


def _load_json(file: str) -> dict[str, Any]:
    try:
        with open(file, encoding="utf-8") as handle:
            data = json.load(handle)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(file, "whole file", "(json)", f"cannot read JSON: {exc}") from None
    if not isinstance(data, dict):
        raise DataError(
            file, "whole file", "(json)", f"top level is {type(data).__name__}", "an object"
        )
    for key in ("images", "annotations", "categories"):
        if not isinstance(data.get(key), list):
            raise DataError(file, "whole file", key, "missing or not a list", "a COCO list")
    return data


def _select_categories(
    file: str, categories: list[Any], category: str | int | None
) -> tuple[dict[int, str], Skeleton]:
    """Returns ``{category_id: name}`` of the categories to read, and their shared skeleton."""
    cats = [c for c in categories if isinstance(c, dict) and c.get("keypoints")]
    if category is not None:
        key = "name" if isinstance(category, str) else "id"
        cats = [c for c in cats if c.get(key) == category]
        if not cats:
            listing = [(c.get("id"), c.get("name")) for c in categories if isinstance(c, dict)]
            raise DataError(
                file,
                f"category {category!r}",
                key,
                "no keypoint category matches",
                f"one of {listing}",
            )
    if not cats:
        raise DataError(file, "categories", "keypoints", "no category has keypoints")
    kinds = {tuple(c["keypoints"]) for c in cats}
    if len(kinds) > 1:
        kinds_text = "; ".join(
            f"id {c.get('id')} {c.get('name')!r} K={len(c['keypoints'])}" for c in cats
        )
        raise DataError(
            file,
            "categories",
            "keypoints",
            f"categories have different keypoint lists ({kinds_text})",
            "one category chosen with category=",
        )
    skeleton = skeleton_from_coco_category(cats[0], file)
    return {int(c["id"]): str(c.get("name", c["id"])) for c in cats}, skeleton


def _image_table(file: str, images: list[Any], root: Path) -> dict[int, dict[str, Any]]:
    table: dict[int, dict[str, Any]] = {}
    for n, image in enumerate(images):
        if not isinstance(image, dict) or not isinstance(image.get("id"), int):
            raise DataError(file, f"images[{n}]", "id", "missing or not an integer", "an int id")
        record = f"image id {image['id']}"
        name = image.get("file_name")
        if not isinstance(name, str) or not name:
            raise DataError(
                file, record, "file_name", f"got {name!r}", "a relative or absolute path"
            )
        table[image["id"]] = {**image, "_path": os.path.abspath(os.path.join(root, name))}
    return table


def read_coco(
    path: str | Path,
    image_root: str | Path | None = None,
    category: str | int | None = None,
    area_rule: AreaRule = "given",
    check_images: ImageCheck = "exists",
    source: str | None = None,
) -> tuple[list[Instance], Skeleton, ReadReport]:
    """Read a COCO keypoint JSON, and the skeleton of its (selected) categories.

    ``source`` names the data set in every Instance; without it, an annotation's own
    ``source`` field is used, else the file's stem (its folder's name when the stem is
    ``annotations``).
    """
    file = str(path)
    data = _load_json(file)
    cat_names, skeleton = _select_categories(file, data["categories"], category)
    root = Path(image_root) if image_root is not None else default_image_root(file)
    images = _image_table(file, data["images"], root)
    stem = Path(file).stem
    file_source = Path(os.path.abspath(file)).parent.name if stem == "annotations" else stem
    report = ReadReport(file=file)
    instances: list[Instance] = []
    seen_ids: set[int] = set()
    checked: set[int] = set()
    for n, ann in enumerate(data["annotations"]):
        if not isinstance(ann, dict) or not isinstance(ann.get("id"), int):
            raise DataError(
                file, f"annotations[{n}]", "id", "missing or not an integer", "an int id"
            )
        record = f"annotation id {ann['id']} (image id {ann.get('image_id')})"
        if ann["id"] in seen_ids:
            raise DataError(file, record, "id", "duplicate annotation id", "unique ids")
        seen_ids.add(ann["id"])
        cat_id = ann.get("category_id")
        if cat_id not in cat_names:
            if category is not None:
                report.skip("other category")
                continue
            raise DataError(
                file, record, "category_id", f"unknown {cat_id!r}", f"one of {sorted(cat_names)}"
            )
        if ann.get("iscrowd", 0):
            report.skip("crowd")
            continue
        instance = _coco_instance(
            file,
            record,
            ann,
            images,
            skeleton,
            cat_names[cat_id],
            area_rule,
            source,
            file_source,
            report,
        )
        if instance is None:
            continue
        if instance.image_id not in checked:
            size = (instance.width, instance.height)
            _check_image(file, record, instance.image_path, check_images, size)
            checked.add(instance.image_id)
        instances.append(instance)
    report.kept = len(instances)
    return instances, skeleton, report


def _coco_instance(
    file: str,
    record: str,
    ann: dict[str, Any],
    images: dict[int, dict[str, Any]],
    skeleton: Skeleton,
    category: str,
    area_rule: AreaRule,
    source: str | None,
    file_source: str,
    report: ReadReport,
) -> Instance | None:
    image = images.get(ann.get("image_id"))  # type: ignore[arg-type]
    if image is None:
        raise DataError(file, record, "image_id", "no image record with this id", "an id in images")
    k = skeleton.num_keypoints
    raw = ann.get("keypoints")
    if not isinstance(raw, list) or len(raw) != 3 * k:
        got = len(raw) if isinstance(raw, list) else repr(raw)
        raise DataError(file, record, "keypoints", f"got {got} values", f"3 * K = {3 * k} values")
    values = [_number(file, record, "keypoints", v) for v in raw]
    kps = np.asarray(values, dtype=np.float64).reshape(k, 3)
    if image.get("width") is None or image.get("height") is None:
        size = _check_image(file, f"image id {image['id']}", image["_path"], "header", None)
        assert size is not None
        image["width"], image["height"] = size
    width = int(_number(file, f"image id {image['id']}", "width", image["width"]))
    height = int(_number(file, f"image id {image['id']}", "height", image["height"]))
    _check_keypoints(file, record, kps, (width, height), skeleton.keypoints)
    if not (kps[:, 2] > 0).any():
        report.skip("no labelled keypoints")
        return None
    bbox = _bbox(file, record, ann.get("bbox"))
    rule = area_rule
    if area_rule == "given" and "area" in ann:
        area = _number(file, record, "area", ann["area"])
        if area <= 0:
            raise DataError(file, record, "area", f"got {area}", "a positive area")
        recorded = ann.get("area_rule")
        rule = recorded if isinstance(recorded, str) else "given"  # type: ignore[assignment]
    else:
        if area_rule == "given":
            report.note("area missing, used bbox")
        area, rule = bbox[2] * bbox[3], "bbox"
    return Instance(
        image_path=image["_path"],
        image_id=int(image["id"]),
        annotation_id=int(ann["id"]),
        width=width,
        height=height,
        bbox=bbox,
        keypoints=kps.astype(np.float32),
        area=float(area),
        source=source or _opt_str(ann.get("source")) or file_source,
        category=category,
        area_rule=rule,
        scene=_opt_str(ann.get("scene", image.get("scene"))),
        identity=_opt_str(ann.get("identity", image.get("identity"))),
        split={str(a): str(b) for a, b in ann.get("split", {}).items()}
        if isinstance(ann.get("split"), dict)
        else {},
    )


def _opt_str(value: Any) -> str | None:
    return None if value is None or value == "" else str(value)


def write_coco(
    instances: list[Instance],
    skeleton: Skeleton,
    out_json: str | Path,
    image_root: str | Path | None = None,
) -> None:
    """Write instances as COCO keypoint JSON (one category per ``Instance.category``).

    File names are relative to ``image_root`` (default: the root :func:`read_coco` will assume
    for ``out_json``) when the image lies under it, else absolute. Ids are kept when they are
    unique, else renumbered. ``area_rule``, ``source``, ``scene``, ``identity`` and ``split``
    are written as extra annotation fields, which :func:`read_coco` reads back.
    """
    out = Path(out_json)
    out.parent.mkdir(parents=True, exist_ok=True)
    root = Path(os.path.abspath(image_root)) if image_root is not None else default_image_root(out)
    paths = list(dict.fromkeys(inst.image_path for inst in instances))
    id_of_path = {inst.image_path: inst.image_id for inst in instances}
    if len(set(id_of_path.values())) != len(paths):
        id_of_path = {p: i + 1 for i, p in enumerate(paths)}
    ann_ids = [inst.annotation_id for inst in instances]
    if len(set(ann_ids)) != len(ann_ids):
        ann_ids = list(range(1, len(instances) + 1))
    names = dict.fromkeys(i.category for i in instances) or {skeleton.name: None}
    cats = {name: i + 1 for i, name in enumerate(names)}
    first = {inst.image_path: inst for inst in reversed(instances)}
    images = [
        {
            "id": id_of_path[p],
            "file_name": _relative(p, root),
            "width": first[p].width,
            "height": first[p].height,
            **({"scene": first[p].scene} if first[p].scene is not None else {}),
        }
        for p in paths
    ]
    annotations = [
        _coco_annotation(inst, ann_id, id_of_path, cats)
        for inst, ann_id in zip(instances, ann_ids, strict=True)
    ]
    categories = [
        {
            "id": cid,
            "name": name,
            "supercategory": "animal",
            "keypoints": list(skeleton.keypoints),
            "skeleton": [[a + 1, b + 1] for a, b in skeleton.links],
        }
        for name, cid in cats.items()
    ]
    tmp = out.with_suffix(out.suffix + ".tmp")
    tmp.write_text(
        json.dumps({"images": images, "annotations": annotations, "categories": categories})
    )
    tmp.replace(out)


def _relative(image_path: str, root: Path) -> str:
    path = Path(os.path.abspath(image_path))
    return path.relative_to(root).as_posix() if path.is_relative_to(root) else str(path)


def _coco_annotation(
    inst: Instance, ann_id: int, id_of_path: dict[str, int], cats: dict[str, int]
) -> dict[str, Any]:
    record: dict[str, Any] = {
        "id": ann_id,
        "image_id": id_of_path[inst.image_path],
        "category_id": cats[inst.category],
        "keypoints": [
            float(v) if i % 3 < 2 else int(v) for i, v in enumerate(inst.keypoints.ravel())
        ],
        "num_keypoints": int(inst.visible.sum()),
        "bbox": [float(v) for v in inst.bbox],
        "area": float(inst.area),
        "iscrowd": 0,
        "area_rule": inst.area_rule,
        "source": inst.source,
    }
    if inst.scene is not None:
        record["scene"] = inst.scene
    if inst.identity is not None:
        record["identity"] = inst.identity
    if inst.split:
        record["split"] = dict(inst.split)
    return record


# ------------------------------------------------------------------ CzechLynx CSV

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


def read_dataset(path: str | Path, **kw: Any) -> tuple[list[Instance], Skeleton, ReadReport]:
    """Dispatch on the suffix: ``.json`` is COCO, ``.csv`` is CzechLynx (ANIMALPOSE)."""
    suffix = Path(path).suffix.lower()
    if suffix == ".json":
        return read_coco(path, **kw)
    if suffix == ".csv":
        instances, report = read_czechlynx(path, **kw)
        return instances, ANIMALPOSE, report
    raise DataError(str(path), "whole file", "suffix", f"unsupported {suffix!r}", ".json or .csv")
