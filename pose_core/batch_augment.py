"""The photometric sets, normalisation and heatmap encoding as one batched step on the device.

With ``TopDownDataset(batched=True)`` the loader only crops (uint8) and draws each sample's
photometric parameters; :class:`BatchPreparer` then finishes the whole batch on the training
device. :class:`BatchPhotometric` is the batched twin of :func:`pose_core.augment.build_photometric`
and follows albumentations 2.0.8 as configured there, statistically rather than bitwise:

- every op of a set fires independently with p 0.5, in the order blur, noise, hsv,
  brightness_contrast, grayscale, and its result is clipped and quantised to uint8 as
  albumentations does (rounded after blur and grey, truncated after noise, hsv and B/C);
- ``Blur``: box filter of odd side 3, 5 or 7 (uniform), reflect-101 border (cv2's default);
- ``GaussNoise``: per-pixel, per-channel N(0, s) with s ~ U(std_range) x 255, truncated to
  integers before the (clipped) add;
- ``HueSaturationValue``: OpenCV uint8 HSV (hue 0..179, two degrees a unit); hue shift modulo
  180 then truncated, saturation and value shifts truncated to integers and clipped, pixels
  with S = 0 stay grey;
- ``RandomBrightnessContrast``: ``x * (1 + c) + 255 b`` with b, c ~ U(-0.2, 0.2);
- ``ToGray``: OpenCV's fixed-point 0.299 R + 0.587 G + 0.114 B on all three channels.

Parameters are drawn on the CPU (from a ``torch.Generator``, or in the loader from the sample's
own numpy generator), so they do not depend on the device; the noise field is drawn on the
device from a generator seeded per batch.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from pose_core.augment import _NOISE_STD, AUGMENT_SETS
from pose_core.codecs import encode_heatmaps_torch, target_weights_torch

# Albumentations' order within "all" (pose_core.augment._SINGLE).
OPS: tuple[str, ...] = ("blur", "noise", "hsv", "brightness_contrast", "grayscale")
FIRE_P = 0.5
BLUR_KERNELS = (3, 5, 7)
NOISE_STD = (_NOISE_STD[0] * 255.0, _NOISE_STD[1] * 255.0)  # grey levels
HUE_SHIFT, SAT_SHIFT, VAL_SHIFT = 20.0, 30.0, 20.0  # OpenCV uint8 HSV units, +-limit
BRIGHTNESS, CONTRAST = 0.2, 0.2

# Columns of the ``(B, NUM_PARAMS)`` parameter table; an op that does not fire has flag 0.
BLUR_ON, BLUR_K, NOISE_ON, NOISE_STD_COL, HSV_ON, HUE, SAT, VAL = range(8)
BC_ON, ALPHA, BETA, GRAY_ON = range(8, 12)
NUM_PARAMS = 12
_FLAGS = {"blur": BLUR_ON, "noise": NOISE_ON, "hsv": HSV_ON,
          "brightness_contrast": BC_ON, "grayscale": GRAY_ON}  # fmt: skip

# OpenCV's RGB2GRAY fixed-point weights (x / 2**14), so grey values round as cv2's do.
_GREY_WEIGHTS = (4899.0, 9617.0, 1868.0)


def set_ops(name: str) -> tuple[str, ...]:
    """The ops of an augmentation set, in application order."""
    if name == "none":
        return ()
    if name == "all":
        return OPS
    if name in OPS:
        return (name,)
    raise ValueError(f"unknown augment set {name!r}; valid sets are {list(AUGMENT_SETS)}")


def sample_params(name: str, count: int, generator: torch.Generator) -> Tensor:
    """``(count, NUM_PARAMS)`` float32 parameters of set ``name``, drawn on the CPU."""
    uniform = torch.rand((count, NUM_PARAMS), generator=generator, dtype=torch.float64)
    return torch.from_numpy(params_from_uniform(name, uniform.numpy()))


def params_from_uniform(name: str, uniform: np.ndarray) -> np.ndarray:
    """Map ``(N, NUM_PARAMS)`` U(0, 1) draws to float32 parameters of set ``name``.

    In numpy: the loader calls it once per sample, where torch's per-op overhead on tiny
    tensors (and a Generator per sample) cost a quarter of the crop-only loader's time.
    """
    ops = set_ops(name)
    u = np.asarray(uniform, dtype=np.float64).reshape(-1, NUM_PARAMS)
    params = np.zeros_like(u)
    for op in ops:
        params[:, _FLAGS[op]] = u[:, _FLAGS[op]] < FIRE_P

    def scale(column: int, low: float, high: float) -> None:
        params[:, column] = low + (high - low) * u[:, column]

    if "blur" in ops:
        params[:, BLUR_K] = 3.0 + 2.0 * np.floor(u[:, BLUR_K] * len(BLUR_KERNELS))
    if "noise" in ops:
        scale(NOISE_STD_COL, *NOISE_STD)
    if "hsv" in ops:
        scale(HUE, -HUE_SHIFT, HUE_SHIFT)
        scale(SAT, -SAT_SHIFT, SAT_SHIFT)
        scale(VAL, -VAL_SHIFT, VAL_SHIFT)
    if "brightness_contrast" in ops:
        scale(ALPHA, 1.0 - CONTRAST, 1.0 + CONTRAST)
        scale(BETA, -BRIGHTNESS * 255.0, BRIGHTNESS * 255.0)
    return params.astype(np.float32)


class BatchPhotometric:
    """A named photometric set applied to a batch, each sample with its own parameters.

    ``images`` are ``(B, 3, H, W)`` RGB, uint8 or float holding 0..255 integers, on any device;
    ``params`` come from :func:`sample_params` (CPU). The result is float32 0..255 integers.
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self.ops = set_ops(name)
        self._noise_generators: dict[torch.device, torch.Generator] = {}

    def __call__(
        self, images: Tensor, generator: torch.Generator, noise_seed: int | None = None
    ) -> Tensor:
        """Draw parameters from ``generator`` (CPU) and apply them."""
        params = sample_params(self.name, images.shape[0], generator)
        if noise_seed is None:
            noise_seed = int(torch.randint(2**62, (), generator=generator))
        return self.apply(images, params, noise_seed)

    def apply(self, images: Tensor, params: Tensor, noise_seed: int = 0) -> Tensor:
        """Apply given ``params``; ``noise_seed`` seeds this batch's noise on the device."""
        x = images.float()
        params = params.cpu()
        if "blur" in self.ops:
            x = self._blur(x, params)
        if "noise" in self.ops:
            x = _on_subset(x, params[:, NOISE_ON] > 0, params, self._noise_fn(x.device, noise_seed))
        if "hsv" in self.ops:
            x = _on_subset(x, params[:, HSV_ON] > 0, params, _shift_hsv)
        if "brightness_contrast" in self.ops:
            x = _on_subset(x, params[:, BC_ON] > 0, params, _brightness_contrast)
        if "grayscale" in self.ops:
            x = _on_subset(x, params[:, GRAY_ON] > 0, params, _to_grey)
        return x

    def _blur(self, x: Tensor, params: Tensor) -> Tensor:
        fired = params[:, BLUR_ON] > 0
        for kernel in BLUR_KERNELS:
            chosen = fired & (params[:, BLUR_K] == kernel)
            x = _on_subset(x, chosen, params, partial(_box_blur, kernel=kernel))
        return x

    def _noise_fn(self, device: torch.device, seed: int) -> Callable[[Tensor, Tensor], Tensor]:
        generator = self._noise_generators.get(device)
        if generator is None:
            generator = self._noise_generators.setdefault(device, torch.Generator(device))
        generator.manual_seed(seed)

        def add_noise(x: Tensor, p: Tensor) -> Tensor:
            noise = torch.randn(x.shape, generator=generator, device=x.device)
            std = p[:, NOISE_STD_COL].view(-1, 1, 1, 1)
            # albucore truncates the float noise to integers before the saturating add.
            return (x + torch.trunc(noise * std)).clamp_(0.0, 255.0)

        return add_noise


