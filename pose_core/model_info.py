"""Parameter count and compute of a configured pose model, measured, not looked up.

Compute is counted with ``torch.utils.flop_counter.FlopCounterMode`` over one forward pass at
batch 1 in eval mode. That counter reports FLOPs = 2 x multiply-accumulates for convolutions,
matrix products and attention, and ignores BN, activations, pooling and element-wise ops.
The pose literature's "GFLOPs" (HRNet README, MMPose ``get_flops``) are multiply-adds of conv
and linear layers, so compare the literature with ``gmacs``; ``gflops`` holds true FLOPs.
For KITPose the count includes the k-medoids distance products (a few MFLOPs).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch.utils.flop_counter import FlopCounterMode

from pose_core.config import ModelConfig
from pose_core.kitpose_head import unused_code_parameters
from pose_core.models import build_model

FLOP_COUNTER = "torch.utils.flop_counter.FlopCounterMode (FLOPs = 2 x MACs)"


@dataclass(frozen=True)
class ModelInfo:
    """``gflops`` = FLOPs / 1e9 (2 x MACs); ``gmacs`` = multiply-accumulates / 1e9, the
    literature's "GFLOPs". ``counts`` holds raw integers: ``params.backbone``,
    ``params.head``, ``flops.backbone``, ``flops.head`` and, for KITPose,
    ``params.official_code`` (ours plus the two tensors the official code builds but never
    uses)."""

    params_m: float
    gflops: float
    gmacs: float
    heatmap_shape: tuple[int, ...]
    flop_counter: str = FLOP_COUNTER
    counts: dict[str, int] = field(default_factory=dict)


def model_info(cfg: ModelConfig, num_keypoints: int = 20, input_size: int = 256) -> ModelInfo:
    """Build ``cfg`` for ``num_keypoints`` at ``input_size`` and measure it on the CPU."""
    model = build_model(cfg, num_keypoints, input_size).eval()
    params = {
        "params.backbone": sum(p.numel() for p in model.backbone.parameters()),
        "params.head": sum(p.numel() for p in model.head.parameters()),
    }
    total_params = params["params.backbone"] + params["params.head"]
    if cfg.head == "kitpose":
        pixels = (input_size // 4) ** 2
        extra = unused_code_parameters(pixels, cfg.kit_dim, cfg.kit_parts)
        params["params.official_code"] = total_params + extra
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        heatmaps = model(torch.zeros(1, 3, input_size, input_size))["heatmaps"]
    per_module = counter.get_flop_counts()
    flops = int(counter.get_total_flops())
    counts = dict(params)
    counts["flops.backbone"] = int(sum(per_module.get("PoseModel.backbone", {}).values()))
    counts["flops.head"] = int(sum(per_module.get("PoseModel.head", {}).values()))
    counts["flops.total"] = flops
    return ModelInfo(
        params_m=total_params / 1e6,
        gflops=flops / 1e9,
        gmacs=flops / 2e9,
        heatmap_shape=tuple(heatmaps.shape),
        counts=counts,
    )
