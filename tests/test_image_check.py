"""check_images: real images pass; zero-byte, non-image and cut-off files are named, once."""

from __future__ import annotations

import pickle
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from pose_core.checks import decode_image, load_image
from pose_core.dataset import ImageCache
from pose_core.image_check import check_images
from pose_core.image_store import ImageStore
from pose_core.records import DataError

REAL = ("ap10k/images/000000000004.jpg", "animalpose/images/ca110.jpeg",
        "horse10/images/0465.png", "ap10k/images/000000037516.jpg")


@pytest.fixture()
def folder(tmp_path: Path, shared_data: Path) -> Path:
    """Four real images, a zero-byte PNG, a text file named .jpg, a JPEG and a PNG cut in half."""
    for name in REAL:
        shutil.copy(shared_data / name, tmp_path / Path(name).name)
    (tmp_path / "empty.png").write_bytes(b"")
    (tmp_path / "text.jpg").write_text("not an image")
    whole = (shared_data / REAL[0]).read_bytes()
    (tmp_path / "half.jpg").write_bytes(whole[: len(whole) // 2])
    png = (shared_data / REAL[2]).read_bytes()
    (tmp_path / "short.png").write_bytes(png[:-12])  # only the IEND chunk is missing
    return tmp_path


def test_a_cut_jpeg_decodes_grey_in_opencv_but_is_reported(folder: Path) -> None:
    # The reason for the check: OpenCV returns an image for the cut file.
    grey = cv2.imread(str(folder / "half.jpg"))
    assert grey is not None and grey.shape == load_image(str(folder / "000000000004.jpg")).shape
    bad = decode_image(str(folder / "half.jpg"))
    assert not isinstance(bad, np.ndarray) and bad.fault == "truncated"
    with pytest.raises(DataError, match="half.jpg: image file: field 'content': truncated"):
        load_image(str(folder / "half.jpg"))


def test_real_images_pass_and_bad_ones_are_named(folder: Path) -> None:
    real = [str(folder / Path(name).name) for name in REAL]
    bad = {str(folder / n): f for n, f in [("empty.png", "undecodable"), ("text.jpg", "undecodable"),
                                           ("half.jpg", "truncated"), ("short.png", "truncated"),
                                           ("gone.jpg", "missing")]}
    seen: list[tuple[int, int]] = []
    report = check_images(real + list(bad) + real[:1], workers=3,
                          progress=lambda done, total: seen.append((done, total)))
    assert report.checked == 9 and sorted(seen)[-1] == (9, 9) and len(seen) == 9
    assert {b.path: b.fault for b in report.bad} == bad
    assert [b.path for b in report.bad] == list(bad)  # the order given, not finishing order
    assert "empty file (0 bytes)" in report.bad[0].reason
    assert report.summary().startswith("checked 9 images: 5 bad (")
    with pytest.raises(DataError) as caught:
        report.raise_if_bad()
    assert str(caught.value).startswith(f"{folder / 'empty.png'}: image file: field 'content'")
    assert "and 4 more bad image(s) of 9" in str(caught.value)
    assert pickle.loads(pickle.dumps(caught.value)).args == caught.value.args
    good = check_images(real, workers=1)
    assert good.ok and good.summary() == "checked 4 images: all decode"
    good.raise_if_bad()


def test_the_store_keeps_the_decoded_images(folder: Path, tmp_path_factory) -> None:
    store = ImageStore(tmp_path_factory.mktemp("store"))
    paths = [str(folder / "000000000004.jpg"), str(folder / "0465.png"), str(folder / "half.jpg")]
    report = check_images(paths, workers=2, store=store)
    assert [b.fault for b in report.bad] == ["truncated"]
    assert len(list(store.directory.glob("*.npy"))) == 2 and len(store) == 0
    assert np.array_equal(store.get(paths[0]), load_image(paths[0]))


def test_the_dataset_cache_names_an_undecodable_file(folder: Path) -> None:
    with pytest.raises(DataError, match=r"empty.png: image file: field 'content': cannot decode"):
        ImageCache().get(str(folder / "empty.png"))
