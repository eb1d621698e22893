"""Decode every image of a data set once, before training, and name the bad ones.

A reader checks that image files exist (or reads their headers); only a full decode finds a
zero-byte file, a file that is not an image, or a JPEG cut off in the middle, which
``cv2.imread`` decodes to grey rows and reports as success (see :func:`pose_core.checks.decode_image`).
:func:`check_images` decodes each file once on a thread pool (OpenCV releases the GIL while
decoding) and returns an :class:`ImageCheckReport`; given an
:class:`~pose_core.image_store.ImageStore`, the decoded pixels go into it, so the trials that
follow map them instead of decoding again.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from pose_core.checks import BadImage, decode_image
from pose_core.image_store import ImageStore
from pose_core.records import DataError

ProgressCallback = Callable[[int, int], None]
# Names listed in one line of a summary; the report keeps them all.
SHOWN = 5


def default_workers() -> int:
    """The CPUs this process may run on."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return os.cpu_count() or 1


@dataclass(frozen=True)
class ImageCheckReport:
    """How many images were decoded, and the bad ones in the order they were given."""

    checked: int
    bad: tuple[BadImage, ...]

    @property
    def ok(self) -> bool:
        return not self.bad

    @property
    def bad_paths(self) -> frozenset[str]:
        return frozenset(b.path for b in self.bad)

    def summary(self) -> str:
        """One line: ``checked N images: all decode`` or the count and the first few names."""
        if self.ok:
            return f"checked {self.checked} images: all decode"
        shown = "; ".join(f"{b.path}: {b.reason}" for b in self.bad[:SHOWN])
        more = f"; and {len(self.bad) - SHOWN} more" if len(self.bad) > SHOWN else ""
        return f"checked {self.checked} images: {len(self.bad)} bad ({shown}{more})"

    def raise_if_bad(self) -> None:
        """Raise a :class:`DataError` naming the first bad file and how many more there are."""
        if self.ok:
            return
        first = self.bad[0]
        error = first.error()
        if len(self.bad) > 1:
            more = f"{error.problem}; and {len(self.bad) - 1} more bad image(s) of {self.checked}"
            error = DataError(error.file, error.record, error.field, more, error.expected)
        raise error


def check_images(
    paths: Iterable[str],
    workers: int | None = None,
    store: ImageStore | None = None,
    progress: ProgressCallback | None = None,
) -> ImageCheckReport:
    """Decode each of ``paths`` once (duplicates once), on ``workers`` threads (default: the
    CPUs), and report the missing, undecodable and truncated ones.

    With ``store``, good images are written into it; the store's loader must then
    be :func:`pose_core.checks.load_image` (its default), whose errors name the fault.
    ``progress(done, total)`` is called after each image, from the worker threads.
    """
    todo = list(dict.fromkeys(str(p) for p in paths))
    lock = threading.Lock()
    done = 0

    def one(path: str) -> BadImage | None:
        nonlocal done
        result = _checked(path, store)
        with lock:
            done += 1
            if progress is not None:
                progress(done, len(todo))
        return result

    threads = max(1, min(workers or default_workers(), len(todo) or 1))
    if threads == 1:
        results = [one(path) for path in todo]
    else:
        with ThreadPoolExecutor(threads) as pool:
            results = list(pool.map(one, todo))
    return ImageCheckReport(len(todo), tuple(r for r in results if r is not None))


def _checked(path: str, store: ImageStore | None) -> BadImage | None:
    if store is None:
        image = decode_image(path)
        return image if isinstance(image, BadImage) else None
    try:
        store.ensure(path)
    except DataError as error:
        # Undo load_image's error into the fault it came from.
        image = decode_image(path)
        if isinstance(image, BadImage):
            return image
        return BadImage(path, "undecodable", error.problem)
    return None
