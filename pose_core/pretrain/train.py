"""Pretrain a pose backbone on fractal categories; the backbone's state dict is the start.

The task is dense: label every 4 x 4 cell of a mosaic of fractals with the category of the
fractal there, or background (:func:`pose_core.pretrain.fractals.mosaic`). A dense
formula-driven task, as in SegRCDB (Shinoda et al., ICCV 2023), rather than FractalDB's
whole-image classification, because the pose head reads a spatial feature map: the
benchmark of the classification start (BENCHMARKS.md, issue 25) found it no better than
random weights on the quickstart.

The backbone is exactly the pose model's (:func:`pose_core.models.create_backbone`), so every
tensor of the start loads into it by name. A throwaway head (:class:`Segmenter`) predicts the
cells from its last feature map; AdamW with a cosine learning rate after a short warmup,
random left-right flips. Inputs are normalised like the pose data
(:data:`pose_core.dataset.MEAN_RGB`).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

from pose_core.dataset import MEAN_RGB, STD_RGB
from pose_core.models import create_backbone
from pose_core.pretrain.fractals import STRIDE, batches, dataset
from pose_core.pretrain.recipe import Recipe

Progress = Callable[[str], None]


@dataclass(frozen=True)
class Pretrained:
    state: dict[str, Tensor]  # the backbone's state dict (features_only keys)
    seconds: float
    final_loss: float
    final_accuracy: float  # fractal cells labelled right, last tenth of the training batches


class Segmenter(nn.Module):
    """The backbone and a throwaway dense head: 1x1 conv to 128 channels, BN, ReLU, 1x1 conv
    to ``classes + 1`` logits, upsampled (bilinear) to the label cells when the backbone's
    last feature map is coarser than them (the ResNets' stride 32)."""

    def __init__(self, backbone: nn.Module, classes: int) -> None:
        super().__init__()
        self.backbone = backbone
        channels = backbone.feature_info.channels()[-1]  # type: ignore[union-attr, operator]
        self.head = nn.Sequential(
            nn.Conv2d(channels, 128, 1, bias=False), nn.BatchNorm2d(128), nn.ReLU(inplace=True),
            nn.Conv2d(128, classes + 1, 1))

    def forward(self, images: Tensor) -> Tensor:
        logits: Tensor = self.head(self.backbone(images)[-1])
        cells = images.shape[-1] // STRIDE
        if logits.shape[-1] != cells:
            logits = nn.functional.interpolate(logits, size=(cells, cells), mode="bilinear",
                                               align_corners=False)
        return logits


def to_tensors(images: np.ndarray, labels: np.ndarray, rng: np.random.Generator
               ) -> tuple[Tensor, Tensor]:
    """(B, S, S, 3) uint8 -> (B, 3, S, S) normalised, and the label maps; each image and its
    map flipped left-right together with p=0.5 (the inputs are not written)."""
    flip = rng.integers(2, size=len(images)).astype(bool)
    images = np.where(flip[:, None, None, None], images[:, :, ::-1], images)
    labels = np.where(flip[:, None, None], labels[:, :, ::-1], labels)
    tensor = torch.from_numpy(images).permute(0, 3, 1, 2).float()
    mean = torch.tensor(MEAN_RGB).view(1, 3, 1, 1)
    std = torch.tensor(STD_RGB).view(1, 3, 1, 1)
    return (tensor - mean) / std, torch.from_numpy(labels)


def pretrain(backbone: str, recipe: Recipe, say: Progress = print) -> Pretrained:
    """Train ``backbone`` on the recipe's fractal categories; progress lines go to ``say``."""
    start = time.perf_counter()
    torch.manual_seed(recipe.seed)
    rng = np.random.default_rng(recipe.seed + 1)
    say(f"{recipe.images} fractal mosaics ({recipe.categories} categories, "
        f"{recipe.image_size} px) ...")
    images, labels = dataset(recipe)
    model = Segmenter(create_backbone(backbone), recipe.categories)
    optimizer = torch.optim.AdamW(model.parameters(), lr=recipe.lr, weight_decay=0.05)
    warmup = max(1, recipe.steps // 20)

    def lr_at(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, recipe.steps - warmup)))

    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_at)
    loss_fn = nn.CrossEntropyLoss()
    model.train()
    report_every = max(1, recipe.steps // 10)
    tail = max(1, recipe.steps // 10)
    losses: list[float] = []
    hits = seen = 0
    for step, index in zip(range(recipe.steps), batches(len(images), recipe.batch, rng),
                           strict=False):
        inputs, target = to_tensors(images[index], labels[index], rng)
        logits = model(inputs)
        loss = loss_fn(logits, target)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        losses.append(float(loss.detach()))
        if step >= recipe.steps - tail:
            fractal = target > 0
            hits += int((logits.argmax(1) == target)[fractal].sum())
            seen += int(fractal.sum())
        if (step + 1) % report_every == 0 or step + 1 == recipe.steps:
            recent = losses[-report_every:]
            say(f"pretraining {backbone}: step {step + 1}/{recipe.steps}, loss "
                f"{sum(recent) / len(recent):.3f}, {time.perf_counter() - start:.0f} s")
    state = {k: v.detach().clone().contiguous() for k, v in model.backbone.state_dict().items()}
    return Pretrained(state, time.perf_counter() - start, losses[-1] if losses else math.nan,
                      hits / max(1, seen))
