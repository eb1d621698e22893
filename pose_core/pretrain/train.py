"""Pretrain a pose backbone on fractal categories; the backbone's state dict is the start.

The backbone is exactly the pose model's (:func:`pose_core.models.create_backbone`), so every
tensor of the start loads into it by name. A throwaway head (1x1 conv to 256 channels, BN,
ReLU, global average pool, linear) classifies its last feature map; AdamW with a cosine
learning rate after a short warmup, random flips and one-pixel-scale shifts of the images.
Inputs are normalised like the pose data (:data:`pose_core.dataset.MEAN_RGB`).
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
from pose_core.pretrain.fractals import batches, dataset
from pose_core.pretrain.recipe import Recipe

Progress = Callable[[str], None]


@dataclass(frozen=True)
class Pretrained:
    state: dict[str, Tensor]  # the backbone's state dict (features_only keys)
    seconds: float
    final_loss: float
    final_accuracy: float  # on the last tenth of the steps' training batches


class Classifier(nn.Module):
    def __init__(self, backbone: nn.Module, classes: int) -> None:
        super().__init__()
        self.backbone = backbone
        channels = backbone.feature_info.channels()[-1]  # type: ignore[union-attr, operator]
        self.head = nn.Sequential(
            nn.Conv2d(channels, 256, 1, bias=False), nn.BatchNorm2d(256), nn.ReLU(inplace=True),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(256, classes))

    def forward(self, images: Tensor) -> Tensor:
        out: Tensor = self.head(self.backbone(images)[-1])
        return out


def to_tensor(images: np.ndarray, rng: np.random.Generator) -> Tensor:
    """(B, S, S, 3) uint8 -> (B, 3, S, S) normalised, each image flipped with p=0.5 and
    shifted by up to 1/8 of its side (wrapping round)."""
    size = images.shape[1]
    out = np.empty_like(images)
    for i, image in enumerate(images):
        if rng.integers(2):
            image = image[:, ::-1]
        dy, dx = rng.integers(-size // 8, size // 8 + 1, size=2)
        out[i] = np.roll(image, (int(dy), int(dx)), axis=(0, 1))
    tensor = torch.from_numpy(out).permute(0, 3, 1, 2).float()
    mean = torch.tensor(MEAN_RGB).view(1, 3, 1, 1)
    std = torch.tensor(STD_RGB).view(1, 3, 1, 1)
    return (tensor - mean) / std


def pretrain(backbone: str, recipe: Recipe, say: Progress = print) -> Pretrained:
    """Train ``backbone`` on the recipe's fractal categories; progress lines go to ``say``."""
    start = time.perf_counter()
    torch.manual_seed(recipe.seed)
    rng = np.random.default_rng(recipe.seed + 1)
    say(f"rendering {recipe.images} fractal images ({recipe.categories} categories, "
        f"{recipe.image_size} px) ...")
    images, labels = dataset(recipe)
    model = Classifier(create_backbone(backbone), recipe.categories)
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
        inputs, target = to_tensor(images[index], rng), torch.from_numpy(labels[index])
        logits = model(inputs)
        loss = loss_fn(logits, target)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        losses.append(float(loss.detach()))
        if step >= recipe.steps - tail:
            hits += int((logits.argmax(1) == target).sum())
            seen += len(target)
        if (step + 1) % report_every == 0 or step + 1 == recipe.steps:
            recent = losses[-report_every:]
            say(f"pretraining {backbone}: step {step + 1}/{recipe.steps}, loss "
                f"{sum(recent) / len(recent):.3f}, {time.perf_counter() - start:.0f} s")
    state = {k: v.detach().clone().contiguous() for k, v in model.backbone.state_dict().items()}
    return Pretrained(state, time.perf_counter() - start, losses[-1] if losses else math.nan,
                      hits / max(1, seen))
