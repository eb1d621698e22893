"""Heatmap losses: ``loss(output, target (B, K, H, W), weights (B, K)) -> scalar``.

``output`` is a model's dict: ``"heatmaps"`` (B, K, H, W) and, for KITPose, ``"aux"`` (the
intermediate maps). Choose by name with :func:`build_loss`; an unknown name or option raises.

- ``mse``: MMPose 1.x ``KeypointMSELoss(use_target_weight=True)``: mean over B, K, H, W of
  ``w_k * (p - g)^2``. No 0.5 factor and the weight is NOT squared (MMPose 1.x multiplies the
  element-wise squared error by the weight mask; MMPose 0.x / the HRNet repo's
  ``JointsMSELoss`` was ``0.5 * mean((w p - w g)^2)``, i.e. half the value with w^2).
- ``kitpose``: KITPose's ``kpt_loss + part_loss`` (POSE_REFERENCE 4.2), weight 1:1 by default:
  the error-weighted heatmap loss on ``heatmaps`` and the GHRL on ``aux``.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

LossFunction = Callable[[dict[str, Tensor], Tensor, Tensor], Tensor]
LOSSES = ("mse", "kitpose")


def keypoint_mse(output: dict[str, Tensor], target: Tensor, weights: Tensor) -> Tensor:
    """MMPose ``KeypointMSELoss(use_target_weight=True)``: ``mean(w * (p - g)^2)``."""
    pred = output["heatmaps"]
    return ((pred - target) ** 2 * weights[:, :, None, None]).mean()


def error_weighted_loss(
    pred: Tensor, target: Tensor, weights: Tensor, beta: float = 1.0, gamma: float = 0.0
) -> Tensor:
    """KITPose's adaptive-weight keypoint loss: ``mean(a * w * |p - g|^beta * (p - g)^2)``.

    With ``gamma = 0`` (the default) ``a = 1``: this is the official code's ``HeatmapLoss``
    (beta = 1, so |p - g|^3 * w); the code reads no gamma (``TRAIN.GAMMA1/2`` are unused).
    ``gamma > 0`` adds OUR focal-style per-keypoint focusing, since the paper's formula was
    not available to port: ``a[b, k] = (e[b, k] / mean(e))^gamma`` with ``e[b, k]`` the mean
    absolute error of that keypoint's map and the mean over the weighted keypoints, detached
    so it only re-weights. Keypoints currently worse than average count more; the mean of
    ``a`` stays near 1, so the loss scale is comparable across gamma.
    """
    error = pred - target
    loss = error.abs() ** beta * error**2 * weights[:, :, None, None]
    if gamma:
        per_keypoint = error.detach().abs().mean(dim=(2, 3))  # (B, K)
        active = weights > 0
        reference = per_keypoint[active].mean() if bool(active.any()) else per_keypoint.mean()
        focus = (per_keypoint / (reference + 1e-12)) ** gamma
        loss = loss * focus[:, :, None, None]
    return loss.mean()


def gaussian_kernel(size: int, sigma: float, dtype: torch.dtype = torch.float32) -> Tensor:
    """Normalised 1-D Gaussian of ``size`` taps, as torchvision's ``gaussian_blur`` builds it."""
    half = (size - 1) * 0.5
    x = torch.linspace(-half, half, size, dtype=torch.float64)
    pdf = torch.exp(-0.5 * (x / sigma) ** 2)
    return (pdf / pdf.sum()).to(dtype)


def gaussian_blur(maps: Tensor, size: int = 13, sigma: float = 4.0) -> Tensor:
    """torchvision ``GaussianBlur(size, sigma)`` on ``(B, K, H, W)``: reflect padding,
    separable kernel. Needs H, W > size // 2."""
    kernel = gaussian_kernel(size, sigma, maps.dtype).to(maps.device)
    channels = maps.shape[1]
    pad = size // 2
    x = F.pad(maps, (pad, pad, pad, pad), mode="reflect")
    x = F.conv2d(x, kernel.view(1, 1, 1, size).expand(channels, 1, 1, size), groups=channels)
    return F.conv2d(x, kernel.view(1, 1, size, 1).expand(channels, 1, size, 1), groups=channels)


