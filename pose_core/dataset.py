"""The top-down training/evaluation Dataset: crop one instance, augment, encode heatmaps.

Train mode follows MMPose's pipeline order: flip (p 0.5, left/right swap), half-body, random
bbox shift/scale/rotation, aspect fix, affine crop, then our photometric set on the uint8 crop,
then the Gaussian heatmap target. All randomness of sample ``i`` comes from a generator seeded
with ``(seed, epoch, i)``, so a batch is the same whatever the DataLoader's worker count or order.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Protocol, TypeVar

import cv2
import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from pose_core.augment import apply_photometric, build_photometric
from pose_core.batch_augment import NUM_PARAMS, BatchPreparer, params_from_uniform
from pose_core.codecs import encode_heatmaps
from pose_core.geometry import (
    RandomBBoxTransform,
    bbox_to_center_scale,
    compose_flip,
    fix_aspect_ratio,
    flip_keypoints,
    get_affine,
    random_half_body,
    transform_points,
)
from pose_core.readers import load_image
from pose_core.records import Instance
from pose_core.skeletons import Skeleton

# MMPose's ImageNet normalisation, in RGB order, on 0..255 pixels.
MEAN_RGB = (123.675, 116.28, 103.53)
STD_RGB = (58.395, 57.12, 57.375)
HEATMAP_STRIDE = 4

_MEAN = np.array(MEAN_RGB, dtype=np.float32)
_INV_STD = 1.0 / np.array(STD_RGB, dtype=np.float32)


class ImageSource(Protocol):
    """Where a dataset gets decoded images: :class:`ImageCache` (this process) or
    :class:`pose_core.image_store.ImageStore` (shared by the processes of a node)."""

    def get(self, path: str) -> np.ndarray: ...

    def preload(self, paths: Iterable[str]) -> None: ...


class ImageCache:
    """Decoded BGR uint8 images by path, each decoded once.

    Pose sets are small (hundreds to a few thousand images), so keeping them decoded removes
    JPEG decoding from every epoch. Call :meth:`preload` before the DataLoader forks its workers
    and the workers share the arrays copy-on-write instead of each decoding its own copy.
    """

    def __init__(self, loader: Callable[[str], np.ndarray] = load_image) -> None:
        self._loader = loader
        self._images: dict[str, np.ndarray] = {}

    def get(self, path: str) -> np.ndarray:
        image = self._images.get(path)
        if image is None:
            image = self._loader(path)
            self._images[path] = image
        return image

    def preload(self, paths: Iterable[str]) -> None:
        for path in paths:
            self.get(path)

    def __len__(self) -> int:
        return len(self._images)

    @property
    def nbytes(self) -> int:
        return sum(image.nbytes for image in self._images.values())


class TopDownDataset(Dataset[dict[str, Tensor]]):
    """One sample per instance: ``image (3, S, S)``, ``heatmaps (K, S/4, S/4)``, ``weights (K,)``,
    ``keypoints (K, 3)`` (target x, y in input pixels and v, 0 where the weight is 0),
    ``center (2,)`` and ``scale (2,)`` (aspect-fixed box in image pixels) and ``index ()``.

    ``augment`` names a photometric set (:data:`pose_core.augment.AUGMENT_SETS`); ``geometric``
    switches flip, half-body and the random box transform. Both apply in train mode only.

    ``batched=True`` stops after the crop: a sample is ``image_u8 (3, S, S)`` uint8 RGB,
    ``keypoints (K, 3)`` (x, y in input pixels, raw v), ``photometric (P,)`` (the sample's
    drawn parameters), ``noise_seed ()``, ``center``, ``scale`` and ``index``; the collated batch
    is finished on the training device by :meth:`batch_preparer`.
    """

    def __init__(
        self,
        instances: Sequence[Instance],
        flip_index: Sequence[int],
        input_size: int = 256,
        heatmap_sigma: float = 2.0,
        unbiased: bool = False,
        train: bool = False,
        augment: str = "none",
        geometric: bool = True,
        upper_body: Sequence[int] = (),
        lower_body: Sequence[int] = (),
        seed: int = 0,
        image_cache: ImageSource | None = None,
        batched: bool = False,
    ) -> None:
        if input_size % HEATMAP_STRIDE:
            raise ValueError(f"input_size {input_size} is not a multiple of {HEATMAP_STRIDE}")
        for inst in instances:
            if inst.num_keypoints != len(flip_index):
                raise ValueError(
                    f"{inst.image_path}: instance {inst.annotation_id} has {inst.num_keypoints} "
                    f"keypoints but flip_index has {len(flip_index)}"
                )
        self.instances = list(instances)
        self.flip_index = tuple(int(i) for i in flip_index)
        self.input_size = input_size
        self.heatmap_size = input_size // HEATMAP_STRIDE
        self.heatmap_sigma = heatmap_sigma
        self.unbiased = unbiased
        self.train = train
        self.geometric = geometric
        self.upper_body = tuple(upper_body)
        self.lower_body = tuple(lower_body)
        self.seed = seed
        self.epoch = 0
        self.image_cache = image_cache
        self.augment = augment
        self.photometric = build_photometric(augment)
        self.batched = batched
        self.bbox_transform = RandomBBoxTransform()

    @classmethod
    def for_skeleton(
        cls, instances: Sequence[Instance], skeleton: Skeleton, **kwargs: object
    ) -> TopDownDataset:
        """Build with the skeleton's flip index and body halves."""
        return cls(
            instances,
            skeleton.flip_index,
            upper_body=skeleton.upper_body,
            lower_body=skeleton.lower_body,
            **kwargs,  # type: ignore[arg-type]
        )

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch's random stream.

        Call it before creating the epoch's DataLoader iterator: workers get a copy of the
        dataset when the iterator starts, so ``persistent_workers=True`` would keep epoch 0.
        """
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.instances)

    def _load(self, path: str) -> np.ndarray:
        return self.image_cache.get(path) if self.image_cache is not None else load_image(path)

    def sample_rng(self, index: int) -> np.random.Generator:
        """The generator of sample ``index`` in the current epoch."""
        return np.random.default_rng([self.seed, self.epoch, index])

    def __getitem__(self, index: int) -> dict[str, Tensor]:
        inst = self.instances[index]
        image = self._load(inst.image_path)
        rng = self.sample_rng(index) if self.train else None
        keypoints = np.asarray(inst.keypoints, dtype=np.float64)
        matrix, image_matrix, keypoints, center, scale = self._crop_geometry(
            inst, image.shape[1], keypoints, rng
        )
        size = self.input_size
        crop = cv2.warpAffine(image, image_matrix, (size, size), flags=cv2.INTER_LINEAR)
        if self.batched:
            return self._crop_only(index, crop, transform_points(keypoints[:, :2], matrix),
                                   keypoints[:, 2], center, scale, rng)
        crop = cv2.cvtColor(crop, cv2.COLOR_BGR2RGB)
        if rng is not None:
            crop = apply_photometric(self.photometric, crop, rng)

        points = transform_points(keypoints[:, :2], matrix)
        # Off-crop keypoints are left to the codec, as in MMPose: the standard encode keeps a
        # keypoint whose Gaussian patch still touches the map (a partial blob at the border).
        heatmaps, weights = encode_heatmaps(
            points / HEATMAP_STRIDE,
            keypoints[:, 2] > 0,
            (self.heatmap_size, self.heatmap_size),
            sigma=self.heatmap_sigma,
            unbiased=self.unbiased,
        )
        target = np.concatenate([points, np.where(weights > 0, keypoints[:, 2], 0.0)[:, None]], 1)
        return {
            "image": to_tensor(crop),
            "heatmaps": torch.from_numpy(np.ascontiguousarray(heatmaps, dtype=np.float32)),
            "weights": torch.from_numpy(np.ascontiguousarray(weights, dtype=np.float32)),
            "keypoints": torch.from_numpy(target.astype(np.float32)),
            "center": torch.from_numpy(center.astype(np.float32)),
            "scale": torch.from_numpy(scale.astype(np.float32)),
            "index": torch.tensor(index, dtype=torch.int64),
        }

    def _crop_only(
        self,
        index: int,
        crop_bgr: np.ndarray,
        points: np.ndarray,
        visibility: np.ndarray,
        center: np.ndarray,
        scale: np.ndarray,
        rng: np.random.Generator | None,
    ) -> dict[str, Tensor]:
        """The ``batched`` sample: the uint8 crop and the photometric draw, nothing computed."""
        params = np.zeros(NUM_PARAMS, np.float32)
        noise_seed = 0
        if rng is not None and self.photometric is not None:
            params = params_from_uniform(self.augment, rng.random(NUM_PARAMS))[0]
            noise_seed = int(rng.integers(2**62))
        # BGR (H, W, 3) -> RGB (3, H, W) in one copy.
        rgb = np.ascontiguousarray(crop_bgr[:, :, ::-1].transpose(2, 0, 1))
        target = np.concatenate([points, visibility[:, None]], 1)
        return {
            "image_u8": torch.from_numpy(rgb),
            "keypoints": torch.from_numpy(target.astype(np.float32)),
            "photometric": torch.from_numpy(params),
            "noise_seed": torch.tensor(noise_seed, dtype=torch.int64),
            "center": torch.from_numpy(center.astype(np.float32)),
            "scale": torch.from_numpy(scale.astype(np.float32)),
            "index": torch.tensor(index, dtype=torch.int64),
        }

    def batch_preparer(self) -> BatchPreparer:
        """The device step that finishes this dataset's ``batched`` samples."""
        return BatchPreparer(
            self.augment if self.train else "none",
            self.heatmap_size,
            self.heatmap_sigma,
            self.unbiased,
            mean=MEAN_RGB,
            std=STD_RGB,
        )

    def _crop_geometry(
        self,
        inst: Instance,
        image_width: int,
        keypoints: np.ndarray,
        rng: np.random.Generator | None,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """``(matrix, image_matrix, keypoints, center, scale)`` of one crop.

        ``keypoints`` are returned flipped (with swap) when the flip fires; ``matrix`` maps those
        to the crop. ``image_matrix`` maps the *unflipped* image to the same crop, so the flip
        costs nothing on the image.
        """
        center, scale = bbox_to_center_scale(inst.bbox)
        rotation = 0.0
        flipped = False
        if rng is not None and self.geometric:
            if rng.random() < 0.5:
                flipped = True
                keypoints = flip_keypoints(keypoints, image_width, self.flip_index)
                center = np.array([image_width - 1 - center[0], center[1]])
            half = random_half_body(keypoints, self.upper_body, self.lower_body, rng)
            if half is not None:
                center, scale = half
            center, scale, rotation = self.bbox_transform.apply(center, scale, rng)
        scale = fix_aspect_ratio(scale, 1.0)
        size = (self.input_size, self.input_size)
        matrix = get_affine(center, scale, rotation, size)
        image_matrix = compose_flip(matrix, image_width) if flipped else matrix
        return matrix, image_matrix, keypoints, center, scale


def to_tensor(rgb: np.ndarray) -> Tensor:
    """uint8 ``(H, W, 3)`` RGB -> normalised float32 ``(3, H, W)``.

    Plane by plane in numpy: ~0.1 ms at 256x256, where torch's elementwise ops spread over
    intra-op threads and, with cores shared with other processes, took tens of ms.
    """
    out = np.empty((3, *rgb.shape[:2]), dtype=np.float32)
    for c, plane in enumerate(cv2.split(rgb)):
        np.subtract(plane, _MEAN[c], out=out[c], dtype=np.float32)
        out[c] *= _INV_STD[c]
    return torch.from_numpy(out)


ArrayT = TypeVar("ArrayT", Tensor, np.ndarray)


def predictions_to_image(coords: ArrayT, center: ArrayT, scale: ArrayT, input_size: int) -> ArrayT:
    """Heatmap-pixel ``coords (B, K, 2)`` -> image pixels, inverting an unrotated crop.

    ``center``/``scale`` ``(B, 2)`` are the sample's (aspect-fixed) box. Heatmap px x stride
    gives input px; input px / S x scale + center - scale / 2 gives image px (MMPose's decode).
    """
    stride = input_size / (input_size // HEATMAP_STRIDE)
    box = scale[:, None, :]
    return coords * (stride / input_size) * box + center[:, None, :] - 0.5 * box
