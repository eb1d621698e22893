"""Image folders for ``posetune predict --images``: every image under the folder, in path order.

An image that does not decode is left out and remembered (:attr:`ImageFolder.skipped`): one
bad camera-trap file must not cost the predictions for the rest. A frame is
:class:`~orchestrator.infer.frames.Frame` ``index`` = the image's position in the sorted list,
``name`` = its path relative to the folder.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np

from orchestrator.infer.frames import Frame
from pose_core.checks import BadImage, decode_image, load_image

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff"}


def list_images(folder: str) -> list[Path]:
    root = Path(folder)
    if not root.is_dir():
        raise FileNotFoundError(f"--images {folder} is not a folder")
    files = sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise ValueError(f"--images {folder} holds no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
    return files


class ImageFolder:
    """The images of ``folder`` as frames; :meth:`read_frame` reads one again."""

    def __init__(self, folder: str) -> None:
        self.root = Path(folder)
        self.files = list_images(folder)
        self.skipped: list[BadImage] = []

    @property
    def count(self) -> int:
        return len(self.files)

    def frames(self) -> Iterator[tuple[Frame, np.ndarray]]:
        for number, path in enumerate(self.files):
            image = decode_image(str(path))
            if isinstance(image, BadImage):
                self.skipped.append(image)
                continue
            height, width = image.shape[:2]
            yield Frame(index=number, name=path.relative_to(self.root).as_posix(), width=width,
                        height=height, path=str(path)), image

    def read_frame(self, frame: Frame) -> np.ndarray:
        """The pixels of an image-folder frame (BGR)."""
        assert frame.path is not None, "an image-folder frame has a file"
        return load_image(frame.path)

    def relative(self, path: str) -> str:
        return Path(path).relative_to(self.root).as_posix()