def sharpen(maps: Tensor) -> Tensor:
    """Conv with [[0,-1,0],[-1,4,-1],[0,-1,0]], zero padding: the code's ``sharp_gt``, a
    negative-Laplacian high-pass of the target (not target + Laplacian)."""
    kernel = torch.tensor([[0.0, -1.0, 0.0], [-1.0, 4.0, -1.0], [0.0, -1.0, 0.0]])
    channels = maps.shape[1]
    weight = kernel.to(maps).view(1, 1, 3, 3).expand(channels, 1, 3, 3)
    return F.conv2d(maps, weight, padding=1, groups=channels)


def ghrl(pred: Tensor, target: Tensor, beta: float = 2.0) -> Tensor:
    """KITPose's generalised heatmap regression loss (the code's ``GFL(beta=2)``).

    Per pixel ``[(p - sharp)^2 * wl + (p - smooth)^2 * wr] * |p - g|^beta``, mean over all,
    with ``smooth`` = Gaussian blur 13 / sigma 4 of the target, ``sharp`` = :func:`sharpen`,
    ``wl = |sharp - g|``, ``wr = |g - smooth|``. Target weights are ignored, as in the code.
    """
    target = target.to(pred.dtype)
    smooth = gaussian_blur(target, 13, 4.0)
    sharp = sharpen(target)
    wl = (sharp - target).abs()
    wr = (target - smooth).abs()
    pull = (pred - sharp) ** 2 * wl + (pred - smooth) ** 2 * wr
    return (pull * (pred - target).abs() ** beta).mean()


def kitpose_loss(
    output: dict[str, Tensor],
    target: Tensor,
    weights: Tensor,
    beta: float = 1.0,
    gamma: float = 0.0,
    ghrl_weight: float = 1.0,
    ghrl_beta: float = 2.0,
) -> Tensor:
    """``error_weighted_loss(heatmaps) + ghrl_weight * ghrl(aux)`` (1:1 in the code)."""
    if "aux" not in output:
        raise ValueError(
            "loss 'kitpose' needs output['aux'], the intermediate maps of the KITPose head; "
            "use model.head='kitpose' or train.loss='mse'"
        )
    main = error_weighted_loss(output["heatmaps"], target, weights, beta, gamma)
    return main + ghrl_weight * ghrl(output["aux"], target, ghrl_beta)


_OPTIONS: dict[str, tuple[str, ...]] = {
    "mse": (),
    "kitpose": ("beta", "gamma", "ghrl_weight", "ghrl_beta"),
}


def build_loss(name: Literal["mse", "kitpose"], **options: float) -> LossFunction:
    """The loss ``name`` with ``options`` bound (kitpose: beta, gamma, ghrl_weight, ghrl_beta)."""
    if name not in _OPTIONS:
        raise ValueError(f"unknown loss {name!r}; valid: {', '.join(LOSSES)}")
    unknown = sorted(set(options) - set(_OPTIONS[name]))
    if unknown:
        raise ValueError(
            f"loss {name!r}: unknown option(s) {unknown}; valid: {list(_OPTIONS[name]) or 'none'}"
        )
    if not all(isinstance(v, int | float) and math.isfinite(v) for v in options.values()):
        raise ValueError(f"loss {name!r}: options must be finite numbers, got {options}")
    if name == "mse":
        return keypoint_mse
    return functools.partial(
        kitpose_loss,
        beta=float(options.get("beta", 1.0)),
        gamma=float(options.get("gamma", 0.0)),
        ghrl_weight=float(options.get("ghrl_weight", 1.0)),
        ghrl_beta=float(options.get("ghrl_beta", 2.0)),
    )
