"""Input pipeline throughput, images per second per core: posetune's TopDownDataset vs a naive loader.

Both do the same work per sample at 256x256: get the image, flip / scale / rotate, affine crop,
the ``all`` photometric set, 64x64 Gaussian targets, normalise to a float tensor. posetune reads
decoded images from an :class:`ImageCache` (filled by the first epoch, which is timed apart),
folds the flip into the crop matrix and encodes with the vectorised codec. The naive loader is
written the obvious way: ``cv2.imread`` every time, ``cv2.flip`` on the full image,
albumentations carrying keypoints through ``KeypointParams``, one float64 Gaussian per keypoint
in a Python loop, float64 normalisation.

Single process, one thread each for torch and OpenCV, so the figure is per core. Rounds of the
two loaders alternate and the best round of each is reported, because the machine may be shared.

    python -m benchmarks.input_pipeline [--images 200] [--width 640] [--height 480] [--rounds 3]
"""

from __future__ import annotations

import argparse
import tempfile
import time
import warnings
from collections.abc import Callable, Sequence

import albumentations as A
import cv2
import numpy as np
import torch

from pose_core.augment import build_photometric
from pose_core.dataset import MEAN_RGB, STD_RGB, ImageCache, TopDownDataset
from pose_core.readers import read_coco
from pose_core.records import Instance
from pose_core.synth import SynthConfig, generate

SIZE = 256
HEATMAP = 64
SIGMA = 2.0


class NaiveDataset(torch.utils.data.Dataset[dict[str, torch.Tensor]]):
    """The loader a first version usually is; same augmentations, no care for speed."""

    def __init__(self, instances: Sequence[Instance], flip_index: Sequence[int]) -> None:
        self.instances = list(instances)
        self.flip_index = list(flip_index)
        photometric = build_photometric("all")
        assert photometric is not None
        # the photometric transforms leave keypoints alone; albumentations warns about that
        warnings.filterwarnings("ignore", message="Got processor for keypoints")
        self.transform = A.Compose(
            list(photometric.transforms),
            keypoint_params=A.KeypointParams(format="xy", remove_invisible=False),
        )

    def __len__(self) -> int:
        return len(self.instances)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        inst = self.instances[index]
        bgr = cv2.imread(inst.image_path)
        assert bgr is not None, inst.image_path
        image = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        joints = inst.keypoints.astype(np.float64).copy()
        x, y, w, h = inst.bbox
        center = np.array([x + w / 2, y + h / 2])
        side = max(w, h) * 1.25
        if np.random.rand() < 0.5:
            image = cv2.flip(image, 1)
            joints[:, 0] = image.shape[1] - 1 - joints[:, 0]
            joints = joints[self.flip_index]
            center[0] = image.shape[1] - 1 - center[0]
        side *= np.clip(np.random.randn() * 0.25 + 1, 0.5, 1.5)
        rotation = np.clip(np.random.randn() * 40, -80, 80) if np.random.rand() < 0.6 else 0
        matrix = cv2.getRotationMatrix2D(
            (float(center[0]), float(center[1])), rotation, SIZE / side
        )
        matrix[:, 2] += np.array([SIZE / 2, SIZE / 2]) - center
        crop = cv2.warpAffine(image, matrix, (SIZE, SIZE), flags=cv2.INTER_LINEAR)
        points = [tuple(matrix[:, :2] @ j[:2] + matrix[:, 2]) for j in joints]
        out = self.transform(image=crop, keypoints=points)
        crop, points = out["image"], out["keypoints"]

        heatmaps = np.zeros((len(points), HEATMAP, HEATMAP))
        weights = np.zeros(len(points))
        xs, ys = np.meshgrid(np.arange(HEATMAP), np.arange(HEATMAP))
        for k, (px, py) in enumerate(points):
            mu_x, mu_y = int(px / 4 + 0.5), int(py / 4 + 0.5)
            if joints[k, 2] > 0 and 0 <= mu_x < HEATMAP and 0 <= mu_y < HEATMAP:
                heatmaps[k] = np.exp(-((xs - mu_x) ** 2 + (ys - mu_y) ** 2) / (2 * SIGMA**2))
                weights[k] = 1.0
        normalised = (crop.astype(np.float64) - np.array(MEAN_RGB)) / np.array(STD_RGB)
        return {
            "image": torch.from_numpy(normalised.transpose(2, 0, 1).copy()).float(),
            "heatmaps": torch.from_numpy(heatmaps).float(),
            "weights": torch.from_numpy(weights).float(),
        }


def _throughput(get: Callable[[int], object], count: int) -> float:
    start = time.perf_counter()
    for index in range(count):
        get(index)
    return count / (time.perf_counter() - start)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=200)
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--height", type=int, default=480)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    np.random.seed(0)

    with tempfile.TemporaryDirectory() as folder:
        config = SynthConfig(images=args.images, seed=0, width=args.width, height=args.height)
        instances, skeleton, _ = read_coco(generate(folder, config))
        cache = ImageCache()
        ours = TopDownDataset.for_skeleton(
            instances, skeleton, input_size=SIZE, train=True, augment="all", image_cache=cache
        )
        naive = NaiveDataset(instances, skeleton.flip_index)
        count = len(instances)
        cold = _throughput(ours.__getitem__, count)  # first epoch: decodes into the cache
        best_ours = best_naive = 0.0
        for round_ in range(args.rounds):
            ours.set_epoch(round_ + 1)
            best_ours = max(best_ours, _throughput(ours.__getitem__, count))
            best_naive = max(best_naive, _throughput(naive.__getitem__, count))

    print(
        f"{count} instances, {args.width}x{args.height} JPEGs -> {SIZE}x{SIZE}, augment 'all'; "
        f"posetune first (decoding) epoch {cold:.0f} img/s; cache {cache.nbytes / 2**20:.0f} MiB"
    )
    print(
        f"input_pipeline: posetune {best_ours:.0f} img/s/core, naive {best_naive:.0f} img/s/core, "
        f"ratio {best_ours / best_naive:.2f}"
    )


if __name__ == "__main__":
    main()