def _on_subset(
    x: Tensor, chosen: Tensor, params: Tensor, op: Callable[[Tensor, Tensor], Tensor]
) -> Tensor:
    """Apply ``op(images, params)`` to the chosen samples only (``chosen`` is a CPU mask)."""
    index = chosen.nonzero().flatten()
    if index.numel() == 0:
        return x
    subset_params = params[index].to(x.device, non_blocking=True)
    if index.numel() == x.shape[0]:
        return op(x, subset_params)
    index_on_device = index.to(x.device, non_blocking=True)
    done = op(x.index_select(0, index_on_device), subset_params)
    return x.index_copy(0, index_on_device, done)


def _box_blur(x: Tensor, _params: Tensor, kernel: int) -> Tensor:
    radius = kernel // 2
    # torch's "reflect" is OpenCV's BORDER_REFLECT_101 (the edge pixel is not repeated).
    padded = F.pad(x, (radius, radius, radius, radius), mode="reflect")
    # Separable integer sums (exact in float32), one division, one rounding: cv2.blur's result.
    sums = _window_sum(_window_sum(padded, kernel, -1), kernel, -2)
    return torch.round(sums / float(kernel * kernel))


def _window_sum(x: Tensor, kernel: int, dim: int) -> Tensor:
    """Sums of ``kernel`` consecutive values along ``dim`` (length shrinks by kernel - 1).

    A running sum and one difference: on the CPU several times faster than avg_pool2d.
    """
    before = [0, 0] * (-dim - 1) + [1, 0]
    total = torch.cumsum(F.pad(x, before), dim=dim)
    length = x.shape[dim] - kernel + 1
    return total.narrow(dim, kernel, length) - total.narrow(dim, 0, length)


