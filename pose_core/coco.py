"""COCO keypoint JSON: read into :class:`Instance` records and write back (see
:mod:`pose_core.readers` for the documented choices)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Literal

import numpy as np

from pose_core.checks import (
    ImageCheck,
    _bbox,
    _check_image,
    _check_keypoints,
    _number,
    default_image_root,
)
from pose_core.records import DataError, Instance, ReadReport
from pose_core.skeletons import Skeleton, skeleton_from_coco_category

AreaRule = Literal["given", "bbox"]


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


def _category_listing(categories: list[Any], annotations: list[Any]) -> str:
    """``'cat' (id 1, 12 instances), ...``: what a user can choose with ``category``."""
    counts: dict[Any, int] = {}
    for ann in annotations:
        if isinstance(ann, dict):
            counts[ann.get("category_id")] = counts.get(ann.get("category_id"), 0) + 1
    listing = ", ".join(
        f"{c.get('name')!r} K={len(c['keypoints'])} (id {c.get('id')}, "
        f"{counts.get(c.get('id'), 0)} instances)"
        for c in categories if isinstance(c, dict) and c.get("keypoints")
    )
    return listing if len(listing) <= 160 else listing[:157] + "..."


def _select_categories(
    file: str, categories: list[Any], category: str | int | None,
    annotations: list[Any] | None = None,
) -> tuple[dict[int, str], Skeleton]:
    """Returns ``{category_id: name}`` of the categories to read, and their shared skeleton."""
    cats = [c for c in categories if isinstance(c, dict) and c.get("keypoints")]
    if category is not None:
        key = "name" if isinstance(category, str) else "id"
        cats = [c for c in cats if c.get(key) == category]
        if not cats:
            raise DataError(
                file,
                f"category {category!r}",
                key,
                "no keypoint category matches",
                f"one of {_category_listing(categories, annotations or [])}",
            )
    if not cats:
        raise DataError(file, "categories", "keypoints", "no category has keypoints")
    kinds = {tuple(c["keypoints"]) for c in cats}
    if len(kinds) > 1:
        raise DataError(
            file,
            "categories",
            "keypoints",
            f"categories have different keypoint lists: "
            f"{_category_listing(cats, annotations or [])}",
            "one chosen: category = NAME in the catalog, --category NAME on data convert",
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
        first = table.get(image["id"])
        if first is not None:
            # Later records would silently win and put annotations on the wrong picture.
            raise DataError(
                file, record, "id",
                f"duplicate image id: {first['file_name']!r} (images[{first['_index']}]) "
                f"and {name!r} (images[{n}])", "unique image ids",
            )
        table[image["id"]] = {
            **image, "_path": os.path.abspath(os.path.join(root, name)), "_index": n
        }
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
    cat_names, skeleton = _select_categories(
        file, data["categories"], category, data["annotations"]
    )
    root = Path(image_root) if image_root is not None else default_image_root(file)
    images = _image_table(file, data["images"], root)
    stem = Path(file).stem
    file_source = Path(os.path.abspath(file)).parent.name if stem == "annotations" else stem
    report = ReadReport(file=file)
    instances: list[Instance] = []
    seen_ids: dict[int, tuple[int, Any]] = {}
    checked: set[int] = set()
    for n, ann in enumerate(data["annotations"]):
        if not isinstance(ann, dict) or not isinstance(ann.get("id"), int):
            raise DataError(
                file, f"annotations[{n}]", "id", "missing or not an integer", "an int id"
            )
        record = f"annotation id {ann['id']} (image id {ann.get('image_id')})"
        if ann["id"] in seen_ids:
            first_n, first_image = seen_ids[ann["id"]]
            raise DataError(
                file, record, "id",
                f"duplicate annotation id: annotations[{first_n}] (image id {first_image}) "
                f"and annotations[{n}] (image id {ann.get('image_id')})", "unique ids",
            )
        seen_ids[ann["id"]] = (n, ann.get("image_id"))
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
