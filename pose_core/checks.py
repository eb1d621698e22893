"""Checks shared by the readers: image files, numbers, boxes and keypoints, each failing
with a :class:`DataError` that names the file, the record and the field."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
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


ImageFault = Literal["missing", "undecodable", "truncated"]

_JPEG_START, _JPEG_SCAN, _JPEG_END = b"\xff\xd8", b"\xff\xda", b"\xff\xd9"
_PNG_START = b"\x89PNG\r\n\x1a\n"


@dataclass(frozen=True)
class BadImage:
    """An image file that cannot be used, with a one-line reason."""

    path: str
    fault: ImageFault
    reason: str

    def error(self) -> DataError:
        field = "path" if self.fault == "missing" else "content"
        expected = "an existing image file" if self.fault == "missing" else "a complete image"
        return DataError(self.path, "image file", field, self.reason, expected)


def _truncation(data: bytes) -> str | None:
    """Why ``data`` is a cut-off JPEG or PNG; None when it is whole (or another format).

    ``cv2.imread`` fills a cut-off JPEG with grey rows and reports success (``cv2.imdecode``
    refuses it without a reason), so the end is checked here, before decoding. Entropy-coded JPEG data escapes 0xFF, so the end-of-image marker cannot occur inside
    a scan: it must follow the last start-of-scan (an EXIF thumbnail's own markers come earlier).
    """
    if data.startswith(_JPEG_START) and data.rfind(_JPEG_END) < data.rfind(_JPEG_SCAN):
        return "truncated image: the JPEG ends without its end-of-image marker"
    if data.startswith(_PNG_START) and data.rfind(b"IEND") < data.rfind(b"IDAT"):
        return "truncated image: the PNG ends without its IEND chunk"
    return None


def decode_image(path: str) -> np.ndarray | BadImage:
    """``(H, W, 3)`` BGR uint8 (EXIF orientation applied, as ``cv2.imread``), or why not."""
    try:
        with open(path, "rb") as handle:
            data = handle.read()
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
        return BadImage(path, "missing", "file not found")
    except OSError as error:
        return BadImage(path, "undecodable", f"cannot read file: {error.strerror or error}")
    if not data:
        return BadImage(path, "undecodable", "cannot decode image: empty file (0 bytes)")
    reason = _truncation(data)
    if reason is not None:
        return BadImage(path, "truncated", reason)
    try:
        image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    except cv2.error:
        image = None
    if image is None:
        return BadImage(path, "undecodable", "cannot decode image (not a JPEG/PNG/BMP/TIFF?)")
    return image


def load_image(path: str) -> np.ndarray:
    """``(H, W, 3)`` BGR uint8. Raises DataError naming the file if it is missing, cannot be
    decoded, or is truncated."""
    image = decode_image(path)
    if isinstance(image, BadImage):
        raise image.error()
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
    if isinstance(value, bool | np.bool_) or not isinstance(value, int | float | np.integer | np.floating):
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
