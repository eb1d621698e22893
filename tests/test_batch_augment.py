"""The batched photometric/normalise/encode step against the per-sample reference.

Photometric ops are compared with albumentations (as configured in pose_core.augment) by the
distribution of per-image summary statistics over many draws on the same crops: a two-sample
Kolmogorov-Smirnov distance below its 0.1% critical value. With 800 draws that critical value is
0.098; wrong units, a missing p=0.5 or a wrong noise scale give distances of 0.15 to 0.5.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from torch.utils.data import default_collate

from pose_core.augment import AUGMENT_SETS, apply_photometric, build_photometric
from pose_core.batch_augment import (
    BETA,
    HSV_ON,
    HUE,
    NOISE_STD_COL,
    BatchPhotometric,
    sample_params,
)
from pose_core.config import TrialConfig, with_values
from pose_core.dataset import TopDownDataset
from pose_core.readers import read_coco
from pose_core.records import Instance
from pose_core.skeletons import Skeleton

DRAWS = 800
SIZE = 48
KS_C_001 = 1.949  # c(alpha) of the two-sample KS test at alpha = 0.001


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[Instance], Skeleton]:
    from pose_core.synth import SynthConfig, generate

    root = tmp_path_factory.mktemp("batch_augment")
    annotations = generate(root, SynthConfig(images=24, seed=5, style="camera-trap", workers=1,
                                             width=160, height=120))  # fmt: skip
    instances, skeleton, _ = read_coco(annotations)
    return instances, skeleton


@pytest.fixture(scope="module")
def crops(generated: tuple[list[Instance], Skeleton]) -> torch.Tensor:
    """``(DRAWS, 3, SIZE, SIZE)`` uint8 RGB crops, all different (geometric augmentation on)."""
    instances, skeleton = generated
    dataset = TopDownDataset.for_skeleton(instances, skeleton, input_size=SIZE, train=True,
                                          batched=True)  # fmt: skip
    out = []
    for draw in range(DRAWS):
        dataset.set_epoch(draw // len(dataset))
        out.append(dataset[draw % len(dataset)]["image_u8"])
    return torch.stack(out)


def _albumentations(name: str, crops: torch.Tensor) -> torch.Tensor:
    compose = build_photometric(name)
    rng = np.random.default_rng(0)
    images = crops.permute(0, 2, 3, 1).numpy()
    out = [apply_photometric(compose, np.ascontiguousarray(image), rng) for image in images]
    return torch.from_numpy(np.stack(out)).permute(0, 3, 1, 2)


def _statistics(images: torch.Tensor, source: torch.Tensor) -> dict[str, np.ndarray]:
    """Per image: change of mean (all, R, G, B), std ratio, grey-ness, edge energy, hue shift."""
    x, x0 = images.float(), source.float()
    stats = {"mean": x.mean((1, 2, 3)) - x0.mean((1, 2, 3))}
    for c, channel in enumerate("RGB"):
        stats[channel] = x[:, c].mean((1, 2)) - x0[:, c].mean((1, 2))
    stats["std"] = x.std((1, 2, 3)) / x0.std((1, 2, 3))
    stats["grey"] = (x.amax(1) - x.amin(1)).mean((1, 2))
    stats["edges"] = (x[..., 1:] - x[..., :-1]).abs().mean((1, 2, 3))
    hue = torch.from_numpy(_hue_shift(images, source))
    stats["hue"], stats["|hue|"] = hue, hue.abs()  # |hue| is the sharper test of the range
    return {k: v.numpy().astype(np.float64) for k, v in stats.items()}


def _hue_shift(images: torch.Tensor, source: torch.Tensor) -> np.ndarray:
    """Mean OpenCV hue change (0..179 units, wrapped) over pixels saturated before and after."""

    def hsv(batch: torch.Tensor) -> np.ndarray:
        tall = np.ascontiguousarray(batch.permute(0, 2, 3, 1).to(torch.uint8).numpy())
        n, h, w, _ = tall.shape
        return cv2.cvtColor(tall.reshape(n * h, w, 3), cv2.COLOR_RGB2HSV).reshape(n, h, w, 3)

    after, before = hsv(images).astype(np.int32), hsv(source).astype(np.int32)
    saturated = (after[..., 1] > 40) & (before[..., 1] > 40)
    delta = (after[..., 0] - before[..., 0] + 90) % 180 - 90
    count = saturated.sum((1, 2))
    return np.where(count > 0, (delta * saturated).sum((1, 2)) / np.maximum(count, 1), 0.0)


def _ks_distance(a: np.ndarray, b: np.ndarray) -> float:
    points = np.concatenate([a, b])
    cdf_a = np.searchsorted(np.sort(a), points, side="right") / len(a)
    cdf_b = np.searchsorted(np.sort(b), points, side="right") / len(b)
    return float(np.abs(cdf_a - cdf_b).max())


def _ks_critical(n: int, m: int) -> float:
    return KS_C_001 * ((n + m) / (n * m)) ** 0.5


@pytest.mark.parametrize("name", [n for n in AUGMENT_SETS if n != "none"])
def test_photometric_sets_match_albumentations_in_distribution(
    name: str, crops: torch.Tensor
) -> None:
    reference = _statistics(_albumentations(name, crops), crops)
    batched = BatchPhotometric(name)(crops, torch.Generator().manual_seed(1))
    assert batched.dtype == torch.float32 and batched.shape == crops.shape
    assert torch.equal(batched, batched.round()) and 0 <= batched.min() <= batched.max() <= 255
    ours = _statistics(batched, crops)
    critical = _ks_critical(DRAWS, DRAWS)
    distances = {k: round(_ks_distance(reference[k], ours[k]), 3) for k in reference}
    assert max(distances.values()) < critical, (name, critical, distances)


BROKEN = {
    "p=1 instead of 0.5": ("hsv", HSV_ON, lambda v: torch.ones_like(v)),
    "hue in degrees (twice the shift)": ("hsv", HUE, lambda v: 2 * v),
    "noise std as a variance (std 10..50)": ("noise", NOISE_STD_COL, lambda v: v**2),
    "brightness as a fraction of 1, not 255": ("brightness_contrast", BETA, lambda v: v / 255),
}


@pytest.mark.parametrize("mistake", list(BROKEN))
def test_the_comparison_catches_a_wrong_implementation(mistake: str, crops: torch.Tensor) -> None:
    name, column, change = BROKEN[mistake]
    reference = _statistics(_albumentations(name, crops), crops)
    params = sample_params(name, DRAWS, torch.Generator().manual_seed(1))
    params[:, column] = change(params[:, column])
    ours = _statistics(BatchPhotometric(name).apply(crops, params), crops)
    distance = max(_ks_distance(reference[k], ours[k]) for k in reference)
    assert distance > _ks_critical(DRAWS, DRAWS), (mistake, distance)


def test_none_matches_the_per_sample_pipeline(generated: tuple[list[Instance], Skeleton]) -> None:
    instances, skeleton = generated
    kwargs: dict[str, object] = dict(input_size=64, train=True, seed=3)
    reference = TopDownDataset.for_skeleton(instances, skeleton, **kwargs)
    batched = TopDownDataset.for_skeleton(instances, skeleton, batched=True, **kwargs)
    for dataset in (reference, batched):
        dataset.set_epoch(2)
    expected = default_collate([reference[i] for i in range(len(instances))])
    loader_batch = default_collate([batched[i] for i in range(len(instances))])
    assert loader_batch["image_u8"].dtype == torch.uint8
    out = batched.batch_preparer()(loader_batch, torch.device("cpu"))
    assert set(out) == set(expected)
    torch.testing.assert_close(out["image"], expected["image"], rtol=0, atol=1e-6)
    for key in ("heatmaps", "weights", "keypoints", "center", "scale"):
        torch.testing.assert_close(out[key], expected[key], rtol=0, atol=1e-5)
    assert torch.equal(out["index"], expected["index"])
    assert expected["weights"].min() == 0 < expected["weights"].max()  # both cases exercised


def test_photometric_draws_leave_the_geometry_alone(
    generated: tuple[list[Instance], Skeleton],
) -> None:
    """With a photometric set on, the targets still equal the per-sample pipeline's."""
    instances, skeleton = generated
    kwargs: dict[str, object] = dict(input_size=64, train=True, seed=4, augment="all")
    reference = TopDownDataset.for_skeleton(instances, skeleton, **kwargs)
    batched = TopDownDataset.for_skeleton(instances, skeleton, batched=True, **kwargs)
    expected = default_collate([reference[i] for i in range(8)])
    out = batched.batch_preparer()(default_collate([batched[i] for i in range(8)]),
                                   torch.device("cpu"))  # fmt: skip
    for key in ("heatmaps", "weights", "keypoints"):
        torch.testing.assert_close(out[key], expected[key], rtol=0, atol=1e-5)
    assert not torch.allclose(out["image"], expected["image"])  # images differ: augmented


