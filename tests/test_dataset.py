"""TopDownDataset: keypoints land on their drawn pixels and heatmap peaks through augmentation,
eval crops invert exactly, and randomness depends only on (seed, epoch, index)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from pose_core.codecs import encode_heatmaps
from pose_core.dataset import (
    MEAN_RGB,
    STD_RGB,
    ImageCache,
    TopDownDataset,
    predictions_to_image,
)
from pose_core.geometry import flip_heatmaps
from pose_core.records import Instance

REAL = Path(__file__).resolve().parents[2] / "shared" / "data" / "real"

# keypoint 0/1 are a left/right pair, 2 is unpaired; each is a disc of its own colour (RGB)
POINTS = np.array([[120.0, 100.0], [200.0, 110.0], [160.0, 170.0]])
COLOURS = np.array([[255, 0, 0], [0, 255, 0], [0, 0, 255]])
FLIP_INDEX = (1, 0, 2)


def _instance(tmp_path: Path, name: str = "discs.png", image_id: int = 1) -> Instance:
    image = np.zeros((240, 320, 3), np.uint8)
    for (x, y), rgb in zip(POINTS.astype(int), COLOURS, strict=True):
        cv2.circle(image, (int(x), int(y)), 6, tuple(int(c) for c in rgb[::-1]), -1)
    path = str(tmp_path / name)
    cv2.imwrite(path, image)
    keypoints = np.concatenate([POINTS, np.full((3, 1), 2.0)], axis=1).astype(np.float32)
    return Instance(
        image_path=path,
        image_id=image_id,
        annotation_id=image_id,
        width=320,
        height=240,
        bbox=(100.0, 85.0, 120.0, 100.0),
        keypoints=keypoints,
        area=12000.0,
        source="test",
    )


def _rgb(sample: dict[str, torch.Tensor]) -> np.ndarray:
    image = sample["image"].permute(1, 2, 0).numpy()
    return image * np.array(STD_RGB) + np.array(MEAN_RGB)


def test_keypoints_land_on_their_discs_and_heatmap_peaks_in_train_mode(tmp_path):
    inst = _instance(tmp_path)
    dataset = TopDownDataset([inst] * 40, FLIP_INDEX, input_size=128, train=True, seed=1)
    flips = checked = 0
    for index in range(len(dataset)):
        sample = dataset[index]
        rgb, keypoints = _rgb(sample), sample["keypoints"].numpy()
        colours: dict[int, int] = {}
        for k in range(3):
            x, y, v = keypoints[k]
            if not (0 <= x < 126 and 0 <= y < 126):  # its rounded cell is on the 32x32 map
                continue
            assert v == 2 and sample["weights"][k] == 1
            peak = int(sample["heatmaps"][k].argmax())
            assert (peak % 32, peak // 32) == (np.floor(x / 4 + 0.5), np.floor(y / 4 + 0.5))
            pixel = rgb[int(round(y)), int(round(x))]
            colours[k] = int(np.argmin(np.abs(COLOURS - pixel).sum(axis=1)))
            assert np.abs(COLOURS[colours[k]] - pixel).max() < 40
            checked += 1
        for k, colour in colours.items():
            assert colour in (k, FLIP_INDEX[k])  # own disc, or the mirrored partner's if flipped
        states = {colours[k] != k for k in colours if FLIP_INDEX[k] != k}
        assert len(states) <= 1  # the pair swaps together or not at all
        flips += int(states == {True})
    assert checked > 60 and 5 <= flips <= 35


def test_keypoints_survive_all_photometric_augmentations(tmp_path):
    dataset = TopDownDataset([_instance(tmp_path)] * 10, FLIP_INDEX, 128, train=True, augment="all")
    for index in range(10):
        sample = dataset[index]
        rgb = _rgb(sample)
        for k in np.flatnonzero(sample["weights"].numpy()):
            x, y, _ = sample["keypoints"][k].tolist()
            if 0 <= x < 127 and 0 <= y < 127:
                # still on the disc: brighter than the (black, augmented) background
                background = np.median(rgb.sum(axis=2))
                assert rgb[int(round(y)), int(round(x))].sum() > background + 20


def test_eval_crop_inverts_to_the_original_keypoints(tmp_path):
    inst = _instance(tmp_path)
    inst.keypoints[:, :2] += np.array([[0.3, -0.2], [0.45, 0.1], [-0.35, 0.4]], np.float32)
    for unbiased in (False, True):
        dataset = TopDownDataset([inst], FLIP_INDEX, input_size=256, unbiased=unbiased)
        sample = dataset[0]
        assert torch.equal(sample["image"], dataset[0]["image"])  # eval: no randomness
        flat = sample["heatmaps"].flatten(1).argmax(dim=1)
        peaks = torch.stack([flat % 64, flat // 64], dim=1).float()[None]
        centre, scale = sample["center"][None], sample["scale"][None]
        back = predictions_to_image(peaks, centre, scale, 256)[0].numpy()
        half_cell = 0.5 * 4 * float(scale[0, 0]) / 256  # half a heatmap pixel in image pixels
        assert np.abs(back - inst.keypoints[:, :2]).max() <= half_cell + 1e-3
        exact = sample["keypoints"][:, :2].numpy()[None] / 4
        back = predictions_to_image(exact, centre.numpy(), scale.numpy(), 256)[0]
        assert np.abs(back - inst.keypoints[:, :2]).max() < 1e-3


def test_flip_of_encoded_heatmaps_matches_encoding_the_flipped_keypoints():
    points = np.array([[10.0, 20.0], [40.0, 33.0], [63.0, 0.0]])
    visible = np.array([True, True, False])
    heatmaps, weights = encode_heatmaps(points, visible, (64, 64))
    flipped = np.stack([63 - points[:, 0], points[:, 1]], axis=1)[list(FLIP_INDEX)]
    expected, expected_weights = encode_heatmaps(flipped, visible[list(FLIP_INDEX)], (64, 64))
    np.testing.assert_allclose(flip_heatmaps(heatmaps, FLIP_INDEX), expected, atol=1e-6)
    np.testing.assert_array_equal(weights[list(FLIP_INDEX)], expected_weights)
    np.testing.assert_array_equal(
        flip_heatmaps(flip_heatmaps(heatmaps, FLIP_INDEX), FLIP_INDEX), heatmaps
    )


def _stack(samples):
    return {key: torch.stack([s[key] for s in samples]) for key in samples[0]}


def test_randomness_depends_only_on_seed_epoch_and_index(tmp_path):
    instances = [_instance(tmp_path, f"im{i}.png", i) for i in range(4)]
    dataset = TopDownDataset(instances, FLIP_INDEX, 64, train=True, augment="all", seed=5)
    forward = [dataset[i] for i in range(4)]
    backward = [dataset[i] for i in reversed(range(4))][::-1]
    for a, b in zip(forward, backward, strict=True):
        for key in a:
            assert torch.equal(a[key], b[key]), key
    dataset.set_epoch(1)
    assert not torch.equal(dataset[0]["image"], forward[0]["image"])
    dataset.set_epoch(0)
    batches = {}
    for workers in (0, 2):
        loader = DataLoader(dataset, batch_size=2, num_workers=workers, shuffle=False)
        batches[workers] = list(loader)
    expected = _stack(forward)
    for workers, batch_list in batches.items():
        for key in expected:
            got = torch.cat([batch[key] for batch in batch_list])
            assert torch.equal(got, expected[key]), (workers, key)


def test_image_cache_decodes_each_image_once_and_matches_direct_loading(tmp_path):
    calls: list[str] = []

    def loader(path: str) -> np.ndarray:
        calls.append(path)
        image = cv2.imread(path, cv2.IMREAD_COLOR)
        assert image is not None
        return image

    instances = [_instance(tmp_path, "a.png", 1), _instance(tmp_path, "b.png", 2)]
    cache = ImageCache(loader)
    cache.preload(inst.image_path for inst in instances)
    cached = TopDownDataset(instances * 3, FLIP_INDEX, 64, train=True, image_cache=cache)
    plain = TopDownDataset(instances * 3, FLIP_INDEX, 64, train=True)
    for index in range(6):
        assert torch.equal(cached[index]["image"], plain[index]["image"])
    assert len(calls) == 2 and len(cache) == 2 and cache.nbytes == 2 * 240 * 320 * 3


def test_mismatched_flip_index_is_rejected(tmp_path):
    with pytest.raises(ValueError, match="flip_index has 2"):
        TopDownDataset([_instance(tmp_path)], (1, 0))


def test_real_animalpose_instances_in_train_mode():
    path = REAL / "animalpose" / "annotations.json"
    if not path.is_file():
        pytest.skip(f"real test data not found at {path}")
    from pose_core.readers import read_coco

    instances, skeleton, _ = read_coco(path)
    dataset = TopDownDataset.for_skeleton(
        instances[:6], skeleton, train=True, augment="all", input_size=256
    )
    for index in range(len(dataset)):
        sample = dataset[index]
        k = skeleton.num_keypoints
        assert sample["image"].shape == (3, 256, 256) and sample["heatmaps"].shape == (k, 64, 64)
        assert torch.isfinite(sample["image"]).all()
        weights = sample["weights"]
        assert torch.equal(weights > 0, sample["keypoints"][:, 2] > 0)
        assert torch.equal(sample["heatmaps"].flatten(1).amax(1) > 0, weights > 0)


def test_train_mode_without_geometric_or_photometric_augmentation_is_the_eval_crop(tmp_path):
    inst = _instance(tmp_path)
    plain = TopDownDataset([inst], FLIP_INDEX, 64, train=True, geometric=False)[0]
    evaluation = TopDownDataset([inst], FLIP_INDEX, 64)[0]
    for key in plain:
        assert torch.equal(plain[key], evaluation[key]), key
    photometric = TopDownDataset([inst], FLIP_INDEX, 64, train=True, geometric=False, augment="all")
    for epoch in range(6):
        photometric.set_epoch(epoch)
        sample = photometric[0]
        assert torch.equal(sample["heatmaps"], evaluation["heatmaps"])
        assert torch.equal(sample["keypoints"], evaluation["keypoints"])
