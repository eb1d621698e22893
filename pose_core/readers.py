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

from pathlib import Path
from typing import Any

from pose_core.checks import OUT_OF_IMAGE_TOLERANCE, ImageCheck, default_image_root, load_image
from pose_core.coco import AreaRule, read_coco, write_coco
from pose_core.czechlynx import CZECHLYNX_SPLITS, czechlynx_to_coco, read_czechlynx
from pose_core.records import DataError, Instance, ReadReport
from pose_core.skeletons import ANIMALPOSE, Skeleton

__all__ = [
    "CZECHLYNX_SPLITS",
    "OUT_OF_IMAGE_TOLERANCE",
    "AreaRule",
    "ImageCheck",
    "czechlynx_to_coco",
    "default_image_root",
    "load_image",
    "read_coco",
    "read_czechlynx",
    "read_dataset",
    "write_coco",
]


def read_dataset(path: str | Path, **kw: Any) -> tuple[list[Instance], Skeleton, ReadReport]:
    """Dispatch on the suffix: ``.json`` is COCO, ``.csv`` is CzechLynx (ANIMALPOSE)."""
    suffix = Path(path).suffix.lower()
    if suffix == ".json":
        return read_coco(path, **kw)
    if suffix == ".csv":
        instances, report = read_czechlynx(path, **kw)
        return instances, ANIMALPOSE, report
    raise DataError(str(path), "whole file", "suffix", f"unsupported {suffix!r}", ".json or .csv")
