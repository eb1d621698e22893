"""A node-local store of decoded images, shared by every process on the node.

:class:`pose_core.dataset.ImageCache` decodes each image once *per process*: every trial of a
sweep (and every spawned DataLoader worker) decodes the whole set again and holds its own copy.
:class:`ImageStore` decodes each image once *per node*: the first process to need an image
writes it as a raw uint8 ``.npy`` into a shared directory (``/dev/shm`` by default) and every
process maps that file read-only, so the pixels live once in the page cache / shared memory
however many trials run. It has ImageCache's interface (``get``, ``preload``, ``len``,
``nbytes``), so ``TopDownDataset(image_cache=ImageStore())`` works unchanged.

Entries are keyed by a hash of (absolute path, size, mtime_ns): an edited image gets a new
entry instead of a stale one. Files are written to a temporary name and renamed into place, so
a reader never sees half a file and two processes writing the same image at once is harmless
(the rename is atomic; a reader holding the older file keeps a valid mapping). A byte budget,
plus a free-space reserve checked before every write, keeps the store from filling the device;
past it images are decoded and kept in this process only, as ImageCache does.
"""

from __future__ import annotations

import hashlib
import logging
import os
import random
import tempfile
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from pose_core.checks import load_image

log = logging.getLogger(__name__)

# np.load parses each .npy header with ast.literal_eval, and CPython 3.11's parser is not safe to
# run from several threads at once ("SystemError: AST constructor recursion depth mismatch",
# CPython gh-106905); the header read is microseconds, so mapping is serialised.
_HEADER_LOCK = threading.Lock()

STORE_ENV = "POSETUNE_IMAGE_STORE"
SHM = Path("/dev/shm")
# /dev/shm is used only when it can take a real data set: Docker's default is 64 MiB.
MIN_SHM_FREE = 1 << 30
# Default budget: a quarter of the file system. /dev/shm is shared with Ray's object store and
# PyTorch's worker-to-loader tensors, so whatever the budget, writes stop while less than
# min(a quarter of the file system, 4 GiB) would be left free.
BUDGET_FRACTION = 0.25
RESERVE_FRACTION = 0.25
RESERVE_MAX = 4 << 30
_RESCAN_EVERY = 256

ProgressCallback = Callable[[int, int], None]


def default_store_dir() -> Path:
    """``$POSETUNE_IMAGE_STORE``, else ``/dev/shm/posetune-images-UID`` when /dev/shm has at
    least 1 GiB free, else ``posetune-images-UID`` in the temporary directory.

    The user id keeps users of a shared node out of each other's (0700) stores.
    """
    if os.environ.get(STORE_ENV):
        return Path(os.environ[STORE_ENV])
    name = f"posetune-images-{os.getuid()}"
    if SHM.is_dir() and os.access(SHM, os.W_OK):
        stat = os.statvfs(SHM)
        if stat.f_bavail * stat.f_frsize >= MIN_SHM_FREE:
            return SHM / name
    return Path(tempfile.gettempdir()) / name