def _brightness_contrast(x: Tensor, p: Tensor) -> Tensor:
    alpha, beta = p[:, ALPHA].view(-1, 1, 1, 1), p[:, BETA].view(-1, 1, 1, 1)
    return torch.floor((x * alpha + beta).clamp_(0.0, 255.0))


def _to_grey(x: Tensor, _params: Tensor) -> Tensor:
    r, g, b = x.unbind(1)
    w = _GREY_WEIGHTS
    grey = torch.floor((w[0] * r + w[1] * g + w[2] * b) / 16384.0 + 0.5)
    return grey.unsqueeze(1).expand_as(x).contiguous()


def _shift_hsv(x: Tensor, p: Tensor) -> Tensor:
    """OpenCV's uint8 RGB->HSV (H 0..179), the shifts, and HSV->RGB, in float."""
    r, g, b = x.unbind(1)
    value = torch.maximum(torch.maximum(r, g), b)
    diff = value - torch.minimum(torch.minimum(r, g), b)
    saturation = torch.round(diff * 255.0 / value.clamp(min=1.0))
    safe = diff.clamp(min=1.0)
    hue = torch.where(
        value == r,
        (g - b) * 30.0 / safe,
        torch.where(value == g, (b - r) * 30.0 / safe + 60.0, (r - g) * 30.0 / safe + 120.0),
    )
    hue = torch.round(hue)
    hue = torch.where(hue < 0, hue + 180.0, hue)
    hue_shift, sat_shift, val_shift = (p[:, c].view(-1, 1, 1) for c in (HUE, SAT, VAL))
    hue = torch.floor(torch.remainder(hue + hue_shift, 180.0))
    grey = saturation == 0
    saturation = (saturation + torch.trunc(sat_shift)).clamp_(0.0, 255.0)
    saturation = torch.where(grey, torch.zeros_like(saturation), saturation)
    value = (value + torch.trunc(val_shift)).clamp_(0.0, 255.0)
    return _hsv_to_rgb(hue, saturation, value)