def test_batched_draws_are_reproducible(
    generated: tuple[list[Instance], Skeleton], crops: torch.Tensor
) -> None:
    images = crops[:32]
    first = BatchPhotometric("all")(images, torch.Generator().manual_seed(7))
    again = BatchPhotometric("all")(images, torch.Generator().manual_seed(7))
    other = BatchPhotometric("all")(images, torch.Generator().manual_seed(8))
    assert torch.equal(first, again) and not torch.equal(first, other)

    instances, skeleton = generated
    dataset = TopDownDataset.for_skeleton(instances, skeleton, input_size=SIZE, train=True,
                                          augment="all", batched=True, seed=9)  # fmt: skip
    prepare = dataset.batch_preparer()

    def batch() -> dict[str, torch.Tensor]:
        return prepare(default_collate([dataset[i] for i in range(16)]), torch.device("cpu"))

    a, b = batch(), batch()
    assert all(torch.equal(a[k], b[k]) for k in a)
    dataset.set_epoch(1)
    assert not torch.equal(batch()["image"], a["image"])


def test_fit_runs_with_the_batched_pipeline_and_cutmix(
    generated: tuple[list[Instance], Skeleton],
) -> None:
    from pose_core.loop import fit

    instances, skeleton = generated
    cfg = with_values(TrialConfig(), {
        "model.backbone": "hrnet_w18_small", "model.init": "random",
        "data.input_size": 64, "data.loader_workers": 0, "data.augment": "all",
        "data.cutmix": True, "data.pipeline": "batched",
        "train.batch_size": 8, "train.epochs": 1, "train.bf16": False, "eval.interval": 1,
    })  # fmt: skip
    assert TrialConfig.from_dict(cfg.to_dict()).data.pipeline == "batched"
    trial = fit(cfg, instances[:16], instances[16:20], skeleton)
    row = trial.history[-1]
    assert trial.epoch == 1 and row["evaluated"] and np.isfinite(row["loss"])