class ImageStore:
    """Decoded BGR uint8 ``(H, W, 3)`` images by path, decoded once per node.

    ``get`` returns a read-only array equal to ``load_image(path)``. ``max_bytes`` bounds the
    store's files (default: a quarter of the file system holding ``directory``); the free-space
    reserve is re-checked before each write, so concurrent processes cannot fill the device either.
    The store is picklable without its arrays: a spawned worker re-opens the files it needs.
    """

    def __init__(
        self,
        directory: str | Path | None = None,
        max_bytes: int | None = None,
        loader: Callable[[str], np.ndarray] = load_image,
    ) -> None:
        self.directory = Path(directory) if directory is not None else default_store_dir()
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        stat = os.statvfs(self.directory)
        total = stat.f_blocks * stat.f_frsize
        self.max_bytes = int(total * BUDGET_FRACTION) if max_bytes is None else int(max_bytes)
        self.reserve_bytes = min(int(total * RESERVE_FRACTION), RESERVE_MAX)
        self._loader = loader
        self._images: dict[str, np.ndarray] = {}
        self._lock = threading.Lock()
        self._stored_bytes: int | None = None  # the directory's size, rescanned now and then
        self._writes = 0
        self._full = False

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state.update(_images={}, _lock=None, _stored_bytes=None, _writes=0)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()

    def entry_path(self, path: str) -> Path | None:
        """The store file of ``path``'s current content; None when ``path`` cannot be read."""
        try:
            stat = os.stat(path)
        except OSError:
            return None
        key = f"{os.path.abspath(path)}\0{stat.st_size}\0{stat.st_mtime_ns}"
        return self.directory / (hashlib.sha1(key.encode()).hexdigest() + ".npy")

    def get(self, path: str) -> np.ndarray:
        image = self._images.get(path)
        if image is None:
            image = self._open(path)
            self._images[path] = image
        return image

    def ensure(self, path: str) -> None:
        """Decode ``path`` into the store unless it is there, keeping nothing in this process:
        a preflight over a whole data set must not hold it in memory past the store's budget."""
        self._open(path)

    def preload(
        self,
        paths: Iterable[str],
        threads: int = 1,
        on_progress: ProgressCallback | None = None,
    ) -> None:
        """Open every image, decoding (with ``threads`` threads) those the store lacks.

        Each process walks the paths in its own random order, so trials starting together
        decode mostly different images and pick up the others from the store.
        ``on_progress(done, total)`` is called after each image.
        """
        todo = [p for p in dict.fromkeys(paths) if p not in self._images]
        random.Random(os.getpid()).shuffle(todo)
        done = 0

        def opened(path: str) -> None:
            nonlocal done
            image = self._open(path)
            with self._lock:
                self._images[path] = image
                done += 1
                if on_progress is not None:
                    on_progress(done, len(todo))

        if threads <= 1:
            for path in todo:
                opened(path)
            return
        with ThreadPoolExecutor(threads) as pool:
            for _ in pool.map(opened, todo):
                pass

    def __len__(self) -> int:
        return len(self._images)

    @property
    def nbytes(self) -> int:
        """Bytes of the images this process has opened (mapped or, past the budget, its own)."""
        return sum(image.nbytes for image in self._images.values())

    def stored_bytes(self) -> int:
        """Bytes of the store's files, all processes together."""
        return sum(entry.stat().st_size for entry in os.scandir(self.directory) if entry.is_file())

    def clear(self) -> None:
        """Delete the store's files (open mappings of other processes stay valid)."""
        with self._lock:
            self._images.clear()
            self._stored_bytes = None
            self._full = False
        clear_store(self.directory)

    def _open(self, path: str) -> np.ndarray:
        entry = self.entry_path(path)
        if entry is None:
            return self._loader(path)  # raises the loader's error for a missing file
        image = _map(entry)
        if image is not None:
            return image
        image = self._loader(path)
        if self._write(entry, image):
            mapped = _map(entry)
            if mapped is not None:
                return mapped
        return image

    def _write(self, entry: Path, image: np.ndarray) -> bool:
        """Write ``image`` to ``entry`` atomically; False when there is no room for it."""
        size = image.nbytes + 128  # the .npy header
        if not self._has_room(size):
            return False
        fd, temp = tempfile.mkstemp(dir=self.directory, prefix=entry.stem, suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as file:
                np.save(file, np.ascontiguousarray(image, dtype=np.uint8))
            os.replace(temp, entry)
        except BaseException:
            Path(temp).unlink(missing_ok=True)
            raise
        with self._lock:
            self._stored_bytes = (self._stored_bytes or 0) + size
            self._writes += 1
            if self._writes % _RESCAN_EVERY == 0:
                self._stored_bytes = None  # count the other processes' writes again
        return True

    def _has_room(self, size: int) -> bool:
        if self._full:
            return False
        with self._lock:
            if self._stored_bytes is None:
                self._stored_bytes = self.stored_bytes()
            stored = self._stored_bytes
        stat = os.statvfs(self.directory)
        free = stat.f_bavail * stat.f_frsize
        if stored + size <= self.max_bytes and free - size >= self.reserve_bytes:
            return True
        self._full = True
        log.warning(
            "image store %s is full (%.0f MiB stored, budget %.0f MiB, %.0f MiB free, "
            "reserve %.0f MiB): further images are decoded and kept in this process only",
            self.directory, stored / 2**20, self.max_bytes / 2**20, free / 2**20,
            self.reserve_bytes / 2**20,
        )
        return False


def _map(entry: Path) -> np.ndarray | None:
    """The stored image, mapped read-only; None when it is absent or not a valid image file."""
    try:
        with _HEADER_LOCK:
            mapped = np.load(entry, mmap_mode="r", allow_pickle=False)
    except FileNotFoundError:
        return None
    except (OSError, ValueError, EOFError):
        log.warning("image store: ignoring unreadable entry %s", entry)
        return None
    if mapped.dtype != np.uint8 or mapped.ndim != 3 or mapped.shape[2] != 3:
        return None
    return np.asarray(mapped)  # a plain read-only ndarray view of the mapping


def clear_store(directory: str | Path | None = None) -> int:
    """Delete the entries (and leftover temporary files) of a store; returns how many."""
    folder = Path(directory) if directory is not None else default_store_dir()
    removed = 0
    for entry in folder.glob("*"):
        if entry.suffix in (".npy", ".tmp") and entry.is_file():
            entry.unlink(missing_ok=True)
            removed += 1
    return removed