def _hsv_to_rgb(hue: Tensor, saturation: Tensor, value: Tensor) -> Tensor:
    """``(B, H, W)`` OpenCV uint8 HSV -> ``(B, 3, H, W)`` RGB.

    The installed OpenCV (5.0) truncates here (measured: 99% of a grid of HSV values equal
    ``floor``, 68% equal ``round``), so we truncate too.
    """
    sector = hue / 30.0  # 0..6
    chroma = value * saturation / 255.0
    channels = []
    for n in (5.0, 3.0, 1.0):  # R, G, B
        k = torch.remainder(n + sector, 6.0)
        ramp = torch.clamp(torch.minimum(k, 4.0 - k), 0.0, 1.0)
        channels.append(torch.floor(value - chroma * ramp))
    return torch.stack(channels, dim=1)


class BatchPreparer:
    """Finish a batch of ``TopDownDataset(batched=True)`` on ``device``.

    In: ``image_u8 (B, 3, S, S)`` uint8 RGB, ``keypoints (B, K, 3)`` (x, y in input pixels, raw
    visibility), ``photometric (B, NUM_PARAMS)``, ``noise_seed (B,)`` and pass-through keys.
    Out: what the per-sample path yields, on ``device``: ``image`` normalised float32,
    ``heatmaps (B, K, S/4, S/4)``, ``weights (B, K)``, ``keypoints`` with v zeroed where the
    weight is 0, and the pass-through keys.
    """

    def __init__(
        self,
        augment: str,
        heatmap_size: int,
        sigma: float = 2.0,
        unbiased: bool = False,
        *,
        mean: Sequence[float],
        std: Sequence[float],
    ) -> None:
        self.photometric = BatchPhotometric(augment)
        self.heatmap_size = heatmap_size
        self.sigma = sigma
        self.unbiased = unbiased
        self._mean = torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1)
        # 1/std in float32, then a multiply: the same arithmetic as dataset.to_tensor.
        self._inv_std = (1.0 / torch.tensor(std, dtype=torch.float32)).view(1, 3, 1, 1)

    @torch.no_grad()
    def __call__(self, batch: dict[str, Tensor], device: torch.device) -> dict[str, Tensor]:
        skip = {"image_u8", "photometric", "noise_seed", "keypoints"}
        out = {k: v.to(device, non_blocking=True) for k, v in batch.items() if k not in skip}
        images = batch["image_u8"].to(device, non_blocking=True)
        params = batch.get("photometric")
        if self.photometric.ops and params is not None:
            images = self.photometric.apply(images, params, _batch_seed(batch["noise_seed"]))
        mean, inv_std = self._mean.to(device), self._inv_std.to(device)
        out["image"] = (images.float() - mean) * inv_std
        keypoints = batch["keypoints"].to(device, non_blocking=True)
        stride = images.shape[-1] / self.heatmap_size
        points, visible = keypoints[..., :2] / stride, (keypoints[..., 2] > 0).float()
        size = (self.heatmap_size, self.heatmap_size)
        out["heatmaps"] = encode_heatmaps_torch(points, visible, size, self.sigma, self.unbiased)
        weights = target_weights_torch(points, visible, size, self.sigma, self.unbiased)
        out["weights"] = weights
        v = torch.where(weights > 0, keypoints[..., 2], torch.zeros_like(weights))
        out["keypoints"] = torch.cat([keypoints[..., :2], v.unsqueeze(-1)], dim=-1)
        return out


def _batch_seed(seeds: Tensor) -> int:
    """One device-noise seed from the samples' seeds (CPU int64, wraps deterministically)."""
    if seeds.numel() == 0:
        return 0
    mixed = seeds.cpu().to(torch.int64).flatten() * torch.arange(1, 2 * seeds.numel(), 2)
    return int(mixed.sum()) % 2**62
