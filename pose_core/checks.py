"""Checks shared by the readers: image files, numbers, boxes and keypoints, each failing
with a :class:`DataError` that names the file, the record and the field."""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any, Literal

import cv2
import numpy as np

from pose_core.records import DataError

ImageCheck = Literal["none", "exists", "header"]

OUT_OF_IMAGE_TOLERANCE = 0.5


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