def test_pipeline_is_a_closed_choice() -> None:
    from pose_core.config import ConfigError

    with pytest.raises(ConfigError, match="per_sample"):
        TrialConfig.from_dict({"data": {"pipeline": "gpu"}})
    assert TrialConfig().data.pipeline == "per_sample"


def test_unknown_set_lists_the_valid_ones() -> None:
    with pytest.raises(ValueError, match="brightness_contrast"):
        BatchPhotometric("sharpen")


def test_crop_path_is_the_only_work_in_the_loader(tmp_path: Path) -> None:
    """A batched sample holds the uint8 crop, raw visibility and no float image or heatmaps."""
    image = np.full((60, 80, 3), 90, np.uint8)
    path = str(tmp_path / "flat.png")
    cv2.imwrite(path, image)
    keypoints = np.array([[40.0, 30.0, 2.0], [0.0, 0.0, 0.0]], np.float32)
    inst = Instance(image_path=path, image_id=1, annotation_id=1, width=80, height=60,
                    bbox=(20.0, 10.0, 40.0, 40.0), keypoints=keypoints, area=1600.0,
                    source="test")  # fmt: skip
    sample = TopDownDataset([inst], (0, 1), input_size=32, batched=True)[0]
    assert set(sample) == {"image_u8", "keypoints", "photometric", "noise_seed", "center",
                           "scale", "index"}  # fmt: skip
    assert sample["image_u8"].shape == (3, 32, 32) and sample["image_u8"].dtype == torch.uint8
    assert sample["keypoints"][:, 2].tolist() == [2.0, 0.0]
    assert sample["keypoints"][0, :2].tolist() == pytest.approx([16.0, 16.0], abs=0.5)
    assert not sample["photometric"].any()  # eval mode: nothing drawn
