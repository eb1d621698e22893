"""ImageStore: the same pixels as load_image, decoded once per node, safe under concurrent
writers, re-decoded after an edit, bounded by its budget, and a drop-in for ImageCache."""

from __future__ import annotations

import functools
import hashlib
import logging
import multiprocessing as mp
import os
import pickle
import uuid
from pathlib import Path

import cv2
import numpy as np
import pytest

from pose_core.checks import load_image
from pose_core.image_store import STORE_ENV, ImageStore, clear_store, default_store_dir
from pose_core.records import DataError


def _write_images(folder: Path, count: int, size: tuple[int, int] = (96, 128)) -> list[str]:
    """JPEGs of random blocks (plus one grayscale JPEG and one PNG to cover other decodes)."""
    rng = np.random.default_rng(count)
    paths = []
    for i in range(count):
        small = rng.integers(0, 256, (size[0] // 8, size[1] // 8, 3), dtype=np.uint8)
        image = cv2.resize(small, size[::-1], interpolation=cv2.INTER_NEAREST)
        suffix = ".png" if i == 1 else ".jpg"
        if i == 2:
            image = image[:, :, 0]
        path = str(folder / f"img{i:03d}{suffix}")
        assert cv2.imwrite(path, image)
        paths.append(path)
    return paths


def _marking_loader(marker_dir: str, path: str) -> np.ndarray:
    """load_image that leaves one file in ``marker_dir`` per decode (counted across processes)."""
    Path(marker_dir, uuid.uuid4().hex).write_text(path)
    return load_image(path)


def _refusing_loader(path: str) -> np.ndarray:
    raise AssertionError(f"decoded {path}, but the store should have had it")


def _preload_in_child(store_dir: str, marker_dir: str, paths: list[str], barrier) -> list[str]:
    store = ImageStore(store_dir, loader=functools.partial(_marking_loader, marker_dir))
    barrier.wait(timeout=60)
    store.preload(paths, threads=2)
    return [_digest(store.get(p)) for p in paths]


def _digest(image: np.ndarray) -> str:
    return f"{image.shape}:{hashlib.sha1(image.tobytes()).hexdigest()}"


def _read_in_child(store_dir: str, paths: list[str]) -> int:
    store = ImageStore(store_dir, loader=_refusing_loader)
    store.preload(paths)
    return sum(int(np.array_equal(store.get(p), load_image(p))) for p in paths)


def test_get_equals_load_image_and_maps_a_read_only_file(tmp_path):
    paths = _write_images(tmp_path, 4)
    store = ImageStore(tmp_path / "store")
    for path in paths:
        image = store.get(path)
        expected = load_image(path)
        assert image.dtype == np.uint8 and image.shape == expected.shape
        assert np.array_equal(image, expected)
        assert not image.flags.writeable
        assert store.entry_path(path).is_file()  # type: ignore[union-attr]
    assert len(store) == 4 and store.nbytes == 4 * 96 * 128 * 3
    crop = cv2.warpAffine(store.get(paths[0]), np.eye(2, 3), (64, 64))
    assert np.array_equal(crop, load_image(paths[0])[:64, :64])
    # a second store on the same directory (a new trial) reads without decoding
    again = ImageStore(tmp_path / "store", loader=_refusing_loader)
    for path in paths:
        assert np.array_equal(again.get(path), load_image(path))


def test_an_edited_image_is_decoded_again(tmp_path):
    (path,) = _write_images(tmp_path, 1)
    first = ImageStore(tmp_path / "store").get(path).copy()
    replacement = np.full((50, 70, 3), 200, np.uint8)
    cv2.imwrite(path, replacement)
    stat = os.stat(path)
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    store = ImageStore(tmp_path / "store")
    image = store.get(path)
    assert image.shape == (50, 70, 3) and np.array_equal(image, load_image(path))
    assert not np.array_equal(first[:50, :70], image)
    assert len(list((tmp_path / "store").glob("*.npy"))) == 2  # the old entry is just unused


def test_concurrent_writers_agree_and_leave_no_temporary_files(tmp_path):
    paths = _write_images(tmp_path, 12)
    store_dir, markers = tmp_path / "store", tmp_path / "markers"
    markers.mkdir()
    context = mp.get_context("spawn")
    with context.Manager() as manager, context.Pool(3) as pool:
        barrier = manager.Barrier(3)
        args = [(str(store_dir), str(markers), paths, barrier)] * 3
        results = pool.starmap(_preload_in_child, args)
        expected = [_digest(load_image(p)) for p in paths]
        assert results == [expected] * 3
        decodes = len(list(markers.iterdir()))
        assert 12 <= decodes <= 36
        assert sorted(f.suffix for f in store_dir.iterdir()) == [".npy"] * 12
        # another process on the node now gets every image without decoding any
        assert pool.apply(_read_in_child, (str(store_dir), paths)) == 12


def test_past_the_budget_images_are_kept_in_the_process(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    paths = _write_images(tmp_path, 5)
    one = 96 * 128 * 3 + 128
    store = ImageStore(tmp_path / "store", max_bytes=2 * one)
    seen: list[tuple[int, int]] = []
    with caplog.at_level(logging.WARNING, logger="pose_core.image_store"):
        store.preload(paths, on_progress=lambda done, total: seen.append((done, total)))
    assert seen[-1] == (5, 5) and len(seen) == 5
    assert "is full" in caplog.text and caplog.text.count("is full") == 1
    assert len(list((tmp_path / "store").glob("*.npy"))) == 2
    assert store.stored_bytes() <= 2 * one
    assert len(store) == 5 and store.nbytes == 5 * 96 * 128 * 3
    for path in paths:
        assert np.array_equal(store.get(path), load_image(path))


def test_unreadable_images_raise_the_loader_error_and_store_nothing(tmp_path):
    store = ImageStore(tmp_path / "store")
    with pytest.raises(DataError, match="file not found"):
        store.get(str(tmp_path / "missing.jpg"))
    corrupt = tmp_path / "corrupt.jpg"
    corrupt.write_bytes(b"\xff\xd8 not really a jpeg")
    with pytest.raises(DataError, match="cannot decode image"):
        store.preload([str(corrupt)], threads=2)
    assert not list((tmp_path / "store").iterdir())


def test_a_damaged_entry_is_replaced(tmp_path):
    (path,) = _write_images(tmp_path, 1)
    ImageStore(tmp_path / "store").get(path)
    entry = ImageStore(tmp_path / "store").entry_path(path)
    assert entry is not None
    entry.write_bytes(entry.read_bytes()[:200])  # truncated, as by a crash of another tool
    assert np.array_equal(ImageStore(tmp_path / "store").get(path), load_image(path))
    assert entry.stat().st_size == 96 * 128 * 3 + 128


def test_pickling_drops_the_arrays_and_clear_empties_the_store(tmp_path):
    paths = _write_images(tmp_path, 3)
    store = ImageStore(tmp_path / "store")
    store.preload(paths)
    copy = pickle.loads(pickle.dumps(store))
    assert len(pickle.dumps(store)) < 2000 and len(copy) == 0
    assert np.array_equal(copy.get(paths[0]), load_image(paths[0]))
    (tmp_path / "store" / "left.tmp").write_bytes(b"x")
    store.clear()
    assert len(store) == 0 and not list((tmp_path / "store").iterdir())
    assert clear_store(tmp_path / "store") == 0


def test_default_directory_follows_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv(STORE_ENV, str(tmp_path / "mine"))
    assert default_store_dir() == tmp_path / "mine"
    monkeypatch.delenv(STORE_ENV)
    assert default_store_dir().name == f"posetune-images-{os.getuid()}"


def test_top_down_samples_from_the_store_equal_samples_from_image_cache(tmp_path):
    import torch

    from pose_core.dataset import ImageCache, TopDownDataset
    from pose_core.records import Instance

    paths = _write_images(tmp_path, 3, size=(240, 320))
    keypoints = np.array([[100, 80, 2], [180, 90, 2], [150, 160, 1]], np.float32)
    instances = [
        Instance(p, i, i, 320, 240, (60.0, 40.0, 180.0, 160.0), keypoints, 28800.0, "test")
        for i, p in enumerate(paths)
    ]
    store = ImageStore(tmp_path / "store")
    store.preload(paths)
    common = dict(flip_index=(1, 0, 2), input_size=64, train=True, augment="all")
    shared = TopDownDataset(instances * 2, image_cache=store, **common)
    cached = TopDownDataset(instances * 2, image_cache=ImageCache(), **common)
    for index in range(6):
        a, b = shared[index], cached[index]
        for key in a:
            assert torch.equal(a[key], b[key]), (index, key)
